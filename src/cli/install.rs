//! `constellation install-service`: print the systemd units and the cron line, or write the
//! units into a folder.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::config::Home;
use crate::install::{cron_line, units};

/// `constellation install-service`: systemd units (daemon; or a timer for the trigger) and the
/// cron line, printed or written to a folder.
#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// Write the unit files into this folder (e.g. ~/.config/systemd/user) instead of printing.
    #[arg(long, value_name = "DIR")]
    pub write: Option<PathBuf>,
}

pub fn install(home: &Home, args: InstallArgs) -> anyhow::Result<ExitCode> {
    let bin = std::env::current_exe().context("cannot find this program's path")?;
    let files = units(&bin, home.root());
    let cron = cron_line(&bin, home.root());
    match args.write {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            for unit in &files {
                let path = dir.join(unit.name);
                std::fs::write(&path, &unit.text)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                println!("wrote {}", path.display());
            }
            println!(
                "then: systemctl --user daemon-reload && systemctl --user enable --now constellation.service\n\
                 (the daemon syncs hourly by itself; use the timer only without the daemon)\n\
                 or the cron line: {cron}"
            );
        }
        None => {
            for unit in &files {
                println!("# {}\n{}", unit.name, unit.text);
            }
            println!("# cron (instead of the daemon's schedule or the timer)\n{cron}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
