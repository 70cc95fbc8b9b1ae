//! rustls client configurations for `https://` backends, built from PEM
//! files (CA bundle, optional client certificate and key), and the reason a
//! handshake failed, sorted for the `reason` label and the log.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// Where the system's CA bundle is looked for when no `ca` is given
/// (after `$SSL_CERT_FILE`): Debian/Ubuntu/Alpine, Fedora/RHEL, openSUSE, macOS/BSD.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Why a TLS handshake with a backend failed (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsReason {
    /// The backend's certificate (or one in its chain) has expired or is not yet valid.
    Expired,
    /// The backend's certificate is not signed by a trusted CA.
    UnknownCa,
    /// The certificate is not valid for the name checked (`server_name` or the URL's host).
    NameMismatch,
    /// Anything else: the backend refused our client certificate, no common
    /// protocol, not TLS at all, the connection closed mid-handshake, ….
    Handshake,
}

impl TlsReason {
    pub const ALL: [TlsReason; 4] = [
        TlsReason::Expired,
        TlsReason::UnknownCa,
        TlsReason::NameMismatch,
        TlsReason::Handshake,
    ];

    pub fn label(self) -> &'static str {
        match self {
            TlsReason::Expired => "expired",
            TlsReason::UnknownCa => "unknown_ca",
            TlsReason::NameMismatch => "name_mismatch",
            TlsReason::Handshake => "handshake",
        }
    }

    /// Sorts a handshake error (the `io::Error` tokio-rustls returns wraps
    /// the `rustls::Error`).
    pub fn of(e: &std::io::Error) -> TlsReason {
        let Some(r) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
            return TlsReason::Handshake;
        };
        match r {
            rustls::Error::InvalidCertificate(c) => match c {
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. } => TlsReason::Expired,
                CertificateError::UnknownIssuer => TlsReason::UnknownCa,
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => TlsReason::NameMismatch,
                _ => TlsReason::Handshake,
            },
            _ => TlsReason::Handshake,
        }
    }
}

/// A TLS alert the backend sent, found in an error's source chain. With
/// TLS 1.3 a server that rejects the client certificate says so only after
/// the client finished its side of the handshake: the alert arrives with
/// the first read, as the error of the first request.
pub fn alert_in(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        let tls = c.downcast_ref::<rustls::Error>().or_else(|| {
            c.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|i| i.downcast_ref::<rustls::Error>())
        });
        if let Some(t @ rustls::Error::AlertReceived(_)) = tls {
            return Some(t.to_string());
        }
        cur = c.source();
    }
    None
}

impl fmt::Display for TlsReason {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The client side of TLS to backends that share the same files: one
/// config offering only `http/1.1` (pooled HTTP/1.1 connections and
/// probes) and one offering `h2` then `http/1.1` (connections opened for
/// requests that arrived over HTTP/2; the backend chooses).
pub struct ClientTls {
    pub(crate) http1: Arc<ClientConfig>,
    pub(crate) h2: Arc<ClientConfig>,
    /// `not_after` of the client certificate, seconds since the Unix epoch.
    pub client_cert_not_after: Option<i64>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("client_cert_not_after", &self.client_cert_not_after)
            .finish_non_exhaustive()
    }
}

/// Which file a problem is about (so the config error names its key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    Ca,
    Cert,
    Key,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate of a PEM file; at least one.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad certificate in {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate found in {}", path.display()));
    }
    Ok(certs)
}

/// A root store from a PEM CA bundle.
pub fn read_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in read_certs(path)? {
        roots
            .add(c)
            .map_err(|e| format!("bad CA certificate in {}: {e}", path.display()))?;
    }
    Ok(roots)
}

/// The system's CA bundle: `$SSL_CERT_FILE`, else the first of
/// [`SYSTEM_BUNDLES`] that exists.
fn system_roots() -> Result<RootCertStore, String> {
    let from_env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let path = from_env
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(PathBuf::from))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "no ca given and no system CA bundle found (set ca, or SSL_CERT_FILE)".to_string()
        })?;
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&path)
        .map_err(|e| format!("cannot read system CA bundle {}: {e}", path.display()))?;
    // A system bundle may hold a certificate webpki cannot use; skip it.
    let (added, _) = roots.add_parsable_certificates(certs.filter_map(Result::ok));
    if added == 0 {
        return Err(format!("no usable CA certificate in {}", path.display()));
    }
    Ok(roots)
}

/// Builds the client configs. `ca`: the CA bundle (default: the system's);
/// `cert_key`: a client certificate chain and its key (mTLS);
/// `insecure`: accept any certificate (signatures are still checked).
pub fn client_tls(
    ca: Option<&Path>,
    cert_key: Option<(&Path, &Path)>,
    insecure: bool,
) -> Result<ClientTls, (TlsFile, String)> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| (TlsFile::Ca, format!("TLS setup: {e}")))?;
    let builder = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
    } else {
        let roots = match ca {
            Some(p) => read_roots(p),
            None => system_roots(),
        }
        .map_err(|e| (TlsFile::Ca, e))?;
        builder.with_root_certificates(roots)
    };
    let (mut cfg, not_after) = match cert_key {
        None => (builder.with_no_client_auth(), None),
        Some((cert, key)) => {
            let certs = read_certs(cert).map_err(|e| (TlsFile::Cert, e))?;
            let not_after = crate::net::x509::not_after(&certs[0]);
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                (
                    TlsFile::Key,
                    format!("cannot read a private key from {}: {e}", key.display()),
                )
            })?;
            let cfg = builder.with_client_auth_cert(certs, key).map_err(|e| {
                (
                    TlsFile::Key,
                    format!("client certificate and key do not fit together: {e}"),
                )
            })?;
            (cfg, not_after)
        }
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let http1 = Arc::new(cfg.clone());
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(ClientTls {
        http1,
        h2: Arc::new(cfg),
        client_cert_not_after: not_after,
    })
}

/// The name to verify: `server_name` if given, else the URL's host (an IP
/// address is verified against the certificate's IP SANs).
pub fn server_name(name: &str) -> Result<ServerName<'static>, String> {
    let host = name.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|_| format!("invalid server name {name:?}"))
}

/// `insecure_skip_verify: true`: any certificate for any name is accepted;
/// the handshake's signatures are still verified (so the peer holds the key
/// of the certificate it presented).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Every certificate whose expiry is reported: the listener's, the client
/// certificates sent to backends (once per file), and what each `https://`
/// backend presented at its last handshake; `(kind, name, notAfter)`.
pub fn expiry(
    cfg: &crate::config::Config,
    backends: &[Arc<crate::backend::Backend>],
) -> Vec<(&'static str, String, i64)> {
    let mut out = Vec::new();
    if let Some(t) = cfg.tls.as_ref() {
        if let Some(na) = t.cert_not_after {
            out.push(("listener", t.cert.display().to_string(), na));
        }
    }
    for b in backends {
        let Some(tls) = b.tls() else { continue };
        if let (Some(cert), Some(na)) = (&tls.settings.cert, tls.client.client_cert_not_after) {
            let name = cert.display().to_string();
            if !out.iter().any(|(k, n, _)| *k == "client" && *n == name) {
                out.push(("client", name, na));
            }
        }
        if let Some(na) = b.peer_cert_not_after() {
            out.push(("backend", b.name().to_string(), na));
        }
    }
    out
}
