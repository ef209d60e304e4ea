//! The Kubo unit as Astroport installs it (`/etc/systemd/system/ipfs.service`, driven with
//! `sudo systemctl`; or a user unit) and the systemctl commands `migrate` runs, by argv.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Kubo's unit (`install/setup/ipfs_setup.sh` writes it; `_12345.sh` restarts it).
pub const KUBO_UNIT: &str = "ipfs.service";
/// Our daemon's unit (`install::units`).
pub const OUR_UNIT: &str = "constellation.service";
/// A unit file in `/etc/systemd/system` cannot be masked ("Failed to mask unit: File … already
/// exists", systemd/systemd#27965, documented since #27976), so Kubo's is renamed with this
/// suffix first: kept for going back, no longer a unit.
pub const SET_ASIDE_SUFFIX: &str = ".kubo-before-constellation";
/// One systemctl command: above Kubo's `TimeoutStopSec=120`, so a slow stop is not cut.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(150);
/// Output kept of one command (is-active and is-enabled print one word).
const MAX_OUTPUT: u64 = 64 * 1024;

/// System units go through `sudo -n systemctl` (Astroport's sudoers allow it), user units
/// through `systemctl --user`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    System,
    User,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scope::System => "system",
            Scope::User => "user",
        })
    }
}

/// What the unit's file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitFile {
    /// A real unit file: it must be set aside before masking.
    Regular,
    /// A link to /dev/null: masked already.
    Masked,
}

/// Where unit files live and how systemctl is called.
#[derive(Debug, Clone)]
pub struct Systemd {
    pub system_dir: PathBuf,
    pub user_dir: PathBuf,
    /// Root needs no sudo.
    pub root: bool,
}

/// The Kubo unit found: its scope, its file and what that file is.
#[derive(Debug, Clone)]
pub struct KuboUnit {
    pub scope: Scope,
    pub path: PathBuf,
    pub file: UnitFile,
}

impl Systemd {
    /// `ipfs.service` in the system folder, else in the user folder (set-aside ones count).
    pub fn kubo_unit(&self) -> Option<KuboUnit> {
        for (scope, dir) in [
            (Scope::System, &self.system_dir),
            (Scope::User, &self.user_dir),
        ] {
            let path = dir.join(KUBO_UNIT);
            let aside = set_aside(&path);
            let file = match std::fs::read_link(&path) {
                Ok(target) if target == Path::new("/dev/null") => Some(UnitFile::Masked),
                _ if path.is_file() => Some(UnitFile::Regular),
                _ if aside.is_file() => Some(UnitFile::Masked),
                _ => None,
            };
            if let Some(file) = file {
                return Some(KuboUnit { scope, path, file });
            }
        }
        None
    }

    /// The argv of `systemctl <args>` in `scope`.
    pub fn argv(&self, scope: Scope, args: &[&str]) -> Vec<String> {
        let head: &[&str] = match scope {
            Scope::System if self.root => &["systemctl"],
            Scope::System => &["sudo", "-n", "systemctl"],
            Scope::User => &["systemctl", "--user"],
        };
        head.iter().chain(args).map(|s| (*s).to_owned()).collect()
    }

    /// `systemctl is-active|is-enabled <unit>`: the word it prints (`unknown` if it cannot run).
    pub async fn state(&self, scope: Scope, verb: &str, unit: &str) -> String {
        match run(&self.argv(scope, &[verb, unit])).await {
            Ok((_, out)) if !out.trim().is_empty() => out.trim().to_owned(),
            _ => "unknown".to_owned(),
        }
    }
}

/// The file a set-aside unit is renamed to.
pub fn set_aside(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(SET_ASIDE_SUFFIX);
    PathBuf::from(name)
}

/// Run `argv` (bounded output, [`COMMAND_TIMEOUT`]): (success, stdout), or why it could not run.
pub async fn run(argv: &[String]) -> Result<(bool, String), String> {
    crate::dragon::detect::run_bounded(argv, COMMAND_TIMEOUT, MAX_OUTPUT).await
}
