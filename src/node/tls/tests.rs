//! The TLS upgrade against itself and against peers that break the spec (wrong PeerId, no
//! ALPN, TLS 1.2 only), over an in-memory pipe small enough to make every write wait.

use std::sync::Arc;

use futures::{AsyncReadExt as _, AsyncWriteExt as _};
use libp2p::PeerId;
use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade};
use libp2p::identity::Keypair;
use libp2p::tls::certificate;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{CipherSuite, ClientConfig, ServerConfig};
use sha2::{Digest, Sha256};
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt as _};

use super::verifier::Libp2pVerifier;
use super::{ALPN, Config, PROTOCOL, TlsError, TlsStream};

/// Pipe capacity: smaller than a record, so sealing and reading cross many `Pending`s.
const PIPE: usize = 4096;

type Pipe = Compat<tokio::io::DuplexStream>;
type Outcome = Result<(PeerId, TlsStream<Pipe>), TlsError>;

/// Run one handshake: `client` dials `server` over a fresh pipe.
async fn handshake(client: Config, server: Config) -> (Outcome, Outcome) {
    let (a, b) = tokio::io::duplex(PIPE);
    let server = tokio::spawn(server.upgrade_inbound(b.compat(), PROTOCOL));
    let client = client.upgrade_outbound(a.compat(), PROTOCOL).await;
    // A refused client drops its pipe, which ends the server's handshake too.
    let server = server.await.expect("server task");
    (client, server)
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn sha(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}

/// Read to a clean EOF (close_notify), as yamux reads: into a buffer of its own.
async fn read_hashed(stream: &mut TlsStream<Pipe>) -> Vec<u8> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        match stream.read(&mut buf).await.expect("read") {
            0 => return hasher.finalize().to_vec(),
            n => hasher.update(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn ours_to_ours_picks_aes_128_gcm_and_names_both_peers() {
    let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let (client, server) = handshake(Config::new(&a).unwrap(), Config::new(&b).unwrap()).await;
    let (server_peer, server_stream) = client.expect("client handshake");
    let (client_peer, client_stream) = server.expect("server handshake");
    assert_eq!(server_peer, b.public().to_peer_id());
    assert_eq!(client_peer, a.public().to_peer_id());
    for stream in [&server_stream, &client_stream] {
        assert_eq!(
            stream.cipher_suite(),
            Some(CipherSuite::TLS13_AES_128_GCM_SHA256)
        );
    }
}

/// Odd-sized writes (a yamux header, a body, a tail), a half-close, then the reply on the
/// half that is still open: both directions keep their hashes and see a clean EOF.
#[tokio::test]
async fn bytes_cross_both_ways_and_close_notify_is_a_clean_half_close() {
    let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let (client, server) = handshake(Config::new(&a).unwrap(), Config::new(&b).unwrap()).await;
    let (mut client, mut server) = (client.unwrap().1, server.unwrap().1);
    let request = payload(3 << 20);
    let reply = payload((1 << 20) + 13);
    let sent = request.clone();
    let writer = tokio::spawn(async move {
        for chunk in sent
            .chunks(12)
            .take(3)
            .chain(sent[36..].chunks(16_384 + 12))
        {
            client.write_all(chunk).await.unwrap();
        }
        client.close().await.unwrap();
        read_hashed(&mut client).await
    });
    assert_eq!(
        read_hashed(&mut server).await,
        sha(&request),
        "client → server bytes differ"
    );
    server.write_all(&reply).await.unwrap();
    server.close().await.unwrap();
    let back = writer.await.unwrap();
    assert_eq!(back, sha(&reply), "server → client bytes differ");
}

#[tokio::test]
async fn a_certificate_for_another_peer_than_the_dialled_one_is_refused() {
    let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let expected = Keypair::generate_ed25519().public().to_peer_id();
    let client = Config::for_peer(&a, expected).unwrap();
    let (client, server) = handshake(client, Config::new(&b).unwrap()).await;
    let err = client
        .err()
        .expect("the client must refuse b's certificate");
    assert!(err.to_string().contains("TLS handshake failed"), "{err}");
    assert!(server.is_err(), "the server must not finish either");
    // The same configuration accepts the right peer.
    let client = Config::for_peer(&a, b.public().to_peer_id()).unwrap();
    let (client, _) = handshake(client, Config::new(&b).unwrap()).await;
    assert!(client.is_ok(), "the dialled peer itself is accepted");
}

#[tokio::test]
async fn a_peer_that_does_not_offer_alpn_libp2p_is_refused_both_ways() {
    let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let mut client = Config::new(&a).unwrap();
    Arc::make_mut(&mut client.client).alpn_protocols.clear();
    let (_, server) = handshake(client, Config::new(&b).unwrap()).await;
    assert!(
        matches!(server, Err(TlsError::Alpn)),
        "server: {:?}",
        server.err()
    );

    let mut server = Config::new(&b).unwrap();
    Arc::make_mut(&mut server.server).alpn_protocols = vec![b"other".to_vec()];
    let (client, _) = handshake(Config::new(&a).unwrap(), server).await;
    assert!(
        client.is_err(),
        "a server without ALPN libp2p must be refused"
    );
    assert_eq!(ALPN, b"libp2p");
}

/// A TLS 1.2-only peer with a valid libp2p certificate, each side in turn.
#[tokio::test]
async fn a_tls_1_2_only_peer_is_refused_both_ways() {
    let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let (cert, key) = certificate::generate(&a).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key = provider.key_provider.load_private_key(key).unwrap();
    let signer = Arc::new(SingleCertAndKey::from(CertifiedKey::new(vec![cert], key)));
    let tls12 = &[&rustls::version::TLS12];
    let mut old_client = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(tls12)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Libp2pVerifier::default()))
        .with_client_cert_resolver(signer.clone());
    old_client.alpn_protocols = vec![ALPN.to_vec()];
    let mut client = Config::new(&a).unwrap();
    client.client = Arc::new(old_client);
    let (client, server) = handshake(client, Config::new(&b).unwrap()).await;
    assert!(
        client.is_err() && server.is_err(),
        "TLS 1.2 client accepted"
    );

    let mut old_server = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(tls12)
        .unwrap()
        .with_client_cert_verifier(Arc::new(Libp2pVerifier::default()))
        .with_cert_resolver(signer);
    old_server.alpn_protocols = vec![ALPN.to_vec()];
    let mut server = Config::new(&b).unwrap();
    server.server = Arc::new(old_server);
    let (client, _) = handshake(Config::new(&a).unwrap(), server).await;
    assert!(client.is_err(), "TLS 1.2 server accepted");
}
