//! Where requests go: classification rules, backends and the immutable
//! routing table that the monitor publishes.

pub mod backend;
pub mod classify;
pub mod table;

pub use backend::Backend;
pub use classify::{classify, Role, Rule};
pub use table::{LeaderInfo, LeaderState, RoutingTable, Shared};
