//! `constellation trigger`: the hourly job once, for cron or a systemd timer; one line for the
//! operator and the job's exit code.

use std::process::ExitCode;

use super::context::Context;
use crate::trigger::flags::BackfillArgs;
use crate::trigger::{Outcome, trigger};

/// Flags of `constellation trigger`: its own, plus every backfill flag.
#[derive(Debug, Clone, clap::Args)]
pub struct TriggerArgs {
    /// Run even if the last run is less than `[trigger] min_interval_mins` (50) old.
    #[arg(long)]
    pub force: bool,
    /// Save the report but do not mail it.
    #[arg(long)]
    pub no_mail: bool,
    #[command(flatten)]
    pub backfill: BackfillArgs,
}

/// `constellation trigger`.
pub fn run(ctx: &Context, args: TriggerArgs) -> anyhow::Result<ExitCode> {
    let outcome = ctx.block_on(trigger(
        &ctx.home,
        ctx.config()?,
        args.force,
        !args.no_mail,
        &args.backfill.options(),
        None,
    ))?;
    match &outcome {
        Outcome::Ran { stats, .. } if args.backfill.json => {
            println!("{}", serde_json::to_string_pretty(stats)?);
            eprintln!("{}", outcome.line());
        }
        Outcome::Ran { .. } => println!("{}", outcome.line()),
        _ => eprintln!("{}", outcome.line()),
    }
    Ok(ExitCode::from(outcome.exit_code()))
}
