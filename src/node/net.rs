//! The network runtime: the swarm, its connections and the tunnels' pipes run on a tokio runtime
//! of their own, apart from the relay, the sync, the control API and the pages.
//!
//! A tunnel's bytes pass through three tasks for every frame: the connection's (TLS or Noise,
//! yamux), the pipe's, and the local socket's readiness. They wake each other for every frame;
//! on one worker those wake-ups stay on one thread and in its cache, whereas on the daemon's
//! shared multi-threaded runtime each may move to another worker (a cross-thread wake-up, a
//! steal, the frame's bytes in another core's cache). Measured with `interop/bench/tunnel.py`
//! (`interop/bench/tunnel.md`): 6–17 % more MB/s ours→ours and 5–12 % less CPU per GiB in
//! the two tunnel nodes, in interleaved A/B runs against the shared runtime. One core carries
//! a tunnel at several times a station's uplink, and the relay, whose clients are many and
//! independent, keeps the shared runtime with one worker per core.
//!
//! The daemon owns the runtime ([`NetRuntime`]) and ends it after every task it tracks has
//! finished; the node and the tunnels only hold its [`Handle`].

use std::io;

use tokio::runtime::{Builder, Handle, Runtime};

/// Workers of the network runtime when `[node] net_workers` is not set: one (see above).
pub const DEFAULT_WORKERS: usize = 1;

/// More workers than this are refused: the runtime's threads are meant to be few, and a typo
/// (`net_workers = 100`) should not start a hundred threads.
pub const MAX_WORKERS: usize = 64;

/// Why the network runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum NetRuntimeError {
    #[error("[node] net_workers = {0}: at most {MAX_WORKERS} (0 shares the daemon's runtime)")]
    TooMany(usize),
    #[error("cannot start the network runtime: {0}")]
    Start(#[from] io::Error),
}

/// The network runtime; dropping it ends it without waiting (its tasks have ended by then).
pub struct NetRuntime {
    runtime: Option<Runtime>,
    handle: Handle,
}

impl NetRuntime {
    /// A runtime of `workers` threads, or `None` for 0: the swarm then shares the caller's.
    pub fn start(workers: usize) -> Result<Option<NetRuntime>, NetRuntimeError> {
        if workers == 0 {
            return Ok(None);
        }
        if workers > MAX_WORKERS {
            return Err(NetRuntimeError::TooMany(workers));
        }
        let runtime = Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("net")
            .enable_all()
            .build()?;
        Ok(Some(NetRuntime {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        }))
    }

    /// Where the node and the tunnels spawn their tasks.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }
}

impl Drop for NetRuntime {
    /// `shutdown_background`: a runtime may not be dropped the blocking way from async code,
    /// which is where the daemon ends.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_workers_share_the_callers_runtime_and_too_many_are_refused() {
        assert!(NetRuntime::start(0).expect("zero").is_none());
        assert!(matches!(
            NetRuntime::start(MAX_WORKERS + 1),
            Err(NetRuntimeError::TooMany(n)) if n == MAX_WORKERS + 1
        ));
    }

    #[tokio::test]
    async fn tasks_run_on_the_net_threads_and_drop_from_async_code_is_safe() {
        let net = NetRuntime::start(1).expect("start").expect("runtime");
        let name = net
            .handle()
            .spawn(async { std::thread::current().name().map(str::to_owned) })
            .await
            .expect("join");
        assert_eq!(name.as_deref(), Some("net"));
        drop(net); // inside this test's runtime: must not panic
    }
}
