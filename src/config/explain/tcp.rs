//! `check --explain` of the `tcp` listeners (raw and RESP).

use serde_yaml::Value;

use super::{dur, map, num, policy, text};
use crate::config::{Role, TcpListen, TcpProtocol};

pub(super) fn tcp(l: &TcpListen) -> Value {
    if l.protocol == TcpProtocol::Resp {
        let lim = &l.resp;
        return map([
            ("listen", text(l.addr)),
            ("protocol", text(l.protocol.as_str())),
            ("policy", policy(l.policy)),
            ("proxy_protocol", Value::Bool(l.proxy_protocol)),
            ("idle", dur(l.idle)),
            (
                "resp",
                map([
                    (
                        "upstream_connections",
                        num(l.resp.upstream_connections as u64),
                    ),
                    ("max_bulk", num(lim.max_bulk)),
                    ("max_elements", num(lim.max_elements)),
                    ("max_inline", num(lim.max_inline as u64)),
                    ("wait_replicas", num(u64::from(lim.wait_replicas))),
                    ("wait_timeout", dur(lim.wait_timeout)),
                ]),
            ),
        ]);
    }
    let read = l.to == Role::Read;
    map([
        ("listen", text(l.addr)),
        ("to", text(l.to.as_str())),
        ("protocol", text(l.protocol.as_str())),
        // A write listener's one target is the leader: no policy, and its
        // connections to a former leader always close.
        ("policy", if read { policy(l.policy) } else { Value::Null }),
        ("proxy_protocol", Value::Bool(l.proxy_protocol)),
        ("send_proxy_protocol", Value::Bool(l.send_proxy_protocol)),
        ("idle", dur(l.idle)),
        (
            "on_unhealthy",
            if read {
                text(l.on_unhealthy.as_str())
            } else {
                Value::Null
            },
        ),
    ])
}
