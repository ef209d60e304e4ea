//! The run's Nostr note (`[report] note`, what `sync_report.sh` does today): the HTML report
//! added to the daemon's block store and linked as `/ipfs/<CID>`, the summary signed by the
//! UMAP 0.00 key (or an nsec file) and sent to the station's relay.

use std::path::Path;
use std::time::Duration;

use nostr::prelude::{Keys, Timestamp};

use crate::config::{Config, kubo_repo};
use crate::ipfs::store::BlockStore;
use crate::ipfs::unixfs::{FolderLimits, Hidden, add_path};
use crate::report::note;
use crate::sync::relay_client::RelayClient;
use crate::sync::stats::RunStats;

/// How long the station's relay may take to accept the connection and the note.
const NOTE_TIMEOUT: Duration = Duration::from_secs(10);

/// The key the note is signed with: `[report] note_key`, else the UMAP 0.00 key of the station's
/// `UPLANETNAME` (its Kubo swarm key's last line, as Astroport's `my.sh` reads it).
fn signing_keys(config: &Config) -> Result<Keys, note::NoteError> {
    match &config.report.note_key {
        Some(path) => note::keys_from_file(path),
        None => {
            let swarm_key = kubo_repo(config.node.kubo_repo.clone()).join("swarm.key");
            note::umap_keys(&note::uplanet_name(&swarm_key))
        }
    }
}

/// `<gateway>/ipfs/<CID>` of the saved report, added to `blocks` (the daemon's store).
fn report_link(config: &Config, saved: &Path, blocks: &BlockStore) -> Result<String, String> {
    let mut sink = blocks;
    let added = add_path(saved, &mut sink, &FolderLimits::STATION, Hidden::Skip)
        .map_err(|e| format!("cannot add the report to IPFS: {e}"))?;
    let gateway = config.report.gateway.as_deref().unwrap_or("");
    Ok(format!(
        "{}/ipfs/{}",
        gateway.trim_end_matches('/'),
        added.root
    ))
}

/// Publish the note of `run`; `Ok` says where it went, `Err` why it was not sent. With the
/// daemon's `blocks` the saved report is linked; the note goes to `[report] note_relay`, else
/// to the daemon's `relay`, else to `ws://` + `[relay] listen`.
pub(super) async fn publish(
    config: &Config,
    run: &RunStats,
    saved: Option<&Path>,
    (blocks, relay): (Option<&BlockStore>, Option<&str>),
) -> Result<String, String> {
    if !note::worth_sending(run) {
        return Err("nothing imported and nothing failed".into());
    }
    let keys = signing_keys(config).map_err(|e| e.to_string())?;
    let link = match (saved, blocks) {
        (Some(saved), Some(blocks)) => match report_link(config, saved, blocks) {
            Ok(link) => Some(link),
            Err(why) => {
                tracing::warn!("{why}");
                None
            }
        },
        _ => None,
    };
    let station = crate::report::station_name(&config.report);
    let content = note::content(run, &station, link.as_deref());
    let event = note::note(&keys, content, Timestamp::now()).map_err(|e| e.to_string())?;
    let url = config
        .report
        .note_relay
        .clone()
        .or_else(|| relay.map(str::to_owned))
        .unwrap_or_else(|| format!("ws://{}", config.relay.listen));
    let mut client = RelayClient::connect_url(&url, NOTE_TIMEOUT, NOTE_TIMEOUT)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let published = client
        .publish(std::slice::from_ref(&event))
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if published.accepted + published.duplicate == 0 {
        let why: Vec<String> = published.refused.into_keys().collect();
        return Err(format!("{url} refused it: {}", why.join(", ")));
    }
    Ok(format!(
        "{} by {} on {url}{}",
        event.id,
        keys.public_key(),
        link.map(|l| format!(", report {l}")).unwrap_or_default()
    ))
}
