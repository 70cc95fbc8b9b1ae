//! leaderproxy: a leader-aware layer-7 load-balancing reverse proxy for
//! single-leader clusters. Writes go to the current leader, reads are spread
//! over healthy followers; an active monitor keeps an immutable routing table
//! that is swapped atomically, so the request path never waits on a lock.
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]
#![warn(missing_docs)]

mod admin;
pub mod app;
pub mod backend;
pub mod balance;
pub mod config;
pub mod consistency;
mod control;
pub mod discovery;
pub mod h1;
mod h2_conn;
mod health;
pub mod metrics;
mod net;
pub mod proxy;
pub mod resp;
pub mod routing;
mod server;
mod shutdown;
mod tcp;
mod tls;
mod upstream;
