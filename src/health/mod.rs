//! Active health checking and leader detection. The monitor
//! ([`monitor`]) is the actor loop; each question it asks is answered in a
//! file of its own:
//!
//! - `handle` — how the proxy talks to the monitor ([`monitor::MonitorHandle`]);
//! - [`probe`] — one probe and its typed failures;
//! - `native` — the native probes (Redis `ROLE`, PostgreSQL
//!   `pg_is_in_recovery()`) behind the same outcome;
//! - `schedule` — when probes run (jitter, the fast interval while
//!   leaderless);
//! - `node` — what a probe answer does to one backend's state;
//! - [`counter`] — rise/fall;
//! - [`leader`] — claims, terms, who leads;
//! - `ejection` — passive ejection (how many, how long);
//! - `membership` — which backends (discovery sets, reload decisions);
//! - `build` — eligible followers, read tiers, the routing table;
//! - `view` — what the admin API shows.

mod build;
pub(crate) mod counter;
pub(crate) mod ejection;
mod handle;
pub(crate) mod leader;
pub(crate) mod membership;
pub(crate) mod monitor;
mod native;
mod node;
pub(crate) mod probe;
pub(crate) mod schedule;
mod view;
