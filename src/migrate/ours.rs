//! The constellation side of `migrate`: the keys it sets in config.toml (the Kubo repo linked,
//! the Kubo API on, the SSH trust on) and our user unit, written, enabled and started.

use super::systemd::{OUR_UNIT, Scope};
use super::toml_keys::{quoted, set_key};
use super::{Action, Migration, Step};

impl Migration {
    /// The keys config.toml gets: `[node] kubo_repo` (identity, swarm key, bootstrap and peering
    /// read from Kubo's repo at each start, so Astroport's later edits of it still count),
    /// `[kubo_api] enabled` (5001 for the station's `ipfs` commands and watchdogs) and
    /// `[dragon] manage_ssh_keys` (the original rebuilds authorized_keys every hour).
    fn config_keys(&self) -> [(&'static str, &'static str, String); 3] {
        [
            (
                "node",
                "kubo_repo",
                quoted(&self.kubo_repo.display().to_string()),
            ),
            ("kubo_api", "enabled", "true".to_owned()),
            ("dragon", "manage_ssh_keys", "true".to_owned()),
        ]
    }

    pub(super) fn write_config(&self) -> Step {
        let path = self.home.config_file();
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let mut text = old.clone();
        let mut changes = Vec::new();
        for (section, key, value) in self.config_keys() {
            if let Some(new) = set_key(&text, section, key, &value) {
                text = new;
                changes.push(format!("[{section}] {key} = {value}"));
            }
        }
        let found = path.display().to_string();
        if changes.is_empty() {
            return Step {
                name: "write config",
                found,
                action: Action::Already("up to date".into()),
            };
        }
        let what = changes.join(", ");
        if let Err(e) = toml::from_str::<crate::config::Config>(&text) {
            return Step {
                name: "write config",
                found,
                action: Action::Failed(format!(
                    "the result would not parse ({e}); nothing written"
                )),
            };
        }
        if !self.apply {
            return Step {
                name: "write config",
                found,
                action: Action::Would(format!("set {what}")),
            };
        }
        let written = self
            .home
            .ensure()
            .map_err(|e| e.to_string())
            .and_then(|()| {
                crate::atomic_file::write(&path, text.as_bytes(), 0o600).map_err(|e| e.to_string())
            });
        let action = match written {
            Ok(()) => Action::Did(format!("set {what}")),
            Err(e) => Action::Failed(format!("cannot write {}: {e}", path.display())),
        };
        Step {
            name: "write config",
            found,
            action,
        }
    }

    /// Our daemon's unit in the user unit folder (the daemon runs the hourly sync itself).
    pub(super) async fn install_unit(&self) -> Step {
        let units = crate::install::units(&self.bin, self.home.root());
        let Some(unit) = units.iter().find(|u| u.name == OUR_UNIT) else {
            return Step {
                name: "install unit",
                found: String::new(),
                action: Action::Failed("no unit text".into()),
            };
        };
        let path = self.systemd.user_dir.join(OUR_UNIT);
        let found = path.display().to_string();
        if std::fs::read_to_string(&path).is_ok_and(|t| t == unit.text) {
            return Step {
                name: "install unit",
                found,
                action: Action::Already("same unit".into()),
            };
        }
        if !self.apply {
            return Step {
                name: "install unit",
                found,
                action: Action::Would(format!(
                    "write {OUR_UNIT}, then systemctl --user daemon-reload"
                )),
            };
        }
        let written = std::fs::create_dir_all(&self.systemd.user_dir)
            .and_then(|()| crate::atomic_file::write(&path, unit.text.as_bytes(), 0o644));
        if let Err(e) = written {
            return Step {
                name: "install unit",
                found,
                action: Action::Failed(format!("cannot write {}: {e}", path.display())),
            };
        }
        let reload = self
            .act(
                "install unit",
                found,
                self.systemd.argv(Scope::User, &["daemon-reload"]),
            )
            .await;
        match reload.action {
            Action::Did(r) => Step {
                action: Action::Did(format!("wrote {OUR_UNIT}; {r}")),
                ..reload
            },
            _ => reload,
        }
    }

    /// `systemctl --user enable --now constellation.service`, unless it is enabled and running.
    pub(super) async fn start_ours(&self) -> Step {
        let sd = &self.systemd;
        let enabled = sd.state(Scope::User, "is-enabled", OUR_UNIT).await;
        let active = sd.state(Scope::User, "is-active", OUR_UNIT).await;
        let found = format!("{enabled}, {active}");
        if enabled == "enabled" && active == "active" {
            return Step {
                name: "start ours",
                found,
                action: Action::Already("enabled and running".into()),
            };
        }
        self.act(
            "start ours",
            found,
            sd.argv(Scope::User, &["enable", "--now", OUR_UNIT]),
        )
        .await
    }
}
