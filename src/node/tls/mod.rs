//! libp2p's `/tls/1.0.0` security upgrade on rustls with our suite order (AES-GCM first: with
//! AES-NI it seals ~4× faster than ChaCha20, which libp2p-tls puts first) and our buffered
//! stream. Certificates are made and parsed by `libp2p_tls::certificate`.

mod stream;
#[cfg(test)]
mod tests;
mod verifier;

use std::io;
use std::iter;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{AsyncRead, AsyncWrite, FutureExt as _};
use libp2p::PeerId;
use libp2p::core::UpgradeInfo;
use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade};
use libp2p::identity::Keypair;
use libp2p::tls::certificate;
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::crypto::aws_lc_rs::cipher_suite::{
    TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256,
};
use rustls::pki_types::ServerName;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ClientConfig, Connection, ProtocolVersion, ServerConfig, SupportedCipherSuite};

pub use stream::TlsStream;
use verifier::Libp2pVerifier;

/// The multistream-select name of this upgrade.
pub const PROTOCOL: &str = "/tls/1.0.0";
/// The spec's ALPN value; a peer that does not agree on it is refused.
const ALPN: &[u8] = b"libp2p";
/// The suites we offer and accept, preferred first: AES-GCM runs on the AES instructions of
/// every x86-64 and ARMv8 station; ChaCha20 stays last for peers without them (Go then picks it).
const SUITES: [SupportedCipherSuite; 3] = [
    TLS13_AES_128_GCM_SHA256,
    TLS13_AES_256_GCM_SHA384,
    TLS13_CHACHA20_POLY1305_SHA256,
];

/// Why a TLS upgrade failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot make our TLS certificate: {0}")]
    Generate(#[from] certificate::GenError),
    #[error("cannot set up TLS: {0}")]
    Setup(#[from] rustls::Error),
    #[error("TLS handshake failed: {0}")]
    Handshake(#[source] io::Error),
    #[error("TLS peer did not agree on ALPN \"libp2p\"")]
    Alpn,
    #[error("TLS peer negotiated a version other than 1.3")]
    Version,
    #[error("TLS peer must present exactly one certificate")]
    CertificateCount,
    #[error("TLS peer certificate is not a libp2p certificate: {0}")]
    Certificate(#[source] certificate::ParseError),
}

/// The upgrade: one server and one client configuration, shared by every connection.
#[derive(Clone)]
pub struct Config {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

/// aws-lc-rs (libp2p-tls' provider too) with our suite order and its default key exchanges.
fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites = SUITES.to_vec();
    Arc::new(provider)
}

impl Config {
    pub fn new(key: &Keypair) -> Result<Config, TlsError> {
        Config::build(key, None)
    }

    /// A configuration whose outbound connections accept only `peer`. The swarm checks the
    /// dialled PeerId after any upgrade; this refuses a wrong one inside the handshake.
    pub fn for_peer(key: &Keypair, peer: PeerId) -> Result<Config, TlsError> {
        Config::build(key, Some(peer))
    }

    fn build(key: &Keypair, expected: Option<PeerId>) -> Result<Config, TlsError> {
        let (cert, private) = certificate::generate(key)?;
        let provider = provider();
        // Not `with_single_cert`: it checks the certificate with webpki, which refuses the
        // libp2p extension (critical, and unknown to it).
        let signer = provider.key_provider.load_private_key(private)?;
        let ours = Arc::new(SingleCertAndKey::from(CertifiedKey::new(
            vec![cert],
            signer,
        )));
        let versions = &[&rustls::version::TLS13];
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)?
            .with_client_cert_verifier(Arc::new(Libp2pVerifier::default()))
            .with_cert_resolver(ours.clone());
        server.alpn_protocols = vec![ALPN.to_vec()];
        // libp2p never resumes a session: tickets would be bytes for nothing.
        server.send_tls13_tickets = 0;
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Libp2pVerifier { expected }))
            .with_client_cert_resolver(ours);
        client.alpn_protocols = vec![ALPN.to_vec()];
        client.resumption = Resumption::disabled();
        Ok(Config {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}

/// After the handshake: the spec's checks, then the PeerId from the certificate.
fn secured<C>(io: C, conn: Connection) -> Result<(PeerId, TlsStream<C>), TlsError> {
    if conn.alpn_protocol() != Some(ALPN) {
        return Err(TlsError::Alpn);
    }
    if conn.protocol_version() != Some(ProtocolVersion::TLSv1_3) {
        return Err(TlsError::Version);
    }
    let Some([cert]) = conn.peer_certificates() else {
        return Err(TlsError::CertificateCount);
    };
    let peer = certificate::parse(cert)
        .map_err(TlsError::Certificate)?
        .peer_id();
    Ok((peer, TlsStream::new(io, conn)))
}

impl UpgradeInfo for Config {
    type Info = &'static str;
    type InfoIter = iter::Once<&'static str>;

    fn protocol_info(&self) -> Self::InfoIter {
        iter::once(PROTOCOL)
    }
}

impl<C> InboundConnectionUpgrade<C> for Config
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, TlsStream<C>);
    type Error = TlsError;
    type Future = BoxFuture<'static, Result<Self::Output, TlsError>>;

    fn upgrade_inbound(self, socket: C, _: Self::Info) -> Self::Future {
        async move {
            let tls = futures_rustls::TlsAcceptor::from(self.server)
                .accept(socket)
                .await
                .map_err(TlsError::Handshake)?;
            let (io, conn) = tls.into_inner();
            secured(io, conn.into())
        }
        .boxed()
    }
}

impl<C> OutboundConnectionUpgrade<C> for Config
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, TlsStream<C>);
    type Error = TlsError;
    type Future = BoxFuture<'static, Result<Self::Output, TlsError>>;

    fn upgrade_outbound(self, socket: C, _: Self::Info) -> Self::Future {
        async move {
            // The spec: no SNI. rustls sends none for an IP address.
            let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::UNSPECIFIED).into());
            let tls = futures_rustls::TlsConnector::from(self.client)
                .connect(name, socket)
                .await
                .map_err(TlsError::Handshake)?;
            let (io, conn) = tls.into_inner();
            secured(io, conn.into())
        }
        .boxed()
    }
}
