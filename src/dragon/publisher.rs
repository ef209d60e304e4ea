//! The publishing loop, owned by the daemon: at start, every interval, on SIGHUP and on
//! `services --refresh` it finds the services that really run and reconciles the listeners and
//! `x_<slug>.sh` scripts with them (publish, republish, unpublish).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use libp2p::PeerId;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::catalog::{self, Service};
use super::detect::{self, Listening, Snapshot};
use super::error::DragonError;
use super::port;
use super::report::{
    PublishedService, ServicesReport, SkipReason, SkippedService, remote_forwards,
};
use super::script::{self, ScriptParams};
use super::slug::Slug;
use crate::config::{DragonConfig, ListenSpec};
use crate::tunnel::{CloseFilter, TunnelError, TunnelInfo, TunnelKind, Tunnels, addr};

/// Refresh requests waiting for the loop; more callers wait on the channel (back-pressure).
const COMMAND_QUEUE: usize = 8;
/// Checks (docker, systemctl, pgrep) run at once: a long modules.list must not fork a crowd.
const MAX_CONCURRENT_CHECKS: usize = 8;
/// Longest `.env` read for `DRAGON_PRIVATE_SERVICES`.
const MAX_ENV_FILE_BYTES: u64 = 1024 * 1024;

/// Handle to the running publisher.
#[derive(Clone)]
pub struct Dragon {
    commands: mpsc::Sender<oneshot::Sender<ServicesReport>>,
    last: Arc<Mutex<ServicesReport>>,
}

impl Dragon {
    /// Start the loop on `tracker`; it runs its first cycle at once and stops with `shutdown`
    /// (then it removes the scripts it wrote: their tunnels are going away).
    pub fn spawn(
        tunnels: Tunnels,
        peer: PeerId,
        config: DragonConfig,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> anyhow::Result<Dragon> {
        use tokio::signal::unix::{SignalKind, signal};
        let hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
        let last = Arc::new(Mutex::new(ServicesReport {
            publishing: true,
            ..ServicesReport::default()
        }));
        let publisher = Publisher {
            tunnels,
            peer,
            config,
            own_pid: std::process::id(),
            published: BTreeMap::new(),
            warned: HashSet::new(),
            cycles: 0,
        };
        tracker.spawn(publisher.run(receiver, hangup, last.clone(), shutdown));
        Ok(Dragon { commands, last })
    }

    /// Run a cycle now and return its report.
    pub async fn refresh(&self) -> Result<ServicesReport, DragonError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(tx)
            .await
            .map_err(|_| DragonError::Stopped)?;
        rx.await.map_err(|_| DragonError::Stopped)
    }

    /// The report of the last cycle.
    pub fn last(&self) -> ServicesReport {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What DRAGON itself published for one slug.
struct Entry {
    spec: ListenSpec,
    script: Option<PathBuf>,
}

struct Publisher {
    tunnels: Tunnels,
    peer: PeerId,
    config: DragonConfig,
    own_pid: u32,
    published: BTreeMap<Slug, Entry>,
    /// The last cycle's warnings: a warning is logged when it appears, not every cycle.
    warned: HashSet<String>,
    cycles: u64,
}

impl Publisher {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<oneshot::Sender<ServicesReport>>,
        mut hangup: tokio::signal::unix::Signal,
        last: Arc<Mutex<ServicesReport>>,
        shutdown: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(self.config.interval());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let reply = tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticker.tick() => None,
                _ = hangup.recv() => {
                    tracing::info!("SIGHUP: publishing cycle");
                    None
                }
                command = commands.recv() => match command {
                    Some(reply) => Some(reply),
                    None => break,
                },
            };
            let report = self.cycle().await;
            *last.lock().unwrap_or_else(|e| e.into_inner()) = report.clone();
            if let Some(reply) = reply {
                let _ = reply.send(report);
            }
        }
        for entry in self.published.values() {
            if let Some(script) = &entry.script {
                remove_script(script);
            }
        }
        tracing::debug!("DRAGON stopped");
    }

    async fn cycle(&mut self) -> ServicesReport {
        let mut warnings = Vec::new();
        let services = self.services(&mut warnings);
        let private = self.private_slugs(&mut warnings);
        let forward_ports = self.tunnels.forward_ports();
        let ports: HashSet<u16> = services.iter().filter_map(|s| s.port).collect();
        let snapshot = tokio::task::spawn_blocking(move || Snapshot::take(&ports))
            .await
            .unwrap_or_default();
        let verdicts: Vec<_> = {
            use futures::StreamExt as _;
            // By index: a closure over `&Service` trips the compiler's higher-ranked lifetimes.
            futures::stream::iter(0..services.len())
                .map(|i| self.judge(&services[i], &private, &snapshot, &forward_ports))
                .buffered(MAX_CONCURRENT_CHECKS)
                .collect()
                .await
        };
        let mut skipped = Vec::new();
        let mut running = BTreeMap::new();
        for (service, verdict) in services.into_iter().zip(verdicts) {
            match verdict {
                Ok(target) => {
                    running.insert(service.slug.clone(), (service, target));
                }
                Err(reason) => skipped.push(SkippedService {
                    slug: service.slug.clone(),
                    port: service.port,
                    reason,
                }),
            }
        }
        let published = self.reconcile(running, &mut skipped);
        for warning in warnings.iter().filter(|w| !self.warned.contains(*w)) {
            tracing::warn!("DRAGON: {warning}");
        }
        self.warned = warnings.iter().cloned().collect();
        self.cycles += 1;
        ServicesReport {
            publishing: true,
            cycles: self.cycles,
            published,
            skipped,
            remote: remote_forwards(&self.tunnels.list()),
            warnings,
        }
    }

    /// ssh (sshd's port) and strfry, then modules.list or, without that file, the built-in
    /// fallback (same slug: replaced), then `[dragon.ports]`.
    fn services(&self, warnings: &mut Vec<String>) -> Vec<Service> {
        let (ssh_port, warning) = catalog::sshd_port(&self.config.sshd_config);
        warnings.extend(warning);
        let mut services = catalog::core(ssh_port);
        let (path, configured) = self.config.modules_list_path();
        let (extra, bad) = catalog::listed_services(&path, configured);
        warnings.extend(bad);
        for service in extra {
            match services.iter_mut().find(|s| s.slug == service.slug) {
                Some(existing) => *existing = service,
                None => services.push(service),
            }
        }
        for (slug, &port) in &self.config.ports {
            let slug = match Slug::parse(slug) {
                Ok(slug) => slug,
                Err(e) => {
                    warnings.push(format!("[dragon.ports]: {e}"));
                    continue;
                }
            };
            match services.iter_mut().find(|s| s.slug == slug) {
                Some(s) => {
                    if s.consumer_port == s.port {
                        s.consumer_port = Some(port);
                    }
                    s.port = Some(port);
                }
                None => services.push(Service {
                    label: slug.to_string(),
                    slug,
                    port: Some(port),
                    consumer_port: Some(port),
                    check: catalog::Check::Auto,
                    origin: catalog::Origin::Catalog,
                }),
            }
        }
        services
    }

    fn private_slugs(&self, warnings: &mut Vec<String>) -> BTreeSet<String> {
        use std::io::Read as _;
        let path = self.config.env_file_path();
        let mut text = String::new();
        let read = std::fs::File::open(&path)
            .and_then(|f| f.take(MAX_ENV_FILE_BYTES).read_to_string(&mut text));
        let text = match read {
            Ok(_) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                warnings.push(format!("cannot read {}: {e}", path.display()));
                None
            }
        };
        let mut private = catalog::private_slugs(
            std::env::var("DRAGON_PRIVATE_SERVICES").ok(),
            text.as_deref(),
            &self.config.private,
        );
        if private.remove(catalog::STRFRY) {
            warnings.push(format!(
                "{} is always published (other stations sync through it); not private",
                catalog::STRFRY
            ));
        }
        private
    }

    /// Publish `service`? `Ok(target)` when it really runs natively; else why not.
    async fn judge(
        &self,
        service: &Service,
        private: &BTreeSet<String>,
        snapshot: &Snapshot,
        forward_ports: &[u16],
    ) -> Result<SocketAddr, SkipReason> {
        if private.contains(service.slug.as_str()) {
            return Err(SkipReason::Private);
        }
        let port = service.port.ok_or(SkipReason::NoPort)?;
        match detect::run_check(&service.check).await {
            Ok(true) => {}
            Ok(false) => {
                return Err(SkipReason::NotRunning(format!(
                    "check {} failed",
                    service.check
                )));
            }
            Err(why) => {
                return Err(SkipReason::NotRunning(format!(
                    "check {} cannot run ({why})",
                    service.check
                )));
            }
        }
        match snapshot.classify(port, self.own_pid, forward_ports) {
            Listening::Native { target } => Ok(target),
            Listening::Nothing => Err(SkipReason::NotRunning(format!(
                "nothing listens on port {port}"
            ))),
            Listening::Tunnel { by } => Err(SkipReason::Tunnel(by)),
        }
    }

    fn listen_spec(&self, slug: &Slug, target: SocketAddr) -> ListenSpec {
        ListenSpec {
            protocol: slug.protocol(&self.peer),
            target: addr::socket_multiaddr(target),
            report_peer_id: false,
            allow_custom_protocol: false,
            allow_peers: self
                .config
                .allow_peers
                .get(slug.as_str())
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// Make the listeners match `running`: withdraw what stopped or changed, publish what is new.
    fn reconcile(
        &mut self,
        running: BTreeMap<Slug, (Service, SocketAddr)>,
        skipped: &mut Vec<SkippedService>,
    ) -> Vec<PublishedService> {
        self.withdraw_stale(&running);
        let listing = self.tunnels.list();
        let scripts = self.config.scripts_dir_for(&self.peer);
        for s in skipped.iter() {
            remove_script(&scripts.join(script::file_name(&s.slug)));
        }
        let mut published = Vec::new();
        for (slug, (service, target)) in running {
            match self.publish(&service, target, &listing) {
                Ok(p) => published.push(p),
                Err(e) => {
                    tracing::warn!(%slug, "cannot publish: {e}");
                    skipped.push(SkippedService {
                        slug,
                        port: service.port,
                        reason: SkipReason::Failed(e.to_string()),
                    });
                }
            }
        }
        remove_stale_scripts(&scripts, &published);
        published
    }

    /// Withdraw what DRAGON published for services that stopped or whose listener must change.
    fn withdraw_stale(&mut self, running: &BTreeMap<Slug, (Service, SocketAddr)>) {
        let listing = self.tunnels.list();
        // Listeners closed from outside (`p2p close`) are forgotten, so they come back.
        self.published.retain(|_, e| {
            listing
                .iter()
                .any(|t| t.kind == TunnelKind::Listen && t.protocol == e.spec.protocol)
        });
        let stale: Vec<Slug> = self
            .published
            .iter()
            .filter(|(slug, entry)| {
                running
                    .get(*slug)
                    .is_none_or(|(_, target)| self.listen_spec(slug, *target) != entry.spec)
            })
            .map(|(slug, _)| slug.clone())
            .collect();
        for slug in stale {
            self.withdraw(&slug);
        }
    }

    /// Publish one running service (or keep it published) and write its script. A listener
    /// made by hand for the same protocol is left alone and reported as not managed.
    fn publish(
        &mut self,
        service: &Service,
        target: SocketAddr,
        listing: &[TunnelInfo],
    ) -> Result<PublishedService, TunnelError> {
        let slug = &service.slug;
        let spec = self.listen_spec(slug, target);
        let ours = self.published.contains_key(slug);
        let manual = listing
            .iter()
            .find(|t| t.kind == TunnelKind::Listen && t.protocol == spec.protocol)
            .filter(|_| !ours);
        let (target_address, allow_peers) = match manual {
            Some(t) => (t.target_address.clone(), t.allow_peers.clone()),
            None if ours => (spec.target.clone(), spec.allow_peers.clone()),
            None => {
                let info = self.tunnels.listen(&spec)?;
                tracing::info!(%slug, protocol = %spec.protocol, target = %info.target_address, "published");
                (info.target_address, info.allow_peers)
            }
        };
        let script = self.write_script(service, target.port());
        if manual.is_none() {
            let entry = Entry {
                spec: spec.clone(),
                script: script.clone(),
            };
            self.published.insert(slug.clone(), entry);
        }
        Ok(PublishedService {
            slug: slug.clone(),
            port: target.port(),
            protocol: spec.protocol,
            target: target_address,
            allow_peers,
            script,
            managed: manual.is_none(),
        })
    }

    /// Close DRAGON's listener for `slug` and remove its script.
    fn withdraw(&mut self, slug: &Slug) {
        let Some(entry) = self.published.remove(slug) else {
            return;
        };
        // Protocol and target: only our listener, never a forward that happens to share the name.
        let filter = CloseFilter {
            protocol: Some(entry.spec.protocol.clone()),
            target: Some(entry.spec.target.clone()),
            ..CloseFilter::default()
        };
        match self.tunnels.close(&filter) {
            Ok(_) | Err(TunnelError::NoMatch) => {}
            Err(e) => tracing::warn!(%slug, "cannot unpublish: {e}"),
        }
        if let Some(script) = &entry.script {
            remove_script(script);
        }
        tracing::info!(%slug, protocol = %entry.spec.protocol, "unpublished");
    }

    /// Write `x_<slug>.sh` (only when its text changed); `None` with a log line on failure.
    fn write_script(&self, service: &Service, port: u16) -> Option<PathBuf> {
        let dir = self.config.scripts_dir_for(&self.peer);
        let node_id = self.peer.to_string();
        let user = account_name();
        let text = script::client_script(&ScriptParams {
            node_id: &node_id,
            slug: &service.slug,
            label: &service.label,
            native_port: service.consumer_port.unwrap_or(port),
            alt_port: port::alt_port(&node_id, service.slug.as_str()),
            ssh_user: user.as_deref(),
        });
        let path = dir.join(script::file_name(&service.slug));
        if std::fs::read_to_string(&path).is_ok_and(|old| old == text) {
            return Some(path);
        }
        match write_executable(&dir, &path, &text) {
            Ok(()) => Some(path),
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot write the client script: {e}");
                None
            }
        }
    }
}

/// The account the daemon runs as (suggested in the `ssh -p` line): `$USER`, `$LOGNAME`, else
/// the name of our uid in `/etc/passwd` (daemons started by init systems often have no `$USER`).
fn account_name() -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    if let Some(user) = ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
    {
        return Some(user);
    }
    let uid = std::fs::metadata("/proc/self").ok()?.uid().to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.get(2) == Some(&uid.as_str())).then(|| fields[0].to_owned())
    })
}

/// Write atomically, so a reader never sees half a script.
fn write_executable(
    dir: &std::path::Path,
    path: &std::path::Path,
    text: &str,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    crate::atomic_file::write(path, text.as_bytes(), 0o755)
}

/// Remove our `x_*.sh` for services not published now (left by an earlier run that did not stop
/// cleanly, or by a service since removed from modules.list). Scripts we did not write stay.
fn remove_stale_scripts(dir: &std::path::Path, published: &[PublishedService]) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let current: HashSet<String> = published
        .iter()
        .map(|p| script::file_name(&p.slug))
        .collect();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("x_") || !name.ends_with(".sh") || current.contains(&name) {
            continue;
        }
        let ours = std::fs::read_to_string(entry.path())
            .is_ok_and(|text| text.lines().take(3).any(|l| l.starts_with(script::MARKER)));
        if ours {
            remove_script(&entry.path());
        }
    }
}

fn remove_script(path: &std::path::Path) {
    match std::fs::remove_file(path) {
        Ok(()) => tracing::debug!(path = %path.display(), "removed client script"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), "cannot remove client script: {e}"),
    }
}
