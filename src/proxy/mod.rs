//! The request path: service (routing decisions), forward (one upstream
//! attempt), pool (upstream connections), body types and the error type.

pub mod body;
pub mod error;
pub mod forward;
pub mod pool;
pub mod service;
