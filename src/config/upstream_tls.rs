//! TLS to backends: the `upstream_tls` section, the per-backend
//! `backends[].tls` override of any of its keys, and the rule that both
//! apply only to `https://` backends. Files are read here, when the config
//! is loaded or reloaded, so a broken file rejects the (re)load and the
//! running material stays.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::ServerName;
use serde::Deserialize;

use super::certs::{client_certs, server_name, ClientCerts, TlsFile};
use super::Validator;

/// `upstream_tls` and `backends[].tls` as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstreamTls {
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    server_name: Option<String>,
    insecure_skip_verify: Option<bool>,
}

impl RawUpstreamTls {
    /// These settings alone (paths resolved against `base`).
    pub(super) fn settings(&self, base: &Path) -> UpstreamTlsSettings {
        UpstreamTlsSettings {
            ca: self.ca.as_ref().map(|p| base.join(p)),
            cert: self.cert.as_ref().map(|p| base.join(p)),
            key: self.key.as_ref().map(|p| base.join(p)),
            server_name: self.server_name.clone(),
            insecure_skip_verify: self.insecure_skip_verify.unwrap_or(false),
        }
    }
}

/// The TLS settings of one `https://` backend: `upstream_tls` with the
/// backend's own `tls` keys on top (paths resolved against the config
/// file's directory).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct UpstreamTlsSettings {
    /// CA bundle; default none = the system's roots.
    pub(crate) ca: Option<PathBuf>,
    /// Client certificate chain and key (mTLS); default none.
    pub(crate) cert: Option<PathBuf>,
    /// The private key of `cert`; given with it.
    pub(crate) key: Option<PathBuf>,
    /// The name verified instead of the URL's host; default none.
    pub(crate) server_name: Option<String>,
    /// Accept any certificate; default false.
    pub(crate) insecure_skip_verify: bool,
}

/// TLS to one backend: its settings and the certificates read from them.
#[derive(Clone)]
pub struct BackendTls {
    /// The merged settings as written.
    pub(crate) settings: UpstreamTlsSettings,
    /// What the certificate must be valid for (and SNI when a DNS name).
    pub(crate) server_name: ServerName<'static>,
    /// Read from the files at load time; shared by backends with the same
    /// files (`crate::upstream::tls` builds the rustls configs from it).
    pub(crate) client: Arc<ClientCerts>,
}

impl fmt::Debug for BackendTls {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("BackendTls")
            .field("settings", &self.settings)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// Two configs name the same TLS settings (the files may still hold new
/// material: a reload always swaps in what it read).
impl PartialEq for BackendTls {
    fn eq(&self, other: &Self) -> bool {
        self.settings == other.settings
    }
}

impl Eq for BackendTls {}

/// What client certificates are read from: CA, cert, key, insecure.
pub(super) type Files = (Option<PathBuf>, Option<PathBuf>, Option<PathBuf>, bool);

impl Validator {
    /// Reads the TLS of backend `i` (`https` says whether its URL is
    /// `https://`; `host` is the URL's host). Problems name the key that
    /// set the failing value: `backends[i].tls.<key>` for an override,
    /// else `upstream_tls.<key>`; a broken shared file is reported once.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn backend_tls(
        &mut self,
        i: usize,
        https: bool,
        host: &str,
        global: Option<&RawUpstreamTls>,
        own: Option<RawUpstreamTls>,
        base: &Path,
        built: &mut HashMap<Files, Option<Arc<ClientCerts>>>,
    ) -> Option<Arc<BackendTls>> {
        let key = format!("backends[{i}]");
        if !https {
            if own.is_some() {
                self.bad(
                    &format!("{key}.tls"),
                    "tls is set but the url is http:// (write https:// to use TLS)",
                );
            }
            return None;
        }
        let g = global.cloned().unwrap_or_default();
        let o = own.unwrap_or_default();
        let from = |own_set: bool, name: &str| {
            if own_set {
                format!("{key}.tls.{name}")
            } else {
                format!("upstream_tls.{name}")
            }
        };
        let ca_key = from(o.ca.is_some(), "ca");
        let cert_key = from(o.cert.is_some(), "cert");
        let key_key = from(o.key.is_some(), "key");
        let name_key = from(o.server_name.is_some(), "server_name");
        let settings = UpstreamTlsSettings {
            ca: o.ca.or(g.ca).map(|p| base.join(p)),
            cert: o.cert.or(g.cert).map(|p| base.join(p)),
            key: o.key.or(g.key).map(|p| base.join(p)),
            server_name: o.server_name.or(g.server_name),
            insecure_skip_verify: o
                .insecure_skip_verify
                .or(g.insecure_skip_verify)
                .unwrap_or(false),
        };
        let name = settings.server_name.as_deref().unwrap_or(host);
        let server_name = match server_name(name) {
            Ok(n) => n,
            Err(e) => {
                self.bad(&name_key, e);
                return None;
            }
        };
        let cert_key_pair = match (&settings.cert, &settings.key) {
            (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
            (None, None) => None,
            (Some(_), None) => {
                self.bad(
                    &cert_key,
                    "a client certificate needs its key (key is missing)",
                );
                return None;
            }
            (None, Some(_)) => {
                self.bad(
                    &key_key,
                    "a client key needs its certificate (cert is missing)",
                );
                return None;
            }
        };
        let files: Files = (
            settings.ca.clone(),
            settings.cert.clone(),
            settings.key.clone(),
            settings.insecure_skip_verify,
        );
        let client = match built.get(&files) {
            Some(c) => c.clone()?,
            None => {
                let r = client_certs(
                    settings.ca.as_deref(),
                    cert_key_pair,
                    settings.insecure_skip_verify,
                );
                let c = match r {
                    Ok(c) => Some(Arc::new(c)),
                    Err((file, e)) => {
                        let k = match file {
                            TlsFile::Ca => &ca_key,
                            TlsFile::Cert => &cert_key,
                            TlsFile::Key => &key_key,
                        };
                        if !self.problems.iter().any(|p| p.message == e) {
                            self.bad(k, e);
                        }
                        None
                    }
                };
                built.insert(files, c.clone());
                c?
            }
        };
        Some(Arc::new(BackendTls {
            settings,
            server_name,
            client,
        }))
    }
}

impl super::Config {
    /// Settings that work but deserve a loud word (`check` prints them,
    /// `run` and every reload log them).
    pub fn warnings(&self) -> Vec<String> {
        self.backends
            .iter()
            .filter(|b| b.tls.as_ref().is_some_and(|t| t.settings.insecure_skip_verify))
            .map(|b| {
                format!(
                    "backends {:?}: insecure_skip_verify is on: its certificate is NOT verified; anyone who can intercept the connection can read and change the traffic",
                    b.name
                )
            })
            .collect()
    }
}
