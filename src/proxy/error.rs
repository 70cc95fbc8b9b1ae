//! Every way the proxy itself can fail a request, and the one place where
//! such a failure becomes an HTTP response (status, JSON body, Retry-After).

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};

use super::body::DownBody;

#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ProxyError {
    #[error("no leader is known (waited {}ms for one)", .waited.as_millis())]
    NoLeader { waited: Duration },
    #[error("several backends claim leadership ({}); no writes are routed until one remains", .0.join(", "))]
    SplitBrain(Vec<String>),
    #[error("the leader refused the write as not leader and the body ({0} bytes or more) is too large to re-send")]
    NotLeaderUnreplayable(u64),
    #[error("too many writes are waiting for a leader (writes.max_held = {0})")]
    HoldQueueFull(usize),
    #[error("no healthy backend for this read")]
    NoBackend,
    #[error("routing is not ready: the first probe round has not finished")]
    NotReady,
    #[error("cannot connect to backend {backend}: {reason}")]
    Connect { backend: String, reason: String },
    /// Every connection to the backend (`backends[].max_connections`) stayed
    /// in use for `timeouts.connect`; the request was not sent.
    #[error("every connection to backend {backend} ({limit}, backends[].max_connections) stayed in use for {}ms; the request was not sent", .waited.as_millis())]
    UpstreamBusy {
        backend: String,
        limit: usize,
        waited: Duration,
    },
    #[error("backend {backend} failed: {reason}")]
    Upstream { backend: String, reason: String },
    #[error("backend {backend} did not answer within {}ms", .after.as_millis())]
    Timeout { backend: String, after: Duration },
    #[error("request body is larger than limits.max_body_bytes ({0} bytes)")]
    BodyTooLarge(u64),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("the client sent no body bytes for {}ms (timeouts.body_idle)", .0.as_millis())]
    ClientTimeout(Duration),
    /// A request head refused by the HTTP/1.1 codec (smuggling shapes,
    /// limits, CONNECT); the connection is closed after the answer.
    #[error("{}", .0.reason())]
    BadHead(crate::h1::HeadError),
    /// An `Upgrade` request on a route that does not allow upgrades.
    #[error("protocol upgrades are not enabled for this route")]
    UpgradeNotAllowed,
}

impl ProxyError {
    /// The error a failed client body becomes.
    pub(crate) fn from_client_body(e: &crate::upstream::body::ClientBodyError) -> ProxyError {
        use crate::upstream::body::ClientBodyError as C;
        match e {
            C::TooLarge(n) => ProxyError::BodyTooLarge(*n),
            C::Idle(d) => ProxyError::ClientTimeout(*d),
            C::Aborted(e) => ProxyError::BadRequest(format!("reading request body: {e}")),
        }
    }
}

impl ProxyError {
    pub(crate) fn status(&self) -> StatusCode {
        use ProxyError::*;
        match self {
            NoLeader { .. }
            | SplitBrain(_)
            | NotLeaderUnreplayable(_)
            | HoldQueueFull(_)
            | NoBackend
            | NotReady
            | UpstreamBusy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Connect { .. } | Upstream { .. } => StatusCode::BAD_GATEWAY,
            Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            BadRequest(_) => StatusCode::BAD_REQUEST,
            ClientTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            BadHead(e) => StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
            UpgradeNotAllowed => StatusCode::NOT_IMPLEMENTED,
        }
    }

    /// Short machine-readable code for the JSON body.
    pub(crate) fn code(&self) -> &'static str {
        use ProxyError::*;
        match self {
            NoLeader { .. } => "no_leader",
            SplitBrain(_) => "split_brain",
            NotLeaderUnreplayable(_) => "not_leader",
            HoldQueueFull(_) => "hold_queue_full",
            NoBackend => "no_backend",
            NotReady => "not_ready",
            UpstreamBusy { .. } => "upstream_busy",
            Connect { .. } | Upstream { .. } => "bad_gateway",
            Timeout { .. } => "upstream_timeout",
            BodyTooLarge(_) => "body_too_large",
            BadRequest(_) => "bad_request",
            ClientTimeout(_) => "client_timeout",
            BadHead(e) => match e.status() {
                405 => "method_not_allowed",
                414 => "uri_too_long",
                431 => "headers_too_large",
                501 => "not_implemented",
                505 => "http_version_not_supported",
                _ => "bad_request",
            },
            UpgradeNotAllowed => "upgrade_not_allowed",
        }
    }

    /// The response the client gets. 503s carry `Retry-After: 1`.
    pub(crate) fn into_response(self) -> Response<DownBody> {
        let body = serde_json::json!({ "error": self.code(), "message": self.to_string() });
        let mut resp = Response::new(DownBody::full(Bytes::from(body.to_string())));
        *resp.status_mut() = self.status();
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if self.status() == StatusCode::SERVICE_UNAVAILABLE {
            h.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_leader_is_503_with_retry_after_and_json() {
        let r = ProxyError::NoLeader {
            waited: Duration::from_millis(5000),
        }
        .into_response();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[RETRY_AFTER], "1");
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
        let DownBody::Full(Some(b)) = r.into_body() else {
            panic!("full body")
        };
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["error"], "no_leader");
        assert_eq!(v["message"], "no leader is known (waited 5000ms for one)");
    }

    #[test]
    fn statuses() {
        let c = ProxyError::Connect {
            backend: "n1".into(),
            reason: "refused".into(),
        };
        assert_eq!(c.status(), 502);
        assert_eq!(c.code(), "bad_gateway");
        let t = ProxyError::Timeout {
            backend: "n1".into(),
            after: Duration::from_secs(1),
        };
        assert_eq!(t.status(), 504);
        assert!(t.into_response().headers().get(RETRY_AFTER).is_none());
        assert_eq!(ProxyError::BodyTooLarge(10).status(), 413);
        let busy = ProxyError::UpstreamBusy {
            backend: "n1".into(),
            limit: 2,
            waited: Duration::from_secs(1),
        };
        assert_eq!(
            (busy.status().as_u16(), busy.code()),
            (503, "upstream_busy")
        );
        assert_eq!(busy.into_response().headers()[RETRY_AFTER], "1");
        assert_eq!(
            ProxyError::SplitBrain(vec!["a".into(), "b".into()]).code(),
            "split_brain"
        );
    }
}
