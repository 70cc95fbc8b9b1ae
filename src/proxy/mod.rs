//! The request path: service (snapshot, classify, body, response; the
//! `tower::Service`), read (which follower, one retry), write (hold, fence,
//! re-send rules), forward (one upstream attempt), headers (the rewriting
//! to a backend and back), the response body type and the error type.
//! Connections and request bodies are `crate::upstream`'s.

pub mod body;
pub(crate) mod error;
pub(crate) mod forward;
pub mod headers;
mod read;
pub(crate) mod service;
mod write;
