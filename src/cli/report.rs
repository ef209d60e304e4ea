//! `constellation report`: re-render (and re-send) the report of a past sync run.

use std::process::ExitCode;

use anyhow::Context as _;

use super::context::Context;
use crate::report::{self, Report};

/// `constellation report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The run (default: the last one).
    #[arg(long, value_name = "ID")]
    pub run: Option<i64>,
    /// Mail it to the captain again.
    #[arg(long)]
    pub send: bool,
    /// Print the plain-text version.
    #[arg(long)]
    pub text: bool,
}

pub fn report_command(ctx: &Context, args: ReportArgs) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let station = report::station_name(&config.report);
    let report = Report::load(&ctx.home.history(), args.run, station)?;
    let path = report.save(&report::report_dir(&ctx.home, &config.report))?;
    if args.text {
        print!("{}", report.text());
    } else {
        println!("{}", path.display());
    }
    if args.send {
        let to = ctx
            .block_on(report::mail::send(
                &config.mail,
                &report.subject(),
                report.text(),
                report.html(),
            ))?
            .context("cannot mail the report")?;
        eprintln!("mailed to {to}");
    }
    Ok(ExitCode::SUCCESS)
}
