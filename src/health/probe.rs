//! One HTTP probe of one backend, and the pure matchers that judge its
//! answer (status set, body regex, JSON pointer, header).
//!
//! Each probe opens its own connection (like HAProxy's checks), so a probe
//! says whether the backend accepts new connections right now and never
//! competes with request traffic for a pooled connection.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use super::handle::Kind;
use super::native;
use crate::backend::Backend;
use crate::config::{Expect, JsonWant, NativeProbe, PositionSource, ProbeConfig};
use crate::metrics::TlsReason;
use crate::upstream::connect::{self, Alpn, ConnectError};

/// Largest probe answer body read; longer bodies fail the probe.
pub(crate) const MAX_PROBE_BODY: usize = 256 << 10;

/// Why a probe failed. The monitor decides by the variant; `Display` is
/// for logs and the admin API only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProbeFailure {
    /// The TCP connection was refused or could not be made: the backend is
    /// not there right now (proof enough to act at once).
    #[error("connect: {0}")]
    Connect(String),
    /// No complete answer within the probe timeout: dead or just slow.
    #[error("no answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// The connection broke, or the answer was not valid HTTP.
    #[error("{0}")]
    Broken(String),
    /// A valid answer that does not meet `expect` (for the leader probe:
    /// the backend says it is not the leader).
    #[error("{0}")]
    Unexpected(String),
}

/// What one probe found.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    /// `Ok` when the answer met every expectation.
    pub(crate) result: Result<(), ProbeFailure>,
    /// Term read at the configured pointer from any HTTP answer (a
    /// follower's answer tells the cluster's term too).
    pub(crate) term: Option<u64>,
    /// Replicas attached to a Redis primary (a native probe's `ROLE`).
    pub(crate) replicas: Option<u32>,
    pub(crate) latency: Duration,
}

impl Outcome {
    pub(crate) fn ok(&self) -> bool {
        self.result.is_ok()
    }

    /// The failure as text, for logs and the admin API.
    pub(crate) fn error(&self) -> Option<String> {
        self.result.as_ref().err().map(|e| e.to_string())
    }

    fn failed(latency: Duration, f: ProbeFailure) -> Outcome {
        Outcome {
            result: Err(f),
            term: None,
            replicas: None,
            latency,
        }
    }
}

/// Probes `backend` once (over TLS for an `https://` backend, with the
/// same settings as requests), bounded by `probe.timeout`; a native probe
/// (`probe.native`) asks the database at its data address whether it is up
/// (`kind` health) or leads (`kind` leader).
pub(crate) async fn probe(
    backend: &Backend,
    probe: &ProbeConfig,
    term_pointer: Option<&str>,
    kind: Kind,
) -> Outcome {
    let start = Instant::now();
    if let Some(n) = &probe.native {
        let reply = ask_native(backend, n, probe.timeout).await;
        return Outcome {
            replicas: reply.as_ref().ok().and_then(|r| r.replicas),
            result: reply.and_then(|r| native_verdict(kind, &r)),
            term: None,
            latency: start.elapsed(),
        };
    }
    match tokio::time::timeout(probe.timeout, fetch(backend, probe)).await {
        Err(_) => Outcome::failed(start.elapsed(), ProbeFailure::Timeout(probe.timeout)),
        Ok(Err(f)) => Outcome::failed(start.elapsed(), f),
        Ok(Ok((status, headers, body))) => Outcome {
            result: evaluate(&probe.expect, status, &headers, &body)
                .map_err(ProbeFailure::Unexpected),
            term: term_pointer.and_then(|p| read_term(&body, p)),
            replicas: None,
            latency: start.elapsed(),
        },
    }
}

/// Asks `backend` for its replication position (`positions.probe`): any
/// 2xx answer that carries an integer where `source` says.
pub(crate) async fn position(
    backend: &Backend,
    probe: &ProbeConfig,
    source: &PositionSource,
) -> Result<u64, ProbeFailure> {
    if let Some(n) = &probe.native {
        let r = ask_native(backend, n, probe.timeout).await?;
        return r.position.ok_or_else(|| {
            ProbeFailure::Unexpected(format!(
                "{} ({}) reports no position",
                n.kind.name(),
                r.role
            ))
        });
    }
    let (status, headers, body) = request(backend, probe).await?;
    if !(200..300).contains(&status) {
        return Err(ProbeFailure::Unexpected(format!(
            "position probe answered status {status}"
        )));
    }
    source.read(&headers, &body).ok_or_else(|| {
        ProbeFailure::Unexpected(match source {
            PositionSource::Header(h) => format!("no integer in header {h}"),
            PositionSource::Json(p) => format!("no integer at JSON {p}"),
            PositionSource::Regex(r) => format!("no integer matched by /{}/", r.as_str()),
            PositionSource::Native => "no native probe configured".to_string(),
        })
    })
}

/// A native probe's reply within `timeout`.
async fn ask_native(
    backend: &Backend,
    n: &NativeProbe,
    timeout: Duration,
) -> Result<native::Reply, ProbeFailure> {
    match tokio::time::timeout(timeout, native::ask(backend, n, timeout)).await {
        Err(_) => Err(ProbeFailure::Timeout(timeout)),
        Ok(r) => r,
    }
}

/// What a native reply means for a health probe (it answered: up) or a
/// leader probe (it leads, else "not the leader").
fn native_verdict(kind: Kind, r: &native::Reply) -> Result<(), ProbeFailure> {
    match kind {
        Kind::Leader if !r.leads => Err(ProbeFailure::Unexpected(format!(
            "role is {}, not the leader",
            r.role
        ))),
        _ => Ok(()),
    }
}

/// One request like a probe's (own connection, same TLS), bounded by
/// `req.timeout`, whose answer the caller judges: status, headers, body
/// (at most [`MAX_PROBE_BODY`]). Discovery reads member lists with it.
pub(crate) async fn request(
    backend: &Backend,
    req: &ProbeConfig,
) -> Result<(u16, http::HeaderMap, Bytes), ProbeFailure> {
    match tokio::time::timeout(req.timeout, fetch(backend, req)).await {
        Err(_) => Err(ProbeFailure::Timeout(req.timeout)),
        Ok(r) => r,
    }
}

async fn fetch(
    backend: &Backend,
    probe: &ProbeConfig,
) -> Result<(u16, http::HeaderMap, Bytes), ProbeFailure> {
    let authority = backend.authority.as_str();
    let stream = match connect::connect(backend, probe.timeout, Alpn::Http1).await {
        Ok(s) => s,
        Err(ConnectError::Timeout(t)) => return Err(ProbeFailure::Timeout(t)),
        Err(ConnectError::Io(e)) => return Err(ProbeFailure::Connect(e.to_string())),
        // The backend is there; it cannot be talked to. Not a refusal.
        Err(e @ ConnectError::Tls { .. }) => return Err(ProbeFailure::Broken(e.to_string())),
    };
    let (mut tx, conn) = http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| ProbeFailure::Broken(format!("handshake: {e}")))?;
    let conn = tokio::spawn(conn);
    let body = probe.body.clone().map(Bytes::from).unwrap_or_default();
    let mut req = http::Request::builder()
        .method(probe.method.clone())
        .uri(probe.path.as_str())
        .header(http::header::HOST, authority)
        .header(http::header::USER_AGENT, "leaderproxy-probe")
        .header(http::header::CONNECTION, "close");
    if probe.body.is_some() {
        req = req.header(http::header::CONTENT_TYPE, "application/json");
    }
    let req = req
        .body(Full::new(body))
        .map_err(|e| ProbeFailure::Broken(format!("request: {e}")))?;
    let resp = tx.send_request(req).await.map_err(|e| {
        // A backend that rejects our client certificate (TLS 1.3) says so here.
        match crate::upstream::tls::alert_in(&e) {
            Some(alert) if backend.tls().is_some() => {
                backend.tls_handshake_failed(TlsReason::Handshake, &alert);
                ProbeFailure::Broken(format!(
                    "TLS handshake failed ({}): {alert}",
                    TlsReason::Handshake
                ))
            }
            _ => ProbeFailure::Broken(format!("request: {e}")),
        }
    })?;
    backend.tls_works();
    let (parts, body) = resp.into_parts();
    let body = Limited::new(body, MAX_PROBE_BODY)
        .collect()
        .await
        .map_err(|e| ProbeFailure::Broken(format!("reading body: {e}")))?
        .to_bytes();
    conn.abort();
    Ok((parts.status.as_u16(), parts.headers, body))
}

/// Judges one answer; `Err` says which expectation failed.
pub(crate) fn evaluate(
    expect: &Expect,
    status: u16,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<(), String> {
    match &expect.status {
        Some(codes) if !codes.contains(&status) => {
            return Err(format!("status {status} is not one of {codes:?}"));
        }
        None if !(200..300).contains(&status) => {
            return Err(format!("status {status} is not 2xx"));
        }
        _ => {}
    }
    if let Some((name, want)) = &expect.header {
        match headers.get(name).and_then(|v| v.to_str().ok()) {
            Some(v) if v == want => {}
            Some(v) => return Err(format!("header {name} is {v:?}, not {want:?}")),
            None => return Err(format!("header {name} is missing")),
        }
    }
    if let Some(re) = &expect.body_regex {
        let text = String::from_utf8_lossy(body);
        if !re.is_match(&text) {
            return Err(format!("body does not match /{}/", re.as_str()));
        }
    }
    if let Some(j) = &expect.json {
        let doc: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
        let got = doc
            .pointer(&j.pointer)
            .ok_or_else(|| format!("JSON has nothing at {}", j.pointer))?;
        match &j.want {
            JsonWant::Equals(want) => {
                if !json_eq(got, want) {
                    return Err(format!("JSON {} is {got}, not {want}", j.pointer));
                }
            }
            JsonWant::OneOf(wants) => {
                if !wants.iter().any(|w| json_eq(got, w)) {
                    return Err(format!(
                        "JSON {} is {got}, not one of {}",
                        j.pointer,
                        serde_json::Value::Array(wants.clone())
                    ));
                }
            }
            JsonWant::EqualsPointer(other) => {
                let want = doc
                    .pointer(other)
                    .ok_or_else(|| format!("JSON has nothing at {other}"))?;
                if !json_eq(got, want) {
                    return Err(format!("JSON {} is {got}, not {other} ({want})", j.pointer));
                }
            }
        }
    }
    Ok(())
}

/// Equality that also treats `"5"` and `5` as equal: etcd's JSON gateway
/// prints 64-bit integers as strings, and configs are written by hand.
fn json_eq(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as V;
    match (a, b) {
        (V::String(s), V::Number(n)) | (V::Number(n), V::String(s)) => s == &n.to_string(),
        _ => a == b,
    }
}

/// Reads an unsigned term at `pointer`, written as a number or a string.
pub(crate) fn read_term(body: &[u8], pointer: &str) -> Option<u64> {
    let doc: serde_json::Value = serde_json::from_slice(body).ok()?;
    match doc.pointer(pointer)? {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JsonExpect;

    fn hm(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn status_default_is_2xx() {
        let e = Expect::default();
        assert!(evaluate(&e, 204, &hm(&[]), b"").is_ok());
        assert_eq!(
            evaluate(&e, 503, &hm(&[]), b"").unwrap_err(),
            "status 503 is not 2xx"
        );
    }

    #[test]
    fn status_set() {
        let e = Expect {
            status: Some(vec![200]),
            ..Default::default()
        };
        assert!(evaluate(&e, 200, &hm(&[]), b"").is_ok());
        assert_eq!(
            evaluate(&e, 403, &hm(&[]), b"").unwrap_err(),
            "status 403 is not one of [200]"
        );
    }

    #[test]
    fn body_regex() {
        let e = Expect {
            body_regex: Some(regex::Regex::new("role:master").unwrap()),
            ..Default::default()
        };
        assert!(evaluate(&e, 200, &hm(&[]), b"# Replication\nrole:master\n").is_ok());
        assert!(evaluate(&e, 200, &hm(&[]), b"role:slave").is_err());
    }

    #[test]
    fn json_equals() {
        let e = Expect {
            json: Some(JsonExpect {
                pointer: "/ROLE/0".into(),
                want: JsonWant::Equals(serde_json::json!("master")),
            }),
            ..Default::default()
        };
        assert!(evaluate(&e, 200, &hm(&[]), br#"{"ROLE":["master",123,[]]}"#).is_ok());
        assert_eq!(
            evaluate(&e, 200, &hm(&[]), br#"{"ROLE":["slave","127.0.0.1",6379]}"#).unwrap_err(),
            r#"JSON /ROLE/0 is "slave", not "master""#
        );
        assert!(evaluate(&e, 200, &hm(&[]), b"not json")
            .unwrap_err()
            .starts_with("body is not JSON"));
        assert_eq!(
            evaluate(&e, 200, &hm(&[]), br#"{"other":1}"#).unwrap_err(),
            "JSON has nothing at /ROLE/0"
        );
    }

    #[test]
    fn json_equals_pointer_etcd_v3_status() {
        let e = Expect {
            json: Some(JsonExpect {
                pointer: "/header/member_id".into(),
                want: JsonWant::EqualsPointer("/leader".into()),
            }),
            ..Default::default()
        };
        let leader = br#"{"header":{"member_id":"1234","raft_term":"7"},"leader":"1234"}"#;
        let follower = br#"{"header":{"member_id":"99","raft_term":"7"},"leader":"1234"}"#;
        assert!(evaluate(&e, 200, &hm(&[]), leader).is_ok());
        assert!(evaluate(&e, 200, &hm(&[]), follower).is_err());
        assert_eq!(read_term(leader, "/header/raft_term"), Some(7));
        assert_eq!(read_term(br#"{"t":9}"#, "/t"), Some(9));
        assert_eq!(read_term(br#"{"t":"x"}"#, "/t"), None);
    }

    #[test]
    fn json_one_of_patroni_role() {
        let e = Expect {
            status: Some(vec![200]),
            json: Some(JsonExpect {
                pointer: "/role".into(),
                want: JsonWant::OneOf(vec![
                    serde_json::json!("master"),
                    serde_json::json!("primary"),
                ]),
            }),
            ..Default::default()
        };
        assert!(evaluate(&e, 200, &hm(&[]), br#"{"role": "master"}"#).is_ok());
        assert!(evaluate(&e, 200, &hm(&[]), br#"{"role": "primary"}"#).is_ok());
        assert_eq!(
            evaluate(&e, 200, &hm(&[]), br#"{"role": "replica"}"#).unwrap_err(),
            r#"JSON /role is "replica", not one of ["master","primary"]"#
        );
    }

    #[test]
    fn native_replies_judged_by_the_probe_kind() {
        let replica = native::Reply {
            leads: false,
            role: "slave".into(),
            position: Some(7),
            replicas: None,
        };
        assert!(native_verdict(Kind::Health, &replica).is_ok());
        assert_eq!(
            native_verdict(Kind::Leader, &replica),
            Err(ProbeFailure::Unexpected(
                "role is slave, not the leader".into()
            ))
        );
        let master = native::Reply {
            leads: true,
            ..replica
        };
        assert!(native_verdict(Kind::Leader, &master).is_ok());
    }

    #[test]
    fn numbers_match_strings() {
        assert!(json_eq(&serde_json::json!("5"), &serde_json::json!(5)));
        assert!(!json_eq(&serde_json::json!("5"), &serde_json::json!(6)));
    }

    #[test]
    fn header_match() {
        let e = Expect {
            header: Some((http::HeaderName::from_static("x-role"), "leader".into())),
            ..Default::default()
        };
        assert!(evaluate(&e, 200, &hm(&[("x-role", "leader")]), b"").is_ok());
        assert_eq!(
            evaluate(&e, 200, &hm(&[("x-role", "follower")]), b"").unwrap_err(),
            r#"header x-role is "follower", not "leader""#
        );
        assert_eq!(
            evaluate(&e, 200, &hm(&[]), b"").unwrap_err(),
            "header x-role is missing"
        );
    }
}
