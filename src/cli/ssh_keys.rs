//! `constellation ssh-keys`: one SSH trust refresh without the daemon (dry run: print the
//! block it would write; `--write`: write it and the station's x/y/z_ssh.pub).

use std::process::ExitCode;

use anyhow::Context as _;

use super::context::Context;
use crate::config::Zen;
use crate::dragon::TrustJob;
use crate::store::Store;
use crate::sync::local::Station;

/// Flags of `constellation ssh-keys`.
#[derive(Debug, clap::Args)]
pub struct SshKeysArgs {
    /// Write the block into authorized_keys (and x/y/z_ssh.pub); without it, only print it.
    #[arg(long)]
    pub write: bool,
    #[arg(long)]
    pub json: bool,
}

/// The station's relay: the one answering at `[relay] listen`, else the embedded store.
async fn local_relay(ctx: &Context) -> anyhow::Result<Station> {
    let config = ctx.config()?;
    if crate::sync::local::probe(&config.relay.listen).await {
        return Ok(Station::External(format!("ws://{}", config.relay.listen)));
    }
    let db = ctx.home.database();
    let store = Store::open(&db, config.relay.event_limits())
        .with_context(|| format!("cannot open the event store {}", db.display()))?;
    Ok(Station::Embedded(store))
}

pub fn ssh_keys(ctx: &Context, args: SshKeysArgs) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let kubo = crate::node::options::kubo_repo_choice(None, config);
    let key = crate::node::options::load_keypair(&ctx.home, kubo.as_ref())?;
    let node = key.public().to_peer_id();
    let dragon = &config.dragon;
    let zen = Zen::new(dragon.swarm_dir_path(), dragon.scripts_dir_for(&node));
    let job = TrustJob::new(dragon, zen, node);
    let report = ctx.block_on(async {
        let station = local_relay(ctx).await?;
        anyhow::Ok(job.refresh(&station, args.write).await?)
    })??;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let target = job.paths.authorized_keys.display();
    println!(
        "keys: {} bootstrap, {} players, {} captains ({} in the block)",
        report.bootstrap,
        report.players,
        report.captains,
        report.block.len()
    );
    for warning in &report.warnings {
        println!("warning: {warning}");
    }
    match (args.write, report.changed) {
        (false, _) => {
            println!("would write into {target} (dry run; --write to apply):");
            for line in &report.block {
                println!("  {line}");
            }
        }
        (true, true) => println!("updated {target}"),
        (true, false) => println!("{target} already up to date"),
    }
    Ok(ExitCode::SUCCESS)
}
