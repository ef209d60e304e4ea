//! `constellation migrate`: take over from Kubo on an Astroport station. Looks at every item
//! (Kubo unit, repo, original sync, ports, config), then stops and masks Kubo, links its repo
//! (identity, swarm key, bootstrap, peering), writes config.toml and installs our service.

pub mod station;
pub mod systemd;
pub mod toml_keys;

use std::path::PathBuf;

use serde::Serialize;

use crate::config::Home;
use systemd::{KUBO_UNIT, KuboUnit, Scope, Systemd, UnitFile};

/// Kubo's swarm port: free once Kubo is stopped, ours from its `Addresses.Swarm`.
const SWARM_PORT: u16 = 4001;
/// Kubo's RPC port, which `_12345.sh` and `20h12.process.sh` watch (restarting ipfs without it).
const API_PORT: u16 = 5001;

/// What one run is asked to do, and where things are.
#[derive(Debug, Clone)]
pub struct Migration {
    pub apply: bool,
    pub home: Home,
    pub kubo_repo: PathBuf,
    /// `~/.zen`.
    pub zen: PathBuf,
    pub systemd: Systemd,
    /// This program (the unit's `ExecStart`).
    pub bin: PathBuf,
    pub user: Option<String>,
    pub now: u64,
}

/// What a step did, or would do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum Action {
    /// A check: nothing to do.
    Check,
    Already(String),
    Would(String),
    Did(String),
    Failed(String),
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: &'static str,
    pub found: String,
    pub action: Action,
}

impl Step {
    fn check(name: &'static str, found: String) -> Step {
        Step {
            name,
            found,
            action: Action::Check,
        }
    }
}

impl Migration {
    /// Every check, then every step in order (stop, disable, set aside, mask Kubo; config.toml;
    /// our unit, enabled and started). With `apply`, the first failed step ends the run.
    pub async fn run(&self) -> Vec<Step> {
        let kubo = self.systemd.kubo_unit();
        let mut steps = self.checks(kubo.as_ref()).await;
        let usable = crate::identity::import_kubo(&self.kubo_repo).is_ok();
        if self.apply && !usable {
            steps.push(Step {
                name: "precondition",
                found: format!("no usable identity in {}", self.kubo_repo.display()),
                action: Action::Failed("nothing changed: the PeerID must carry over".into()),
            });
            return steps;
        }
        match &kubo {
            Some(kubo) => {
                for step in self.retire_kubo(kubo).await {
                    let failed = matches!(step.action, Action::Failed(_));
                    steps.push(step);
                    if failed {
                        return steps;
                    }
                }
            }
            None => steps.push(Step {
                name: "retire kubo",
                found: format!("no {KUBO_UNIT}"),
                action: Action::Already("nothing to stop or mask".into()),
            }),
        }
        for step in [self.write_config(), self.install_unit().await] {
            let failed = matches!(step.action, Action::Failed(_));
            steps.push(step);
            if failed {
                return steps;
            }
        }
        steps.push(self.start_ours().await);
        steps
    }

    async fn checks(&self, kubo: Option<&KuboUnit>) -> Vec<Step> {
        let unit = match kubo {
            Some(k) => {
                let active = self.systemd.state(k.scope, "is-active", KUBO_UNIT).await;
                let enabled = self.systemd.state(k.scope, "is-enabled", KUBO_UNIT).await;
                format!("{} unit {}: {active}, {enabled}", k.scope, k.path.display())
            }
            None => format!(
                "no {KUBO_UNIT} in {} nor {}",
                self.systemd.system_dir.display(),
                self.systemd.user_dir.display()
            ),
        };
        let mut steps = vec![Step::check("kubo unit", unit)];
        let findings = station::kubo_repo(&self.kubo_repo)
            .into_iter()
            .chain(station::original_sync(&self.zen, self.now));
        steps.extend(findings.map(|(name, found)| Step::check(name, found)));
        let port = |p: u16| {
            if station::listening(p) {
                "something listens"
            } else {
                "free"
            }
        };
        steps.push(Step::check(
            "port 4001",
            format!(
                "{} (Kubo's swarm port; ours after the migration)",
                port(SWARM_PORT)
            ),
        ));
        steps.push(Step::check(
            "port 5001",
            format!("{}; after the migration constellation's Kubo RPC API answers there ([kubo_api]), so the ipfs watchdogs of _12345.sh and 20h12.process.sh are satisfied", port(API_PORT)),
        ));
        let config = self.home.config_file();
        let state = if config.exists() { "present" } else { "absent" };
        steps.push(Step::check(
            "config.toml",
            format!("{} ({state})", config.display()),
        ));
        steps.push(Step::check("sync settings", sync_settings(&config)));
        if let Some(user) = &self.user {
            let linger = station::linger(user);
            let found = if linger.exists() {
                "on: our user unit runs at boot"
            } else {
                "off: our user unit runs only while you are logged in (sudo loginctl enable-linger)"
            };
            steps.push(Step::check("linger", format!("{user}: {found}")));
        }
        steps
    }

    /// Run `argv` now (apply) or say it would.
    async fn act(&self, name: &'static str, found: String, argv: Vec<String>) -> Step {
        let shown = argv.join(" ");
        let action = if !self.apply {
            Action::Would(shown)
        } else {
            match systemd::run(&argv).await {
                Ok((true, _)) => Action::Did(shown),
                Ok((false, _)) => Action::Failed(format!("{shown} failed")),
                Err(e) => Action::Failed(e),
            }
        };
        Step {
            name,
            found,
            action,
        }
    }

    /// Stop, disable, set aside the unit file (a file in the unit folder cannot be masked),
    /// mask: `systemctl restart ipfs` of the watchdogs then fails and Kubo stays down.
    async fn retire_kubo(&self, kubo: &KuboUnit) -> Vec<Step> {
        let sd = &self.systemd;
        let mut steps = Vec::new();
        let active = sd.state(kubo.scope, "is-active", KUBO_UNIT).await;
        steps.push(if active == "active" || active == "activating" {
            self.act(
                "stop kubo",
                active,
                sd.argv(kubo.scope, &["stop", KUBO_UNIT]),
            )
            .await
        } else {
            Step {
                name: "stop kubo",
                found: active.clone(),
                action: Action::Already("not running".into()),
            }
        });
        let enabled = sd.state(kubo.scope, "is-enabled", KUBO_UNIT).await;
        steps.push(if enabled == "enabled" {
            self.act(
                "disable kubo",
                enabled.clone(),
                sd.argv(kubo.scope, &["disable", KUBO_UNIT]),
            )
            .await
        } else {
            Step {
                name: "disable kubo",
                found: enabled.clone(),
                action: Action::Already("not enabled".into()),
            }
        });
        steps.extend(self.set_aside(kubo).await);
        steps.push(if enabled == "masked" {
            Step {
                name: "mask kubo",
                found: enabled,
                action: Action::Already("masked".into()),
            }
        } else {
            self.act(
                "mask kubo",
                enabled,
                sd.argv(kubo.scope, &["mask", KUBO_UNIT]),
            )
            .await
        });
        steps
    }

    async fn set_aside(&self, kubo: &KuboUnit) -> Vec<Step> {
        let aside = systemd::set_aside(&kubo.path);
        let found = format!("{} ({:?})", kubo.path.display(), kubo.file);
        if kubo.file == UnitFile::Masked {
            return vec![Step {
                name: "set aside unit",
                found,
                action: Action::Already(format!("kept as {}", aside.display())),
            }];
        }
        let (from, to) = (kubo.path.display().to_string(), aside.display().to_string());
        let mv = match kubo.scope {
            Scope::System if !self.systemd.root => {
                vec!["sudo".into(), "-n".into(), "mv".into(), from, to]
            }
            _ => vec!["mv".into(), from, to],
        };
        let moved = self.act("set aside unit", found, mv).await;
        let reload = self.act(
            "daemon-reload",
            String::new(),
            self.systemd.argv(kubo.scope, &["daemon-reload"]),
        );
        if matches!(moved.action, Action::Failed(_)) {
            return vec![moved];
        }
        vec![moved, reload.await]
    }
}

/// The trigger's and the report's settings that meet the original jobs (read only: they are
/// the sync's own keys).
fn sync_settings(path: &std::path::Path) -> String {
    let config = match crate::config::Config::load(path) {
        Ok(config) => config,
        Err(e) => return format!("config.toml does not parse: {e}"),
    };
    let on = |b: bool| if b { "on" } else { "off" };
    let logs = config
        .trigger
        .log_dir
        .map_or("~/.zen/strfry (the original's)".to_owned(), |d| {
            d.display().to_string()
        });
    let note = if config.report.note {
        "on"
    } else {
        "off (the original publishes one since 2025-10: [report] note = true)"
    };
    format!(
        "daemon's hourly trigger {}, logs in {logs}, report note {note}",
        on(config.trigger.enabled)
    )
}

mod ours;
