//! Reaching a backend: one [`connect::connect`] that opens TCP and, for an
//! `https://` backend, the TLS handshake (ALPN, client certificate, verifier
//! and the reason a handshake failed); [`tls`] builds the rustls client
//! configurations from the certificates the config read.

pub mod body;
pub mod connect;
pub mod h1;
pub mod pool;
pub mod tls;
