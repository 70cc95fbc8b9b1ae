//! `timeouts` and `limits`: every deadline and size cap, with defaults.

use std::time::Duration;

use serde::Deserialize;

use super::{Dur, Size, Validator};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTimeouts {
    connect: Option<Dur>,
    #[serde(alias = "request")]
    response_headers: Option<Dur>,
    header_read: Option<Dur>,
    #[serde(alias = "idle")]
    upstream_idle: Option<Dur>,
    body_idle: Option<Dur>,
    client_idle: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    max_header_bytes: Option<Size>,
    max_body_bytes: Option<Size>,
    max_connections: Option<usize>,
    replay_buffer_bytes: Option<Size>,
    admin_max_connections: Option<usize>,
    max_upstream_connections_per_backend: Option<usize>,
}

/// `timeouts`: every deadline, with its default.
#[derive(Debug, Clone)]
pub(crate) struct Timeouts {
    /// TCP connect to a backend; default 1s.
    pub(crate) connect: Duration,
    /// From sending a request to the backend's response headers; default
    /// 30s (`routes[].timeout` overrides it per route). YAML also accepts the
    /// old name `request`.
    pub(crate) response_headers: Duration,
    /// Client must send complete request headers within this; default 10s.
    pub(crate) header_read: Duration,
    /// Pooled upstream connections idle this long are closed, oldest first;
    /// default 60s. YAML also accepts the old name `idle`.
    pub(crate) upstream_idle: Duration,
    /// Longest wait for the next bytes of a body, either direction, once it
    /// has started; default 60s. Not applied on `long_poll` routes (watch
    /// streams may be silent for long, in both directions).
    pub(crate) body_idle: Duration,
    /// Longest wait for the next request on an idle keep-alive HTTP/1.1
    /// client connection; default 60s. Restart-only, like `header_read`.
    pub(crate) client_idle: Duration,
}

/// `limits`: sizes and connection caps, with their defaults.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// Largest request head; default 64 KiB.
    pub(crate) max_header_bytes: usize,
    /// Largest request body; default 64 MiB. Larger: 413.
    pub(crate) max_body_bytes: u64,
    /// Most client connections at once; default 10000. More are closed at accept.
    pub(crate) max_connections: usize,
    /// Bytes of request bodies kept in memory for a possible re-send, across
    /// all requests; default 64 MiB. Past it a request streams and is not re-sendable.
    pub(crate) replay_buffer_bytes: u64,
    /// Most admin API connections at once; default 64. More are closed at accept.
    pub(crate) admin_max_connections: usize,
    /// Most connections to one backend (all workers together) when its
    /// `max_connections` is not set; default [`DEFAULT_MAX_UPSTREAM_CONNECTIONS`].
    pub(crate) max_upstream_connections_per_backend: usize,
}

/// Default of `limits.max_upstream_connections_per_backend`.
pub(crate) const DEFAULT_MAX_UPSTREAM_CONNECTIONS: usize = 1024;

impl Validator {
    pub(super) fn timeouts(&mut self, raw: Option<RawTimeouts>) -> Timeouts {
        let t = raw.unwrap_or(RawTimeouts {
            connect: None,
            response_headers: None,
            header_read: None,
            upstream_idle: None,
            body_idle: None,
            client_idle: None,
        });
        let out = Timeouts {
            connect: t.connect.map_or(Duration::from_secs(1), |d| d.0),
            response_headers: t.response_headers.map_or(Duration::from_secs(30), |d| d.0),
            header_read: t.header_read.map_or(Duration::from_secs(10), |d| d.0),
            upstream_idle: t.upstream_idle.map_or(Duration::from_secs(60), |d| d.0),
            body_idle: t.body_idle.map_or(Duration::from_secs(60), |d| d.0),
            client_idle: t.client_idle.map_or(Duration::from_secs(60), |d| d.0),
        };
        for (k, d) in [
            ("timeouts.connect", out.connect),
            ("timeouts.response_headers", out.response_headers),
            ("timeouts.header_read", out.header_read),
            ("timeouts.upstream_idle", out.upstream_idle),
            ("timeouts.body_idle", out.body_idle),
            ("timeouts.client_idle", out.client_idle),
        ] {
            if d.is_zero() {
                self.bad(k, "must be more than 0");
            }
        }
        out
    }

    pub(super) fn limits(&mut self, raw: Option<RawLimits>) -> Limits {
        let l = raw.unwrap_or(RawLimits {
            max_header_bytes: None,
            max_body_bytes: None,
            max_connections: None,
            replay_buffer_bytes: None,
            admin_max_connections: None,
            max_upstream_connections_per_backend: None,
        });
        let out = Limits {
            max_header_bytes: l.max_header_bytes.map_or(64 << 10, |s| s.0 as usize),
            max_body_bytes: l.max_body_bytes.map_or(64 << 20, |s| s.0),
            max_connections: l.max_connections.unwrap_or(10_000),
            replay_buffer_bytes: l.replay_buffer_bytes.map_or(64 << 20, |s| s.0),
            admin_max_connections: l.admin_max_connections.unwrap_or(64),
            max_upstream_connections_per_backend: l
                .max_upstream_connections_per_backend
                .unwrap_or(DEFAULT_MAX_UPSTREAM_CONNECTIONS),
        };
        if out.max_header_bytes < 8192 {
            self.bad(
                "limits.max_header_bytes",
                "must be at least 8KiB (hyper's smallest read buffer)",
            );
        }
        if out.max_connections == 0 {
            self.bad("limits.max_connections", "must be at least 1");
        }
        if out.admin_max_connections == 0 {
            self.bad("limits.admin_max_connections", "must be at least 1");
        }
        if out.max_upstream_connections_per_backend == 0 {
            self.bad(
                "limits.max_upstream_connections_per_backend",
                "must be at least 1",
            );
        }
        out
    }
}
