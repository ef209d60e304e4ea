//! The security upgrade every transport uses: TLS (AES-GCM first) offered before Noise, as
//! Kubo ≥ 0.30 orders them, and one log line per connection naming what was negotiated.

use std::future::Future;

use futures::future::{BoxFuture, Either};
use futures::{AsyncRead, AsyncWrite, FutureExt as _, TryFutureExt as _};
use libp2p::core::UpgradeInfo;
use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade};
use libp2p::identity::Keypair;
use libp2p::{PeerId, noise};

use super::tls::{self, TlsStream};

/// Noise's multistream-select name (libp2p-noise's).
const NOISE: &str = "/noise";

/// A security protocol we offer, in multistream-select order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tls,
    Noise,
}

impl AsRef<str> for Protocol {
    fn as_ref(&self) -> &str {
        match self {
            Protocol::Tls => tls::PROTOCOL,
            Protocol::Noise => NOISE,
        }
    }
}

/// The secured connection, whichever protocol was negotiated.
pub type Secured<C> = Either<TlsStream<C>, noise::Output<C>>;

/// Why securing a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("cannot set up TLS: {0}")]
    TlsSetup(#[source] tls::TlsError),
    #[error("cannot set up noise: {0}")]
    NoiseSetup(#[source] noise::Error),
    #[error(transparent)]
    Tls(tls::TlsError),
    #[error("noise handshake failed: {0}")]
    Noise(#[source] noise::Error),
}

/// TLS, then Noise.
#[derive(Clone)]
pub struct Security {
    tls: tls::Config,
    noise: noise::Config,
}

impl Security {
    pub fn new(key: &Keypair) -> Result<Security, SecurityError> {
        Ok(Security {
            tls: tls::Config::new(key).map_err(SecurityError::TlsSetup)?,
            noise: noise::Config::new(key).map_err(SecurityError::NoiseSetup)?,
        })
    }
}

impl UpgradeInfo for Security {
    type Info = Protocol;
    type InfoIter = [Protocol; 2];

    fn protocol_info(&self) -> Self::InfoIter {
        [Protocol::Tls, Protocol::Noise]
    }
}

#[derive(Debug, Clone, Copy)]
enum Direction {
    Inbound,
    Outbound,
}

/// The line tests and operators read: `secured connection with <peer>: /tls/1.0.0
/// TLS13_AES_128_GCM_SHA256 (outbound)`.
fn log_secured<C>(direction: Direction, (peer, stream): &(PeerId, Secured<C>)) {
    let dir = match direction {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
    };
    match stream {
        Either::Left(tls) => {
            let suite = tls
                .cipher_suite()
                .map(|s| format!("{s:?}"))
                .unwrap_or_default();
            tracing::debug!(
                "secured connection with {peer}: {} {suite} ({dir})",
                tls::PROTOCOL
            );
        }
        Either::Right(_) => tracing::debug!("secured connection with {peer}: {NOISE} ({dir})"),
    }
}

type Upgrade<C> = BoxFuture<'static, Result<(PeerId, Secured<C>), SecurityError>>;

/// The handshake that multistream-select chose, its output made one type, and logged.
fn finish<C, T, N>(direction: Direction, handshake: Either<T, N>) -> Upgrade<C>
where
    C: Send + 'static,
    T: Future<Output = Result<(PeerId, TlsStream<C>), tls::TlsError>> + Send + 'static,
    N: Future<Output = Result<(PeerId, noise::Output<C>), noise::Error>> + Send + 'static,
{
    let secured = match handshake {
        Either::Left(tls) => tls
            .map_ok(|(peer, s)| (peer, Either::Left(s)))
            .map_err(SecurityError::Tls)
            .boxed(),
        Either::Right(noise) => noise
            .map_ok(|(peer, s)| (peer, Either::Right(s)))
            .map_err(SecurityError::Noise)
            .boxed(),
    };
    secured
        .inspect_ok(move |out| log_secured(direction, out))
        .boxed()
}

impl<C> InboundConnectionUpgrade<C> for Security
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, Secured<C>);
    type Error = SecurityError;
    type Future = Upgrade<C>;

    fn upgrade_inbound(self, socket: C, info: Protocol) -> Self::Future {
        let handshake = match info {
            Protocol::Tls => Either::Left(self.tls.upgrade_inbound(socket, tls::PROTOCOL)),
            Protocol::Noise => Either::Right(self.noise.upgrade_inbound(socket, NOISE)),
        };
        finish(Direction::Inbound, handshake)
    }
}

impl<C> OutboundConnectionUpgrade<C> for Security
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, Secured<C>);
    type Error = SecurityError;
    type Future = Upgrade<C>;

    fn upgrade_outbound(self, socket: C, info: Protocol) -> Self::Future {
        let handshake = match info {
            Protocol::Tls => Either::Left(self.tls.upgrade_outbound(socket, tls::PROTOCOL)),
            Protocol::Noise => Either::Right(self.noise.upgrade_outbound(socket, NOISE)),
        };
        finish(Direction::Outbound, handshake)
    }
}
