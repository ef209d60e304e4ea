//! `constellation migrate`: from Kubo to constellation on an Astroport station; a dry run
//! unless `--apply`. Prints each check and step with what it found.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use super::context::Context;
use crate::config::home_dir;
use crate::migrate::systemd::Systemd;
use crate::migrate::{Action, Migration};

/// Flags of `constellation migrate`.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// Act: stop and mask Kubo, write config.toml, install and start our service.
    #[arg(long)]
    pub apply: bool,
    /// The Kubo repo (default: $IPFS_PATH, else ~/.ipfs).
    #[arg(long, value_name = "PATH")]
    pub kubo_repo: Option<PathBuf>,
    /// Where system units live (Astroport writes /etc/systemd/system/ipfs.service).
    #[arg(long, value_name = "DIR", default_value = "/etc/systemd/system")]
    pub system_unit_dir: PathBuf,
    /// Run system-unit commands through `sudo -n` (auto: unless running as root).
    #[arg(long, value_enum, default_value_t = Sudo::Auto)]
    pub sudo: Sudo,
    #[arg(long)]
    pub json: bool,
}

/// Whether system-unit commands go through `sudo -n`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Sudo {
    Auto,
    Always,
    Never,
}

pub fn migrate(ctx: &Context, args: MigrateArgs) -> anyhow::Result<ExitCode> {
    use std::os::unix::fs::MetadataExt as _;
    let root = match args.sudo {
        Sudo::Auto => std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0),
        Sudo::Always => false,
        Sudo::Never => true,
    };
    let migration = Migration {
        apply: args.apply,
        home: ctx.home.clone(),
        kubo_repo: crate::config::kubo_repo(args.kubo_repo),
        zen: home_dir().join(".zen"),
        systemd: Systemd {
            system_dir: args.system_unit_dir,
            user_dir: home_dir().join(".config/systemd/user"),
            root,
        },
        bin: std::env::current_exe().context("cannot find this program's path")?,
        user: std::env::var("USER").ok().filter(|u| !u.is_empty()),
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let steps = ctx.block_on(migration.run())?;
    let failed = steps.iter().any(|s| matches!(s.action, Action::Failed(_)));
    if args.json {
        println!("{}", serde_json::to_string(&steps)?);
    } else {
        let mode = if args.apply {
            "applying"
        } else {
            "dry run: nothing changes (--apply to act)"
        };
        println!("migrate: {mode}");
        for step in &steps {
            let (tag, detail) = match &step.action {
                Action::Check => ("check", String::new()),
                Action::Already(d) => ("ok", format!(" -> already: {d}")),
                Action::Would(d) => ("todo", format!(" -> would: {d}")),
                Action::Did(d) => ("done", format!(" -> did: {d}")),
                Action::Failed(d) => ("FAILED", format!(" -> {d}")),
            };
            println!("[{tag:>6}] {:<15} {}{detail}", step.name, step.found);
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
