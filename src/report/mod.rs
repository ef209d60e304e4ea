//! The sync report: one per run, rendered from `history.sqlite` as self-contained HTML (status
//! badge, peers, the diagram's numbers, viral content, inline SVG charts, 24-run trend) and as
//! plain text; saved to a folder and mailed to the captain ([`mail`]).

pub mod mail;
pub mod note;
pub mod svg;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub use crate::config::ReportConfig;
use crate::sync::history::History;
use crate::sync::stats::{RunStats, RunStatus};
use svg::esc;

/// Runs in the trend.
pub const TREND_RUNS: usize = 24;
/// Runs read to find the trend before an older run (`report --run ID`): about 14 months hourly.
const HISTORY_SCAN: usize = 10_000;

/// Where reports are saved: `[report] dir`, else `<home>/reports`.
pub fn report_dir(home: &crate::config::Home, config: &ReportConfig) -> PathBuf {
    config.dir.clone().unwrap_or_else(|| home.reports())
}

/// `1536` → `1.5 KiB`: sizes as people read them.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// One run and the trend before it.
pub struct Report {
    pub run: RunStats,
    /// Up to `TREND_RUNS` runs, oldest first, ending with `run`.
    pub trend: Vec<RunStats>,
    pub station: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    History(#[from] crate::sync::history::HistoryError),
    #[error("no sync run {0} in the history")]
    NoRun(String),
    #[error("cannot write the report to {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Report {
    /// The run `id` (default: the last one) of the history at `path`.
    pub fn load(path: &Path, id: Option<i64>, station: String) -> Result<Report, ReportError> {
        Report::of(&History::open(path)?, id, station)
    }

    /// The run `id` (default: the last one) of an open history.
    pub fn of(history: &History, id: Option<i64>, station: String) -> Result<Report, ReportError> {
        let run = history
            .run(id)?
            .ok_or_else(|| ReportError::NoRun(id.map_or("at all".into(), |i| i.to_string())))?;
        let trend = history
            .recent(HISTORY_SCAN)?
            .into_iter()
            .filter(|r| r.run_id <= run.run_id)
            .collect::<Vec<_>>();
        let skip = trend.len().saturating_sub(TREND_RUNS);
        Ok(Report {
            trend: trend.into_iter().skip(skip).collect(),
            run,
            station,
        })
    }

    pub fn subject(&self) -> String {
        format!(
            "[{}] constellation sync {}: {} imported, {}/{} peers ok",
            self.station,
            self.run.status(),
            self.run.imported,
            self.run.peers_ok,
            self.run.peers_contacted
        )
    }

    /// The numbers of the seed diagram, in order: label, element id, value.
    pub fn numbers(&self) -> Vec<(&'static str, &'static str, u64)> {
        let r = &self.run;
        vec![
            ("Peers contacted", "peers_contacted", r.peers_contacted),
            ("Successful syncs", "peers_ok", r.peers_ok),
            ("Failed syncs", "peers_failed", r.peers_failed),
            ("Events collected", "collected", r.collected),
            ("Events imported", "imported", r.imported),
            ("Events uploaded", "uploaded", r.uploaded),
            ("Unique pubkeys", "unique_pubkeys", r.unique_pubkeys),
            ("New connections (N²)", "discovered", r.discovered),
            ("Profiles found", "profiles_found", r.profiles_found),
            ("Profiles missing", "profiles_missing", r.profiles_missing),
        ]
    }

    /// The report as one HTML page (inline CSS and SVG, no external resource), in sections.
    pub fn html(&self) -> String {
        let mut h = String::with_capacity(16 * 1024);
        self.html_head(&mut h);
        self.html_peers(&mut h);
        self.html_charts(&mut h);
        self.html_viral_and_rejected(&mut h);
        self.html_trend(&mut h);
        h.push_str("</table><p class=dim>constellation ");
        h.push_str(env!("CARGO_PKG_VERSION"));
        h.push_str("</p></body></html>\n");
        h
    }

    /// The head, the title with the status badge, the run's line and the grid of numbers.
    fn html_head(&self, h: &mut String) {
        let r = &self.run;
        let status = r.status();
        let color = match status {
            RunStatus::Ok => "#1a7f37",
            RunStatus::Partial => "#9a6700",
            RunStatus::Failure => "#cf222e",
        };
        let _ = write!(
            *h,
            r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;max-width:980px;margin:24px auto;padding:0 16px}}
h1{{font-size:20px}}h2{{font-size:15px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}}
.badge{{display:inline-block;color:#fff;border-radius:12px;padding:2px 12px;font-weight:700}}
.grid{{display:grid;grid-template-columns:repeat(5,1fr);gap:10px}}.num{{border:1px solid #ddd;border-radius:8px;padding:8px}}
.num b{{display:block;font-size:22px}}.num span{{color:#666;font-size:12px}}
table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #eee;padding:4px 8px;text-align:left}}td.r{{text-align:right}}
.dim{{color:#777}}.err{{color:#cf222e}}code{{font-size:12px}}</style></head><body>
<h1>Constellation sync — {station} <span id="status" class="badge" style="background:{color}">{status}</span></h1>
<p class="dim">run <span id="run_id">{id}</span> · started {started} · {dur:.1} s · window {days} · {rt} round trips · {bin} in / {bout} out</p>
<h2>Numbers</h2><div class="grid">"#,
            title = esc(&self.subject()),
            station = esc(&self.station),
            id = r.run_id,
            started = when(r.started_at),
            dur = r.duration_ms as f64 / 1000.0,
            days = if r.days == 0 {
                "everything".into()
            } else {
                format!("{} day(s)", r.days)
            },
            rt = r.round_trips,
            bin = human_bytes(r.bytes_in),
            bout = human_bytes(r.bytes_out),
        );
        for (label, id, value) in self.numbers() {
            let _ = write!(
                *h,
                r#"<div class="num"><b id="{id}">{value}</b><span>{label}</span></div>"#
            );
        }
    }

    /// The table of peers, with the station files that were skipped.
    fn html_peers(&self, h: &mut String) {
        let r = &self.run;
        h.push_str("</div><h2>Peers</h2><table><tr><th>peer</th><th>mode</th><th>result</th><th>in</th><th>imported</th><th>out</th><th>error</th></tr>");
        for p in &r.peers {
            let _ = write!(
                *h,
                r#"<tr class="peer"><td><code>{}</code></td><td>{}</td><td>{}</td><td class="r">{}</td><td class="r">{}</td><td class="r">{}</td><td class="err">{}</td></tr>"#,
                esc(&p.name),
                p.mode,
                if p.ok { "ok" } else { "failed" },
                p.events_in,
                p.imported,
                p.events_out,
                esc(p.error.as_deref().unwrap_or(""))
            );
        }
        for s in &r.skipped_peers {
            let _ = write!(
                *h,
                r#"<tr><td colspan="6" class="dim">skipped: {}</td></tr>"#,
                esc(s)
            );
        }
    }

    /// The bar charts: imported events per kind group, received events per peer.
    fn html_charts(&self, h: &mut String) {
        let r = &self.run;
        h.push_str("</table><h2>Events per kind group</h2>");
        let groups: Vec<(String, u64)> = r.groups.iter().map(|(k, v)| (k.clone(), *v)).collect();
        h.push_str(&svg::bars("groups-chart", &groups, "#2da44e"));
        h.push_str("<h2>Events per peer (received)</h2>");
        let peers: Vec<(String, u64)> = r
            .peers
            .iter()
            .map(|p| {
                (
                    p.name
                        .chars()
                        .rev()
                        .take(16)
                        .collect::<String>()
                        .chars()
                        .rev()
                        .collect(),
                    p.events_in,
                )
            })
            .collect();
        h.push_str(&svg::bars("peers-chart", &peers, "#1f6feb"));
    }

    /// The most reposted and reacted events, and the rejection reasons.
    fn html_viral_and_rejected(&self, h: &mut String) {
        let r = &self.run;
        h.push_str("<h2>Viral content propagated</h2>");
        if r.viral.is_empty() {
            h.push_str("<p class=dim>no reposts or reactions among the synced events</p>");
        } else {
            h.push_str("<table><tr><th>event</th><th>reposts + reactions</th></tr>");
            for (id, n) in &r.viral {
                let _ = write!(
                    *h,
                    r#"<tr><td><code>{}</code></td><td class="r">{n}</td></tr>"#,
                    esc(id)
                );
            }
            h.push_str("</table>");
        }
        if !r.rejected.is_empty() {
            h.push_str("<h2>Rejected</h2><table>");
            for (why, n) in &r.rejected {
                let _ = write!(
                    *h,
                    r#"<tr><td>{}</td><td class="r">{n}</td></tr>"#,
                    esc(why)
                );
            }
            h.push_str("</table>");
        }
    }

    /// The trend chart and table of the recent runs.
    fn html_trend(&self, h: &mut String) {
        h.push_str("<h2>Trend</h2>");
        let trend: Vec<(i64, u64)> = self.trend.iter().map(|t| (t.run_id, t.imported)).collect();
        h.push_str(&svg::trend("trend-chart", &trend));
        h.push_str("<table><tr><th>run</th><th>started</th><th>status</th><th>peers ok/failed</th><th>imported</th></tr>");
        for t in self.trend.iter().rev() {
            let _ = write!(
                *h,
                r#"<tr><td>{}</td><td>{}</td><td>{}</td><td class="r">{}/{}</td><td class="r">{}</td></tr>"#,
                t.run_id,
                when(t.started_at),
                t.status(),
                t.peers_ok,
                t.peers_failed,
                t.imported
            );
        }
    }

    pub fn text(&self) -> String {
        let r = &self.run;
        let mut t = format!(
            "Constellation sync — {} — {}\nrun {} started {} ({:.1} s)\n\n",
            self.station,
            r.status(),
            r.run_id,
            when(r.started_at),
            r.duration_ms as f64 / 1000.0
        );
        for (label, _, value) in self.numbers() {
            let _ = writeln!(t, "{label:<24} {value}");
        }
        t.push_str("\nPeers\n");
        for p in &r.peers {
            let _ = writeln!(
                t,
                "  {:<52} {:<5} {:<6} in {:>6}  imported {:>6}  out {:>6}  {}",
                p.name,
                p.mode,
                if p.ok { "ok" } else { "FAILED" },
                p.events_in,
                p.imported,
                p.events_out,
                p.error.as_deref().unwrap_or("")
            );
        }
        if !r.groups.is_empty() {
            t.push_str("\nEvents per kind group\n");
            for (g, n) in &r.groups {
                let _ = writeln!(t, "  {g:<14} {n}");
            }
        }
        if !r.viral.is_empty() {
            t.push_str("\nViral content propagated\n");
            for (id, n) in &r.viral {
                let _ = writeln!(t, "  {id} {n}");
            }
        }
        t.push_str("\nTrend (imported, oldest first): ");
        t.push_str(
            &self
                .trend
                .iter()
                .map(|r| r.imported.to_string())
                .collect::<Vec<_>>()
                .join(" "),
        );
        t.push('\n');
        t
    }

    /// Write `run-<id>.html`, `run-<id>.txt` and `latest.html` into `dir`; the HTML path.
    pub fn save(&self, dir: &Path) -> Result<PathBuf, ReportError> {
        let err = |path: &Path| {
            let path = path.to_owned();
            move |source| ReportError::Write { path, source }
        };
        std::fs::create_dir_all(dir).map_err(err(dir))?;
        let html = dir.join(format!("run-{}.html", self.run.run_id));
        let text = dir.join(format!("run-{}.txt", self.run.run_id));
        let body = self.html();
        std::fs::write(&html, &body).map_err(err(&html))?;
        std::fs::write(&text, self.text()).map_err(err(&text))?;
        let latest = dir.join("latest.html");
        std::fs::write(&latest, &body).map_err(err(&latest))?;
        Ok(html)
    }
}

/// The station's name for titles: config, else the hostname.
pub fn station_name(config: &ReportConfig) -> String {
    config.station.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "station".into())
    })
}

fn when(t: u64) -> String {
    // UTC, without a date crate: days since the epoch to a civil date (Howard Hinnant's method).
    let days = (t / 86_400) as i64;
    let secs = t % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        secs / 3600,
        (secs % 3600) / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::stats::PeerStats;

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
    }

    fn report() -> Report {
        let mut run = RunStats {
            run_id: 7,
            started_at: 1_795_527_175,
            peers_contacted: 2,
            peers_ok: 1,
            peers_failed: 1,
            collected: 12,
            imported: 9,
            ..Default::default()
        };
        run.peers.push(PeerStats {
            name: "ws://a".into(),
            ok: true,
            events_in: 12,
            ..Default::default()
        });
        run.peers.push(PeerStats {
            name: "12D3Koo<bad>".into(),
            error: Some("timed out".into()),
            ..Default::default()
        });
        run.groups.insert("social".into(), 9);
        run.viral.push(("abcd".into(), 4));
        Report {
            trend: vec![run.clone()],
            run,
            station: "pi".into(),
        }
    }

    #[test]
    fn html_carries_the_numbers_badge_charts_and_escapes() {
        let html = report().html();
        assert!(html.contains(r#"<b id="imported">9</b>"#));
        assert!(html.contains(r#"<b id="peers_failed">1</b>"#));
        assert!(html.contains(">Partial</span>"));
        assert!(html.contains("12D3Koo&lt;bad&gt;"));
        assert!(html.contains(r#"<svg id="groups-chart""#));
        assert!(html.contains(r#"<svg id="trend-chart""#));
        assert!(html.contains("abcd"));
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no external asset"
        );
    }

    #[test]
    fn text_and_dates() {
        let text = report().text();
        assert!(text.contains("Events imported          9"));
        assert!(text.contains("FAILED"));
        assert_eq!(when(0), "1970-01-01 00:00 UTC");
        assert_eq!(when(1_795_527_175), "2026-11-24 13:32 UTC");
    }
}
