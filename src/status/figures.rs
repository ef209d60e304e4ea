//! The status page's figures: the local relay's counts and the recent sync runs with the
//! report's own charts, read from the store and the history.

use std::path::PathBuf;

use serde_json::json;

use crate::sync::local::Station;

/// Sync runs shown on the status page (newest first).
const STATUS_RUNS: usize = 24;
/// How long the status page's database figures are reused.
pub const FIGURES_TTL: std::time::Duration = std::time::Duration::from_secs(3);

/// The relay's figures and the recent runs (database reads; the daemon caches them for
/// [`FIGURES_TTL`]).
pub async fn figures(
    station: Option<&Station>,
    relay_url: Option<&str>,
    history: PathBuf,
) -> serde_json::Value {
    let relay = match (station, relay_url) {
        (Some(Station::Embedded(store)), Some(url)) => {
            let stats = store.stats().await.ok();
            Some(json!({
                "url": url,
                "mode": "embedded",
                "events": stats.as_ref().map(|s| s.events),
                "bytes": stats.as_ref().map(|s| s.bytes),
                "pubkeys": stats.as_ref().map(|s| s.pubkeys),
                "kinds": stats.as_ref().map(|s| s.kinds.clone()),
            }))
        }
        (Some(Station::External(url)), _) => Some(json!({"url": url, "mode": "external"})),
        _ => None,
    };
    let recent = tokio::task::spawn_blocking(move || {
        crate::sync::history::History::open(&history)
            .and_then(|h| h.recent(STATUS_RUNS))
            .unwrap_or_default()
    })
    .await
    .unwrap_or_default();
    // The report's own charts for the newest run, so the page and the mail look alike.
    let charts = recent.last().map(|r| {
        let groups: Vec<(String, u64)> = r.groups.iter().map(|(k, v)| (k.clone(), *v)).collect();
        let trend: Vec<(i64, u64)> = recent.iter().map(|t| (t.run_id, t.imported)).collect();
        json!({
            "groups": crate::report::svg::bars("groups-chart", &groups, "#2da44e"),
            "trend": crate::report::svg::trend("trend-chart", &trend),
        })
    });
    // Newest first (`recent` gives them oldest first).
    let runs: Vec<serde_json::Value> = recent
        .iter()
        .rev()
        .map(|r| {
            json!({
                "run_id": r.run_id, "started_at": r.started_at, "status": r.status(),
                "duration_ms": r.duration_ms, "peers_contacted": r.peers_contacted,
                "peers_ok": r.peers_ok, "peers_failed": r.peers_failed,
                "collected": r.collected, "imported": r.imported, "uploaded": r.uploaded,
                "discovered": r.discovered, "unique_pubkeys": r.unique_pubkeys,
                "groups": r.groups, "bytes_in": r.bytes_in, "bytes_out": r.bytes_out,
            })
        })
        .collect();
    json!({"relay": relay, "runs": runs, "charts": charts})
}
