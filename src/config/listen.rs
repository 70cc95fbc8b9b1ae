//! The client side: `listen` (addresses, PROXY protocol), `trusted_proxies`
//! and `tls` (the listeners' certificate and client certificates).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{certs, ListenerCerts, OneOrMany, Validator};
use crate::net::client_ip::{Cidr, CidrSet};

/// A `listen` entry: `"ip:port"` or `{ addr: "ip:port", proxy_protocol: true }`.
#[derive(Debug)]
pub(super) enum RawListen {
    Addr(String),
    Map(RawListenMap),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListenMap {
    addr: String,
    #[serde(default)]
    proxy_protocol: bool,
}

impl<'de> Deserialize<'de> for RawListen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawListen;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an address ip:port or a map { addr, proxy_protocol }")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<RawListen, E> {
                Ok(RawListen::Addr(s.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, m: A) -> Result<RawListen, A::Error> {
                RawListenMap::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                    .map(RawListen::Map)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
    forward_client_cert: Option<String>,
}

/// TLS termination on every `listen` address.
#[derive(Debug, Clone)]
pub(crate) struct TlsConfig {
    /// PEM certificate chain (relative paths are relative to the config file).
    pub(crate) cert: PathBuf,
    /// PEM private key.
    pub(crate) key: PathBuf,
    /// CA bundle: client certificates are required and verified against
    /// it; default none (no client certificates asked for).
    pub(crate) client_ca: Option<PathBuf>,
    /// Header that carries a verified client certificate's subject to the
    /// backend (any incoming one is removed first); default none.
    pub(crate) forward_client_cert: Option<http::HeaderName>,
    /// `notAfter` of the certificate (Unix seconds), for the expiry gauge.
    pub(crate) cert_not_after: Option<i64>,
    /// Read from the files when the config is loaded (or reloaded);
    /// `crate::tls` builds the rustls config from it.
    pub(crate) certs: std::sync::Arc<ListenerCerts>,
}

/// Headers `tls.forward_client_cert` must not name: hop-by-hop, framing,
/// and the ones the proxy sets itself.
const RESERVED_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "content-length",
    "host",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
];

impl Validator {
    /// `listen` (addresses, or maps with `proxy_protocol`) and
    /// `trusted_proxies`; a PROXY protocol listener needs someone to trust.
    pub(super) fn client_identity(
        &mut self,
        listen_raw: Option<OneOrMany<RawListen>>,
        trusted_raw: &[String],
        has_tcp: bool,
    ) -> (Vec<SocketAddr>, Vec<bool>, CidrSet) {
        let one = matches!(listen_raw, Some(OneOrMany::One(_)));
        let listen_raw = listen_raw.map_or_else(Vec::new, OneOrMany::into_vec);
        if listen_raw.is_empty() && !has_tcp {
            self.bad(
                "listen",
                "at least one address is needed (or none, with `tcp` listeners only)",
            );
        }
        let mut cidrs = Vec::with_capacity(trusted_raw.len());
        for (i, s) in trusted_raw.iter().enumerate() {
            match Cidr::parse(s.trim()) {
                Ok(c) => cidrs.push(c),
                Err(e) => self.bad(&format!("trusted_proxies[{i}]"), e),
            }
        }
        let (mut listen, mut proxy_protocol) = (Vec::new(), Vec::new());
        for (i, l) in listen_raw.into_iter().enumerate() {
            let key = if one {
                "listen".to_string()
            } else {
                format!("listen[{i}]")
            };
            let (addr, pp, key) = match l {
                RawListen::Addr(s) => (s, false, key),
                RawListen::Map(m) => {
                    if m.proxy_protocol && trusted_raw.is_empty() {
                        self.bad(
                            &format!("{key}.proxy_protocol"),
                            "needs trusted_proxies: list the load balancers whose PROXY headers are believed",
                        );
                    }
                    (m.addr, m.proxy_protocol, format!("{key}.addr"))
                }
            };
            if let Some(a) = self.addr(&key, &addr) {
                listen.push(a);
                proxy_protocol.push(pp);
            }
        }
        (listen, proxy_protocol, CidrSet::new(cidrs))
    }

    /// `tls`: the listener's certificate, and client certificates.
    pub(super) fn listener_tls(&mut self, t: RawTls, base: &Path) -> Option<TlsConfig> {
        let cert = base.join(t.cert);
        let key = base.join(t.key);
        let client_ca = t.client_ca.map(|p| base.join(p));
        let forward_client_cert = match t.forward_client_cert {
            None => None,
            Some(_) if client_ca.is_none() => {
                self.bad(
                    "tls.forward_client_cert",
                    "needs tls.client_ca (only a verified certificate's subject is forwarded)",
                );
                None
            }
            Some(h) => match http::HeaderName::from_bytes(h.as_bytes()) {
                Ok(n) if RESERVED_HEADERS.contains(&n.as_str()) => {
                    self.bad(
                        "tls.forward_client_cert",
                        format!("{h:?} is a header the proxy itself manages; pick another name"),
                    );
                    None
                }
                Ok(n) => Some(n),
                Err(_) => {
                    self.bad(
                        "tls.forward_client_cert",
                        format!("{h:?} is not a valid header name"),
                    );
                    None
                }
            },
        };
        let client_roots = match &client_ca {
            None => None,
            Some(ca) => match certs::read_roots(ca) {
                Ok(r) => Some(std::sync::Arc::new(r)),
                Err(e) => {
                    self.bad("tls.client_ca", e);
                    return None;
                }
            },
        };
        match certs::listener_identity(&cert, &key) {
            Ok(identity) => Some(TlsConfig {
                cert_not_after: identity.not_after,
                cert,
                key,
                client_ca,
                forward_client_cert,
                certs: std::sync::Arc::new(ListenerCerts {
                    identity,
                    client_roots,
                }),
            }),
            Err(e) => {
                self.bad("tls", e);
                None
            }
        }
    }
}
