//! TLS termination with rustls: the listener's server config, built from
//! the certificate, key and client CA the config read ([`ListenerCerts`]),
//! with ALPN offering h2 and http/1.1. The certificates are part of the
//! routing table's config snapshot, so a reload (SIGHUP, admin, file watch)
//! picks up renewed certificates for new connections without a restart.

use std::sync::Arc;

use rustls::ServerConfig;

use crate::config::ListenerCerts;
use crate::upstream::tls::BuiltFrom;

/// One server config per loaded set of certificates.
static BUILT: BuiltFrom<ListenerCerts, Result<Arc<ServerConfig>, String>> = BuiltFrom::new();

/// The rustls server config for `certs`, built at its first connection
/// and shared by every later one. With `client_roots`, every client must
/// present a certificate those CAs signed. `Err` only for what config
/// validation already rules out (it checked the files and the key).
pub(crate) fn server_config(certs: &Arc<ListenerCerts>) -> Result<Arc<ServerConfig>, String> {
    (*BUILT.get_or_build(certs, build)).clone()
}

fn build(certs: &ListenerCerts) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let builder = match &certs.client_roots {
        None => builder.with_no_client_auth(),
        Some(roots) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots.clone(),
                provider,
            )
            .build()
            .map_err(|e| format!("client_ca: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let id = &certs.identity;
    let mut cfg = builder
        .with_single_cert(id.chain.clone(), id.key.clone_key())
        .map_err(|e| format!("certificate and key do not fit together: {e}"))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
