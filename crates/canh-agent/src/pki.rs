//! Agent-side keys, CSRs and TLS client configurations.
//!
//! Trust comes from one pinned value: the SHA-256 of the server CA's DER certificate, shipped
//! with the installer (`--ca-pin`). At enrolment the agent does not yet hold the CA, so it
//! accepts the server's chain only when that chain carries a certificate with the pinned hash
//! and the leaf verifies against it. After enrolment it keeps the CA and uses it as its only
//! root, and presents its own client certificate (mutual TLS). Both sessions are TLS 1.3 only.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

/// Name every Canh server certificate carries; the agent always asks for it, since trust comes
/// from the pinned private CA and not from the address used to reach the server.
pub const SERVER_NAME: &str = "canh-server";

/// TLS and key failures.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Key or CSR generation failed.
    #[error("key generation failed")]
    Keygen(#[from] rcgen::Error),
    /// A PEM file did not hold what was expected.
    #[error("invalid PEM: {0}")]
    Pem(String),
    /// The pin is not 64 hex digits.
    #[error("CA pin must be the SHA-256 of the CA certificate as 64 hex digits")]
    BadPin,
    /// The stored CA does not match the pin.
    #[error("stored CA certificate does not match the pinned hash")]
    PinMismatch,
    /// rustls refused the configuration.
    #[error("tls configuration")]
    Tls(#[from] rustls::Error),
}

/// A new private key and the CSR for it.
pub struct KeyAndCsr {
    /// PKCS#8 private key, PEM.
    pub key_pem: String,
    /// PKCS#10 request, PEM.
    pub csr_pem: String,
}

/// Generates an ECDSA P-256 key and a CSR naming `hostname`.
pub fn generate_key_and_csr(hostname: &str) -> Result<KeyAndCsr, PkiError> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, hostname);
    let csr = params.serialize_request(&key)?;
    Ok(KeyAndCsr {
        key_pem: key.serialize_pem(),
        csr_pem: csr.pem()?,
    })
}

/// Parses a 64-hex-digit pin.
pub fn parse_pin(pin: &str) -> Result<[u8; 32], PkiError> {
    let clean: String = pin.chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(clean.trim()).map_err(|_| PkiError::BadPin)?;
    bytes.try_into().map_err(|_| PkiError::BadPin)
}

/// SHA-256 of a DER certificate, hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// All certificates in a PEM text.
pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut pem.as_bytes()).collect();
    let certs = certs.map_err(|e| PkiError::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(PkiError::Pem("no certificate".into()));
    }
    Ok(certs)
}

/// The private key in a PEM text.
pub fn key_from_pem(pem: &str) -> Result<PrivateKeyDer<'static>, PkiError> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .map_err(|e| PkiError::Pem(e.to_string()))?
        .ok_or_else(|| PkiError::Pem("no private key".into()))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS 1.3 client config for enrolment: server authenticated by the CA pin, no client cert.
pub fn enrol_config(pin: [u8; 32]) -> Result<ClientConfig, PkiError> {
    let provider = provider();
    let verifier = Arc::new(PinnedCaVerifier {
        pin,
        provider: provider.clone(),
    });
    Ok(ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// TLS 1.3 mutual-TLS client config: the pinned CA as the only root, plus the agent's cert.
pub fn session_config(
    pin: [u8; 32],
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<ClientConfig, PkiError> {
    let ca = certs_from_pem(ca_pem)?.remove(0);
    if Sha256::digest(ca.as_ref()).as_slice() != pin {
        return Err(PkiError::PinMismatch);
    }
    let mut roots = RootCertStore::empty();
    roots.add(ca).map_err(PkiError::Tls)?;
    let chain = certs_from_pem(cert_pem)?;
    let key = key_from_pem(key_pem)?;
    Ok(ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?)
}

/// The server name the agent presents in SNI and checks in the server certificate.
pub fn server_name() -> ServerName<'static> {
    ServerName::DnsName(
        rustls::pki_types::DnsName::try_from(SERVER_NAME)
            .unwrap_or_else(|_| unreachable!("constant is a valid DNS name"))
            .to_owned(),
    )
}

/// Accepts a server chain only if it includes the pinned CA and the leaf verifies against it.
#[derive(Debug)]
struct PinnedCaVerifier {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| Sha256::digest(c.as_ref()).as_slice() == self.pin)
            .ok_or(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ))?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, &[], server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_accepts_hex_with_or_without_colons() {
        let hexpin = "ab".repeat(32);
        assert_eq!(parse_pin(&hexpin).unwrap(), [0xab; 32]);
        let colons = vec!["ab"; 32].join(":");
        assert_eq!(parse_pin(&colons).unwrap(), [0xab; 32]);
        assert!(parse_pin("abcd").is_err());
        assert!(parse_pin(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn generated_csr_and_key_are_pem() {
        let k = generate_key_and_csr("host-1").unwrap();
        assert!(k.csr_pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        assert!(key_from_pem(&k.key_pem).is_ok());
    }
}
