//! `constellation swarm map` (the stations of `~/.zen/tmp/swarm/`, read from disk) and
//! `constellation swarm refresh` (one cycle in the daemon, with a progress bar on a TTY).

use std::io::IsTerminal as _;

use super::context::Context;
use crate::control::{self, Request};
use crate::live::LinkStatus;
use crate::swarm_map::listing::{self, MapEntry};
use crate::swarm_map::{CycleReport, Line, Progress};

/// `swarm map [--json]`.
pub fn map(ctx: &Context, json: bool) -> anyhow::Result<()> {
    let swarm = ctx.config()?.dragon.swarm_dir_path();
    let entries = listing::entries(&swarm, &ctx.home.swarm_map_state());
    if json {
        println!("{}", serde_json::to_string(&entries)?);
    } else {
        print!("{}", format_map(&entries));
        // The running daemon's live links, when there is one.
        if let Ok(links) = live_links(ctx) {
            print!("{}", format_links(&links));
        }
    }
    Ok(())
}

/// `swarm live [--json]`: the running daemon's live links.
pub fn live(ctx: &Context, json: bool) -> anyhow::Result<()> {
    let links = live_links(ctx)?;
    if json {
        println!("{}", serde_json::to_string(&links)?);
    } else {
        print!("{}", format_links(&links));
    }
    Ok(())
}

fn live_links(ctx: &Context) -> anyhow::Result<Vec<LinkStatus>> {
    let socket = ctx.home.control_socket();
    let value = ctx.block_on(control::call(&socket, &Request::LiveLinks))??;
    Ok(serde_json::from_value(value)?)
}

/// One line per link: `live <name> <state> [since] <remote> in/stored out dropped lag`.
fn format_links(links: &[LinkStatus]) -> String {
    let mut out = String::new();
    for l in links {
        let state = match (l.state, l.down_since) {
            (crate::live::LinkState::Down, Some(t)) => format!("down since {t}"),
            (state, _) => serde_json::to_value(state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
        };
        let lag = l.lag_ms.map_or("-".to_owned(), |ms| format!("{ms} ms"));
        out.push_str(&format!(
            "live\t{}\t{state}\t{:?}\tin {} (stored {}, dup {})\tout {}\tdropped {}\tlag {lag}\n",
            l.name, l.remote, l.events_in, l.stored, l.duplicate, l.events_out, l.dropped
        ));
    }
    out
}

/// How often `swarm refresh` asks the daemon how far its cycle is (a bar redraw's worth).
const PROGRESS_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// `swarm refresh [--json]`: one cycle in the daemon; on a TTY a bar of stations visited out of
/// those queued so far (the queue grows as maps are read), naming the one being visited.
pub fn refresh(ctx: &Context, json: bool) -> anyhow::Result<()> {
    let socket = ctx.home.control_socket();
    let bar = (!json && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(0).with_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} stations  {wide_msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message("finding peers");
        bar
    });
    let result = ctx.block_on(async {
        let refresh = control::call(&socket, &Request::SwarmRefresh);
        tokio::pin!(refresh);
        loop {
            tokio::select! {
                done = &mut refresh => break done,
                () = tokio::time::sleep(PROGRESS_POLL), if bar.is_some() => {
                    let Ok(value) = control::call(&socket, &Request::SwarmProgress).await else {
                        continue;
                    };
                    if let (Some(bar), Ok(p)) = (&bar, serde_json::from_value::<Progress>(value)) {
                        show(bar, &p);
                    }
                }
            }
        }
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let result = result?;
    if json {
        println!("{result}");
        return Ok(());
    }
    let report: CycleReport = serde_json::from_value(result)?;
    print!("{}", format_report(&report));
    Ok(())
}

fn show(bar: &indicatif::ProgressBar, p: &Progress) {
    if !p.running {
        return;
    }
    bar.set_length(p.queued as u64);
    // `visited` counts the stations done; the one being visited is named in the message.
    bar.set_position(p.visited as u64);
    if let Some(station) = &p.station {
        bar.set_message(station.clone());
    }
}

fn format_map(entries: &[MapEntry]) -> String {
    let mut out = String::new();
    for e in entries {
        let age = e
            .moats_age_secs
            .map_or("-".to_owned(), |a| format!("{}m", a / 60));
        let found = e
            .via
            .as_deref()
            .map_or("direct".to_owned(), |v| format!("via {v}"));
        let services = if e.services.is_empty() {
            "-".to_owned()
        } else {
            e.services.join(",")
        };
        out.push_str(&format!(
            "{}\t{}\t{}\t{age}\t{found}\t{services}\n",
            e.id,
            e.hostname.as_deref().unwrap_or("-"),
            e.my_relay.as_deref().unwrap_or("-"),
        ));
    }
    out
}

fn format_report(r: &CycleReport) -> String {
    let mut out = format!(
        "probed {}, fetched {}, kept {}, refused {}, unreachable {}, intruders {}, removed {} ({:.1} s)\n",
        r.probed,
        r.fetched.len(),
        r.kept.len(),
        r.refused.len(),
        r.unreachable.len(),
        r.intruders.len(),
        r.removed.len(),
        r.secs
    );
    let groups: [(&str, &[Line]); 5] = [
        ("fetched", &r.fetched),
        ("refused", &r.refused),
        ("unreachable", &r.unreachable),
        ("intruder", &r.intruders),
        ("removed", &r.removed),
    ];
    for (what, lines) in groups {
        for line in lines {
            let via = line
                .via
                .as_deref()
                .map(|v| format!(" (via {v})"))
                .unwrap_or_default();
            out.push_str(&format!("{what}\t{}{via}\t{}\n", line.station, line.detail));
        }
    }
    for (what, value) in [
        ("published", &r.published),
        ("map published", &r.map_published),
        ("map key", &r.map_key),
    ] {
        if let Some(value) = value {
            out.push_str(&format!("{what}\t{value}\n"));
        }
    }
    out
}
