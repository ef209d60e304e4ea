//! The libp2p TLS certificate checks as rustls verifiers: exactly one self-signed certificate
//! with the libp2p extension (parsed by `libp2p_tls::certificate`), TLS 1.3 signatures only.

use std::sync::Arc;

use libp2p::PeerId;
use libp2p::tls::certificate;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

/// The signature schemes a libp2p certificate may use, most preferred first (the spec's order:
/// elliptic curves before RSA). Ed448 and P-521 are not supported by `libp2p_tls`.
const SCHEMES: [SignatureScheme; 9] = [
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ED25519,
    SignatureScheme::RSA_PSS_SHA512,
    SignatureScheme::RSA_PSS_SHA384,
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PKCS1_SHA512,
    SignatureScheme::RSA_PKCS1_SHA384,
    SignatureScheme::RSA_PKCS1_SHA256,
];

/// Checks the peer's certificate on both sides. `expected`: the PeerId an outbound connection
/// was dialled for, when the caller knows it (the swarm checks it again after the upgrade).
#[derive(Debug, Default)]
pub struct Libp2pVerifier {
    pub expected: Option<PeerId>,
}

/// A rustls error carrying the reason `libp2p_tls` gave.
fn invalid(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(e))))
}

/// The spec: exactly one certificate, self-signed, with a valid libp2p extension.
fn presented_peer(
    end_entity: &CertificateDer,
    intermediates: &[CertificateDer],
) -> Result<PeerId, Error> {
    if !intermediates.is_empty() {
        return Err(Error::General(
            "a libp2p peer must present exactly one certificate".into(),
        ));
    }
    Ok(certificate::parse(end_entity).map_err(invalid)?.peer_id())
}

fn tls13_signature(
    message: &[u8],
    cert: &CertificateDer,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, Error> {
    certificate::parse(cert)
        .map_err(invalid)?
        .verify_signature(dss.scheme, message, dss.signature())
        .map_err(|_| Error::InvalidCertificate(CertificateError::BadSignature))?;
    Ok(HandshakeSignatureValid::assertion())
}

/// Our configs only enable TLS 1.3; a 1.2 signature can only come from a misbehaving peer.
fn tls12_refused() -> Result<HandshakeSignatureValid, Error> {
    Err(Error::General("libp2p TLS is TLS 1.3 only".into()))
}

impl ServerCertVerifier for Libp2pVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer,
        intermediates: &[CertificateDer],
        _server_name: &ServerName,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let peer = presented_peer(end_entity, intermediates)?;
        match self.expected {
            Some(expected) if expected != peer => Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            )),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        tls12_refused()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        SCHEMES.to_vec()
    }
}

/// Client authentication is mandatory in libp2p: the server learns the dialler's PeerId from it.
impl ClientCertVerifier for Libp2pVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer,
        intermediates: &[CertificateDer],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        presented_peer(end_entity, intermediates)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        tls12_refused()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        SCHEMES.to_vec()
    }
}
