//! Client identity on the network edge: PROXY protocol headers from L4 load
//! balancers, `X-Forwarded-For` from trusted L7 proxies, and the two fields
//! of an X.509 certificate the proxy reports ([`x509`]). Pure parsing and
//! matching, plus one read helper.

#![warn(missing_docs)]

pub(crate) mod client_ip;
pub(crate) mod proxy_protocol;
pub(crate) mod x509;
