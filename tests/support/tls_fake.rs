//! TLS test material and an in-process TLS backend.
//!
//! [`Pki`]: a CA made with rcgen at test time that issues server and client
//! certificates (valid, expired, for other names) as PEM files.
//! [`TlsFake`]: a backend that speaks HTTP/1.1 and h2 over TLS (ALPN as
//! configured), optionally requiring client certificates, answering
//! `/leader` (200 while it leads, else 503), `/health` (200) and anything
//! else with `"<name> <version>"`, and recording what it saw.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;

pub struct Pki {
    pub dir: PathBuf,
    ca_key: rcgen::KeyPair,
    ca: rcgen::Certificate,
}

/// One issued certificate: PEM files `<tag>.pem`, `<tag>-key.pem` in the PKI's dir.
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: CertificateDer<'static>,
    pub key_der: PrivateKeyDer<'static>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Pki {
    /// A CA whose certificate is written to `<dir>/<tag>.pem`.
    pub fn new(dir: &Path, tag: &str) -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, format!("{tag} test CA"));
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca = p.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join(format!("{tag}.pem")), ca.pem()).unwrap();
        Pki {
            dir: dir.to_path_buf(),
            ca_key,
            ca,
        }
    }

    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }

    /// A certificate for `names` (DNS names or IP addresses) with common
    /// name `cn`, valid for both server and client auth; `expired` makes it
    /// expire in 2001.
    pub fn issue(&self, tag: &str, cn: &str, names: &[&str], expired: bool) -> Issued {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, "leaderproxy tests");
        p.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        if expired {
            p.not_before = rcgen::date_time_ymd(2000, 1, 1);
            p.not_after = rcgen::date_time_ymd(2001, 1, 1);
        } else {
            p.not_after = rcgen::date_time_ymd(2099, 1, 1);
        }
        let c = p.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let cert = self.dir.join(format!("{tag}.pem"));
        let key_path = self.dir.join(format!("{tag}-key.pem"));
        write_atomically(&cert, c.pem().as_bytes());
        write_atomically(&key_path, key.serialize_pem().as_bytes());
        Issued {
            cert,
            key: key_path,
            der: c.der().clone(),
            key_der: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }

    /// A server config presenting `leaf`, offering `alpn`, requiring client
    /// certificates signed by this CA when `client_auth`.
    pub fn server_config(
        &self,
        leaf: &Issued,
        alpn: &[&[u8]],
        client_auth: bool,
    ) -> Arc<rustls::ServerConfig> {
        let b = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap();
        let b = if client_auth {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.ca_der()).unwrap();
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .unwrap();
            b.with_client_cert_verifier(v)
        } else {
            b.with_no_client_auth()
        };
        let mut cfg = b
            .with_single_cert(vec![leaf.der.clone()], leaf.key_der.clone_key())
            .unwrap();
        cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        Arc::new(cfg)
    }

    /// A client config trusting this CA, with `client` as its certificate.
    pub fn client_config(
        &self,
        client: Option<&Issued>,
        alpn: &[&[u8]],
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der()).unwrap();
        let b = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut cfg = match client {
            Some(c) => b
                .with_client_auth_cert(vec![c.der.clone()], c.key_der.clone_key())
                .unwrap(),
            None => b.with_no_client_auth(),
        };
        cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        Arc::new(cfg)
    }
}

/// Writes through a temporary file and a rename, as cert managers do.
pub fn write_atomically(path: &Path, data: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// What a [`TlsFake`] saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub version: http::Version,
    /// ALPN protocol of the connection.
    pub alpn: Option<String>,
    /// The client presented a certificate.
    pub client_cert: bool,
    /// That certificate (DER).
    pub client_cert_der: Option<Vec<u8>>,
    pub headers: http::HeaderMap,
}

pub struct TlsFake {
    pub addr: SocketAddr,
    pub name: String,
    pub leader: Arc<AtomicBool>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// TLS handshakes that completed.
    pub handshakes: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsFake {
    pub async fn start(name: &str, leader: bool, tls: Arc<rustls::ServerConfig>) -> TlsFake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let leader = Arc::new(AtomicBool::new(leader));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handshakes = Arc::new(AtomicUsize::new(0));
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let task = {
            let (name, leader, seen, handshakes) = (
                name.to_string(),
                leader.clone(),
                seen.clone(),
                handshakes.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let Ok((s, _)) = listener.accept().await else {
                        continue;
                    };
                    let acceptor = acceptor.clone();
                    let (name, leader, seen, handshakes) = (
                        name.clone(),
                        leader.clone(),
                        seen.clone(),
                        handshakes.clone(),
                    );
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(s).await else {
                            return;
                        };
                        handshakes.fetch_add(1, Ordering::Relaxed);
                        let (_, conn) = tls.get_ref();
                        let alpn = conn
                            .alpn_protocol()
                            .map(|a| String::from_utf8_lossy(a).into_owned());
                        let client_cert_der =
                            conn.peer_certificates().map(|c| c[0].as_ref().to_vec());
                        let client_cert = client_cert_der.is_some();
                        let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                            let (name, leader, seen, alpn, client_cert_der) = (
                                name.clone(),
                                leader.clone(),
                                seen.clone(),
                                alpn.clone(),
                                client_cert_der.clone(),
                            );
                            async move {
                                let (parts, body) = req.into_parts();
                                let _ = body.collect().await;
                                let path = parts.uri.path().to_string();
                                let status = match path.as_str() {
                                    "/leader" if leader.load(Ordering::Relaxed) => 200,
                                    "/leader" => 503,
                                    "/health" => 200,
                                    _ => {
                                        seen.lock().unwrap().push(Seen {
                                            method: parts.method.to_string(),
                                            path: path.clone(),
                                            version: parts.version,
                                            alpn,
                                            client_cert,
                                            client_cert_der,
                                            headers: parts.headers.clone(),
                                        });
                                        200
                                    }
                                };
                                let body = format!("{name} {:?}", parts.version);
                                Ok::<_, std::convert::Infallible>(
                                    http::Response::builder()
                                        .status(status)
                                        .body(Full::new(Bytes::from(body)))
                                        .unwrap(),
                                )
                            }
                        });
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(tls), svc)
                            .await;
                    });
                }
            })
        };
        TlsFake {
            addr,
            name: name.to_string(),
            leader,
            seen,
            handshakes,
            task,
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// The value of one sample in Prometheus text (`name{labels}`), 0 if absent.
pub fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Unix seconds of 2099-01-01, the `notAfter` of every certificate [`Pki::issue`] makes valid.
pub const NOT_AFTER_2099: i64 = 4_070_908_800;

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
