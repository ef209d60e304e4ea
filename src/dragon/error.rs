//! Errors of DRAGON operations, phrased for the CLI user: its own module, so that every part of
//! DRAGON reaches it without importing the module that wires them.

/// Errors of DRAGON operations, phrased for the CLI user.
#[derive(Debug, thiserror::Error)]
pub enum DragonError {
    #[error("service name {0:?} is refused: use 1 to 64 characters of a-z 0-9 . _ -")]
    BadSlug(String),
    #[error("{0} is not a peer id (nor a multiaddr ending in /p2p/<peer id>)")]
    BadPeer(String),
    #[error("{slug}: local port {port} is taken ({source}); choose another --port")]
    PortTaken {
        slug: String,
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("{slug}: every candidate local port is taken ({ports}); pass --port")]
    NoFreePort { slug: String, ports: String },
    #[error("no forward to {0} is open")]
    NotConnected(String),
    #[error(transparent)]
    Tunnel(#[from] crate::tunnel::TunnelError),
    #[error("DRAGON is not running in this daemon")]
    Stopped,
}
