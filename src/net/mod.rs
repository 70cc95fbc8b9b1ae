//! Client identity on the network edge: PROXY protocol headers from L4 load
//! balancers and `X-Forwarded-For` from trusted L7 proxies. Pure parsing
//! and matching, plus one read helper.

pub mod client_ip;
pub mod proxy_protocol;
