//! rustls client configurations for `https://` backends, built from the
//! certificates the config read ([`ClientCerts`]: CA roots, optional client
//! certificate and key), and the reason a handshake failed, sorted for the
//! `reason` label and the log.

use std::fmt;
use std::sync::{Arc, Mutex, Weak};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::config::ClientCerts;
use crate::metrics::TlsReason;

/// Sorts a handshake error into its `reason` label (the `io::Error`
/// tokio-rustls returns wraps the `rustls::Error`).
pub(crate) fn reason_of(e: &std::io::Error) -> TlsReason {
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
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                TlsReason::NameMismatch
            }
            _ => TlsReason::Handshake,
        },
        _ => TlsReason::Handshake,
    }
}

/// A TLS alert the backend sent, found in an error's source chain. With
/// TLS 1.3 a server that rejects the client certificate says so only after
/// the client finished its side of the handshake: the alert arrives with
/// the first read, as the error of the first request.
pub(crate) fn alert_in(e: &(dyn std::error::Error + 'static)) -> Option<String> {
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

/// The client side of TLS to backends that share the same files: one
/// config offering only `http/1.1` (pooled HTTP/1.1 connections and
/// probes) and one offering `h2` then `http/1.1` (connections opened for
/// requests that arrived over HTTP/2; the backend chooses).
pub(crate) struct ClientTls {
    pub(crate) http1: Arc<ClientConfig>,
    pub(crate) h2: Arc<ClientConfig>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("ClientTls").finish_non_exhaustive()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What was built from each loaded [`Arc`] of data, while that data lives:
/// the rustls configs are built once per (re)load, at their first use, and
/// shared by every connection after it.
pub(crate) struct BuiltFrom<K, V> {
    built: Mutex<Vec<(Weak<K>, Arc<V>)>>,
}

impl<K, V> BuiltFrom<K, V> {
    pub(crate) const fn new() -> Self {
        BuiltFrom {
            built: Mutex::new(Vec::new()),
        }
    }

    /// What `build` made from `data`, building it at the first call. Entries
    /// whose data is gone (an older config) are dropped.
    pub(crate) fn get_or_build(&self, data: &Arc<K>, build: impl FnOnce(&K) -> V) -> Arc<V> {
        let mut built = self.built.lock().unwrap_or_else(|e| e.into_inner());
        built.retain(|(k, _)| k.strong_count() > 0);
        if let Some((_, v)) = built.iter().find(|(k, _)| k.as_ptr() == Arc::as_ptr(data)) {
            return v.clone();
        }
        let v = Arc::new(build(data));
        built.push((Arc::downgrade(data), v.clone()));
        v
    }
}

/// One [`ClientTls`] per loaded set of files.
static CLIENTS: BuiltFrom<ClientCerts, Result<Arc<ClientTls>, String>> = BuiltFrom::new();

/// The client configs for `certs`, built at the first connection that
/// needs them. `Err` only for what config validation already rules out
/// (it read the files and checked that the key fits its certificate).
pub(crate) fn client(certs: &Arc<ClientCerts>) -> Result<Arc<ClientTls>, String> {
    let built = CLIENTS.get_or_build(certs, |c| client_tls(c).map(Arc::new));
    (*built).clone()
}

/// Builds the client configs: verified against `certs.roots` (any
/// certificate without them, `insecure_skip_verify`), presenting
/// `certs.identity` when set (mTLS).
fn client_tls(certs: &ClientCerts) -> Result<ClientTls, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let builder = match &certs.roots {
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider))),
        Some(roots) => builder.with_root_certificates(roots.clone()),
    };
    let mut cfg = match &certs.identity {
        None => builder.with_no_client_auth(),
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
            .map_err(|e| format!("client certificate and key do not fit together: {e}"))?,
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let http1 = Arc::new(cfg.clone());
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(ClientTls {
        http1,
        h2: Arc::new(cfg),
    })
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::BuiltFrom;

    /// Built once per loaded data (every connection of a config shares
    /// it), again for a reload's new data, and forgotten with the data.
    #[test]
    fn built_once_per_loaded_data() {
        let cache: BuiltFrom<String, usize> = BuiltFrom::new();
        let builds = AtomicUsize::new(0);
        let build = |s: &String| {
            builds.fetch_add(1, Ordering::Relaxed);
            s.len()
        };
        let old = Arc::new("old".to_string());
        let a = cache.get_or_build(&old, build);
        let b = cache.get_or_build(&old, build);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(builds.load(Ordering::Relaxed), 1);
        // Equal text, but another load: built anew.
        let reloaded = Arc::new("old".to_string());
        let c = cache.get_or_build(&reloaded, build);
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(builds.load(Ordering::Relaxed), 2);
        drop(old);
        cache.get_or_build(&reloaded, build);
        assert_eq!(cache.built.lock().unwrap().len(), 1);
    }
}
