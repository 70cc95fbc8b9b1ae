//! Reaching a backend: one [`connect::connect`] that opens TCP and, for an
//! `https://` backend, the TLS handshake (ALPN, client certificate, verifier
//! and the reason a handshake failed); [`tls`] builds the rustls client
//! configurations from the certificates the config read.

pub(crate) mod body;
pub(crate) mod connect;
pub(crate) mod h1;
pub(crate) mod pool;
pub(crate) mod tls;
