//! `constellation swarm map` (the stations of `~/.zen/tmp/swarm/`, read from disk) and
//! `constellation swarm refresh` (one cycle in the daemon, with a spinner on a TTY).

use std::io::IsTerminal as _;

use super::context::Context;
use crate::swarm_map::listing::{self, MapEntry};
use crate::swarm_map::{CycleReport, Line};

/// `swarm map [--json]`.
pub fn map(ctx: &Context, json: bool) -> anyhow::Result<()> {
    let swarm = ctx.config()?.dragon.swarm_dir_path();
    let entries = listing::entries(&swarm, &ctx.home.swarm_map_state());
    if json {
        println!("{}", serde_json::to_string(&entries)?);
    } else {
        print!("{}", format_map(&entries));
    }
    Ok(())
}

/// `swarm refresh [--json]`: `call` asks the daemon for one cycle.
pub fn refresh(
    json: bool,
    call: impl FnOnce() -> anyhow::Result<serde_json::Value>,
) -> anyhow::Result<()> {
    let spinner = (!json && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new_spinner()
            .with_message("swarm map cycle: probing and mirroring stations");
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    });
    let result = call();
    if let Some(bar) = spinner {
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
    ] {
        if let Some(value) = value {
            out.push_str(&format!("{what}\t{value}\n"));
        }
    }
    out
}
