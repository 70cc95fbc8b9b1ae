//! The request path: service (snapshot, classify, body, response), read
//! (which follower, one retry), write (hold, fence, re-send rules), forward
//! (one upstream attempt), pool (upstream connections), body types and the
//! error type.

pub mod body;
pub(crate) mod error;
pub(crate) mod forward;
pub mod headers;
mod read;
pub(crate) mod service;
mod write;
