//! Certificates as data: the PEM files the `tls`, `upstream_tls` and
//! `backends[].tls` keys name, read into DER when the config is loaded (or
//! reloaded) and checked there, so a broken file or a key that does not fit
//! its certificate rejects the (re)load with the file's key and line. The
//! layers that own TLS (`crate::tls` for the listener, `crate::upstream::tls`
//! for backends) assemble rustls configs from this data; nothing here builds
//! a connection's configuration.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Where the system's CA bundle is looked for when no `ca` is given
/// (after `$SSL_CERT_FILE`): Debian/Ubuntu/Alpine, Fedora/RHEL, openSUSE, macOS/BSD.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// A certificate chain (leaf first) and its private key, checked to fit
/// together.
pub(crate) struct CertKey {
    /// The certificates, leaf first.
    pub(crate) chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub(crate) key: PrivateKeyDer<'static>,
    /// `notAfter` of the leaf, seconds since the Unix epoch.
    pub(crate) not_after: Option<i64>,
}

impl fmt::Debug for CertKey {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("CertKey")
            .field("certificates", &self.chain.len())
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// What TLS to backends that share the same files is built from.
pub(crate) struct ClientCerts {
    /// Trust anchors the backend's certificate must chain to (the `ca`
    /// bundle, else the system's); `None` with `insecure_skip_verify`.
    pub(crate) roots: Option<Arc<RootCertStore>>,
    /// The client certificate and key (mTLS); default none.
    pub(crate) identity: Option<CertKey>,
    /// `notAfter` of the client certificate, seconds since the Unix epoch.
    pub(crate) client_cert_not_after: Option<i64>,
}

impl fmt::Debug for ClientCerts {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("ClientCerts")
            .field("verify", &self.roots.is_some())
            .field("client_cert_not_after", &self.client_cert_not_after)
            .finish_non_exhaustive()
    }
}

/// Which file a problem is about (so the config error names its key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsFile {
    Ca,
    Cert,
    Key,
}

/// Reads every certificate of a PEM file; at least one.
pub(crate) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
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
pub(crate) fn read_roots(path: &Path) -> Result<RootCertStore, String> {
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

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("cannot read a private key from {}: {e}", path.display()))
}

/// Whether `key` is the private key of `chain`'s leaf (the check rustls
/// makes when a config is built; `Err` is its message).
fn fits(chain: &[CertificateDer<'static>], key: &PrivateKeyDer<'static>) -> Result<(), String> {
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(chain.to_vec(), key.clone_key(), &provider)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Reads a certificate chain and its key; `Err` names the file at fault.
/// `mismatch` prefixes rustls' message when the two do not fit together.
fn read_cert_key(cert: &Path, key: &Path, mismatch: &str) -> Result<CertKey, (TlsFile, String)> {
    let chain = read_certs(cert).map_err(|e| (TlsFile::Cert, e))?;
    let key = read_key(key).map_err(|e| (TlsFile::Key, e))?;
    fits(&chain, &key).map_err(|e| (TlsFile::Key, format!("{mismatch}: {e}")))?;
    Ok(CertKey {
        not_after: crate::net::x509::not_after(&chain[0]),
        chain,
        key,
    })
}

/// The listener's certificate and key (`tls.cert`, `tls.key`); `Err` is
/// the message for the `tls` key.
pub(crate) fn listener_identity(cert: &Path, key: &Path) -> Result<CertKey, String> {
    read_cert_key(cert, key, "certificate and key do not fit together").map_err(|(_, e)| e)
}

/// Reads what TLS to a backend needs. `ca`: the CA bundle (default: the
/// system's); `cert_key`: a client certificate chain and its key (mTLS);
/// `insecure`: no roots (any certificate is accepted).
pub(crate) fn client_certs(
    ca: Option<&Path>,
    cert_key: Option<(&Path, &Path)>,
    insecure: bool,
) -> Result<ClientCerts, (TlsFile, String)> {
    let roots = if insecure {
        None
    } else {
        let roots = match ca {
            Some(p) => read_roots(p),
            None => system_roots(),
        };
        Some(Arc::new(roots.map_err(|e| (TlsFile::Ca, e))?))
    };
    let identity = match cert_key {
        None => None,
        Some((cert, key)) => Some(read_cert_key(
            cert,
            key,
            "client certificate and key do not fit together",
        )?),
    };
    Ok(ClientCerts {
        roots,
        client_cert_not_after: identity.as_ref().and_then(|i| i.not_after),
        identity,
    })
}

/// The name to verify: `server_name` if given, else the URL's host (an IP
/// address is verified against the certificate's IP SANs).
pub(crate) fn server_name(name: &str) -> Result<ServerName<'static>, String> {
    let host = name.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|_| format!("invalid server name {name:?}"))
}

/// What the listener's rustls config is built from (`tls`).
#[derive(Debug)]
pub(crate) struct ListenerCerts {
    /// `tls.cert` and `tls.key`.
    pub(crate) identity: CertKey,
    /// `tls.client_ca`: client certificates must chain to these; default
    /// none (no client certificate asked for).
    pub(crate) client_roots: Option<Arc<RootCertStore>>,
}
