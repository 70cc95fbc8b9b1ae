//! Where requests go: classification rules, backends and the immutable
//! routing table that the monitor publishes.

pub mod classify;
pub(crate) mod fence;
pub(crate) mod freshness;
pub mod table;
pub mod tier;

pub use crate::backend::Backend;
pub use classify::{classify, Role, Route, Rule};
pub use freshness::Need;
pub use table::{LeaderInfo, LeaderState, RoutingTable, Shared};
