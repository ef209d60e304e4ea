//! The systemd units (the daemon; or a timer for `trigger`) and the cron line that keep a station
//! running, as text for a given program path and home.

use std::path::Path;

/// One unit file: its name and its text.
pub struct Unit {
    pub name: &'static str,
    pub text: String,
}

/// The daemon's service, and the sync's oneshot service with its hourly timer.
pub fn units(bin: &Path, home: &Path) -> [Unit; 3] {
    let (bin, home) = (bin.display(), home.display());
    [
        Unit {
            name: "constellation.service",
            text: format!(
                "[Unit]\nDescription=constellation station daemon (tunnels, relay, hourly sync)\nAfter=network-online.target\n\n\
                 [Service]\nExecStart={bin} --home {home} daemon\nRestart=on-failure\nRestartSec=5\n\n\
                 [Install]\nWantedBy=default.target\n"
            ),
        },
        Unit {
            name: "constellation-sync.service",
            text: format!(
                "[Unit]\nDescription=constellation sync (only without the daemon's own schedule)\n\n\
                 [Service]\nType=oneshot\nExecStart={bin} --home {home} trigger\nSuccessExitStatus=2 3\n"
            ),
        },
        Unit {
            name: "constellation-sync.timer",
            text: "[Unit]\nDescription=hourly constellation sync\n\n[Timer]\nOnCalendar=hourly\n\
                   RandomizedDelaySec=300\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n"
                .to_owned(),
        },
    ]
}

/// The crontab line that runs the trigger hourly (instead of the daemon's schedule or the timer).
pub fn cron_line(bin: &Path, home: &Path) -> String {
    format!(
        "0 * * * * {} --home {} trigger >/dev/null 2>&1",
        bin.display(),
        home.display()
    )
}
