//! The agent CA: created once, kept on disk; signs agent CSRs and the server's own certificate.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};

use super::AgentsError;

/// Name every server certificate carries; agents ask for it, since trust comes from the
/// pinned CA rather than from the address used to reach the server.
pub(crate) const SERVER_NAME: &str = "canh-server";

/// The CA key and certificate.
pub(crate) struct Ca {
    /// The CA as first written, PEM (what agents pin).
    pub(crate) pem: String,
    pub(crate) der: CertificateDer<'static>,
    /// Issuer view rebuilt from the fixed parameters; signing uses only its name and key.
    issuer: rcgen::Certificate,
    key: KeyPair,
}

fn ca_params() -> Result<CertificateParams, AgentsError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(pki)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Canh");
    dn.push(DnType::CommonName, "Canh agent CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

pub(crate) fn pki(e: rcgen::Error) -> AgentsError {
    AgentsError::Pki(e.to_string())
}

fn to_time(t: DateTime<Utc>) -> Result<time::OffsetDateTime, AgentsError> {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp())
        .map_err(|e| AgentsError::Invalid(format!("time out of range: {e}")))
}

/// SHA-256 of DER bytes, hex.
pub(crate) fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

impl Ca {
    /// Loads the CA from `dir`, creating it on first use.
    pub(crate) fn load_or_create(dir: &Path) -> Result<Self, AgentsError> {
        let key_path = dir.join("ca.key");
        let cert_path = dir.join("ca.pem");
        let (key, pem) = match std::fs::read_to_string(&key_path) {
            Ok(key_pem) => {
                let pem = std::fs::read_to_string(&cert_path)
                    .map_err(super::io(format!("reading {}", cert_path.display())))?;
                (KeyPair::from_pem(&key_pem).map_err(pki)?, pem)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = KeyPair::generate().map_err(pki)?;
                let mut params = ca_params()?;
                let now = Utc::now();
                params.not_before = to_time(now - Duration::minutes(5))?;
                params.not_after = to_time(now + Duration::days(365 * 20))?;
                let cert = params.self_signed(&key).map_err(pki)?;
                super::write_private(&key_path, key.serialize_pem().as_bytes())?;
                super::write_atomic(&cert_path, cert.pem().as_bytes(), 0o644)?;
                (key, cert.pem())
            }
            Err(e) => return Err(super::io(format!("reading {}", key_path.display()))(e)),
        };
        let der = rustls_pemfile::certs(&mut pem.as_bytes())
            .next()
            .ok_or_else(|| AgentsError::Pki("ca.pem holds no certificate".into()))?
            .map_err(|e| AgentsError::Pki(e.to_string()))?;
        let issuer = ca_params()?.self_signed(&key).map_err(pki)?;
        Ok(Self {
            pem,
            der,
            issuer,
            key,
        })
    }

    /// SHA-256 of the CA certificate (what `canh-agent enrol --ca-pin` takes).
    pub(crate) fn pin(&self) -> String {
        fingerprint(self.der.as_ref())
    }

    /// Signs a client certificate for `agent_id` over the key in `csr_pem`.
    pub(crate) fn sign_agent(
        &self,
        agent_id: &str,
        csr_pem: &str,
        days: u32,
    ) -> Result<Issued, AgentsError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| AgentsError::Invalid(format!("bad CSR: {e}")))?;
        // Only the CSR's key is used: name, SANs and usages are decided here.
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(pki)?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, agent_id);
        let uri = format!("urn:canh:agent:{agent_id}");
        params.subject_alt_names = vec![SanType::URI(uri.try_into().map_err(pki)?)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = Utc::now();
        let not_before = now - Duration::minutes(5);
        let not_after = now + Duration::days(i64::from(days));
        params.not_before = to_time(not_before)?;
        params.not_after = to_time(not_after)?;
        let signed = CertificateSigningRequestParams {
            params,
            public_key: csr.public_key,
        };
        let cert = signed.signed_by(&self.issuer, &self.key).map_err(pki)?;
        Ok(Issued {
            fingerprint: fingerprint(cert.der().as_ref()),
            pem: cert.pem(),
            not_before,
            not_after,
        })
    }

    /// A fresh server key and certificate for `names` (plus [`SERVER_NAME`]).
    fn server_cert(
        &self,
        names: &[String],
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), AgentsError> {
        let mut all = vec![SERVER_NAME.to_owned()];
        all.extend(names.iter().cloned());
        let mut params = CertificateParams::new(all).map_err(pki)?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, SERVER_NAME);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = Utc::now();
        params.not_before = to_time(now - Duration::minutes(5))?;
        params.not_after = to_time(now + Duration::days(365))?;
        let key = KeyPair::generate().map_err(pki)?;
        let cert = params
            .signed_by(&key, &self.issuer, &self.key)
            .map_err(pki)?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((vec![cert.der().clone(), self.der.clone()], key_der))
    }

    /// TLS configurations for the enrolment endpoint (server-authenticated) and the agent
    /// endpoint (client certificate required, chained to this CA). TLS 1.3 only.
    pub(crate) fn server_configs(
        &self,
        names: &[String],
    ) -> Result<(Arc<ServerConfig>, Arc<ServerConfig>), AgentsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (chain, key) = self.server_cert(names)?;
        let enrol = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(chain.clone(), key.clone_key())?;
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone())?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| AgentsError::Pki(e.to_string()))?;
        let agent = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)?;
        Ok((Arc::new(enrol), Arc::new(agent)))
    }
}

/// A signed client certificate.
pub(crate) struct Issued {
    pub(crate) pem: String,
    pub(crate) fingerprint: String,
    pub(crate) not_before: DateTime<Utc>,
    pub(crate) not_after: DateTime<Utc>,
}

/// Fills `buf` from the system's secure random source.
pub(crate) fn random(buf: &mut [u8]) -> Result<(), AgentsError> {
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(buf)
        .map_err(|_| AgentsError::Pki("no secure random source".into()))
}
