//! The YAML configuration: parsed with serde_yaml into raw structs (unknown
//! keys rejected, values checked while parsing), then validated into a
//! [`Config`] where every default is filled in.
//!
//! One file a concern: [`load`] and [`parse`] (`load.rs`) hand the text to
//! a `Validator` (`validator.rs`: problems at file:line:col, shared
//! checks), which assembles the document (`document.rs`) from its sections,
//! each with its raw form, validated form, defaults and checks in its own
//! file: `listen.rs`, `backends.rs`, `probes.rs` (health, leader),
//! `routes.rs`, `reads.rs`, `consistency.rs`, `writes.rs`, `limits.rs`,
//! `discovery.rs`, `upstream_tls.rs`, `admin_access.rs`, `tcp.rs`, `native.rs`
//! (native probe kinds and `probe_auth`). Every default lives
//! in the section's file.

#![warn(missing_docs)]

mod admin_access;
mod backends;
mod certs;
mod consistency;
mod discovery;
mod document;
mod error;
mod explain;
mod limits;
mod listen;
mod load;
mod locate;
mod native;
pub mod presets;
mod probes;
mod reads;
mod routes;
mod tcp;
pub(crate) mod types;
mod upstream_tls;
mod validator;
mod writes;

pub(crate) use admin_access::AdminToken;
pub use backends::BackendConfig;
pub(crate) use backends::PassiveConfig;
pub(crate) use certs::{server_name, ClientCerts, ListenerCerts};
pub(crate) use consistency::{
    Consistency, PositionSource, PositionsConfig, SessionConfig, SessionKey, DEFAULT_SESSIONS,
};
pub use discovery::{
    DiscoveredTls, DiscoveryConfig, DnsDiscovery, DnsLookup, MembersDiscovery, MembersKind, Scheme,
};
pub use document::Config;
pub(crate) use document::HttpReuse;
pub use error::{ConfigError, Problem};
#[cfg(test)]
use explain::explain;
pub use explain::explain_text;
pub(crate) use limits::{Limits, Timeouts};
pub(crate) use listen::TlsConfig;
pub use load::{load, parse};
pub(crate) use locate::Locator;
pub use native::{ProbeAuth, ProbeKind, Secret, DEFAULT_POSTGRES_USER};
pub(crate) use probes::{Expect, JsonWant};
pub use probes::{HealthConfig, JsonExpect, LeaderConfig, NativeProbe, ProbeConfig};
pub(crate) use reads::TryTimeout;
pub use reads::{Hedge, HedgeAfter, Policy, ReadsConfig};
pub use routes::{MethodSet, Role, Route, Rule};
pub(crate) use tcp::OnUnhealthy;
#[cfg(test)]
pub(crate) use tcp::DEFAULT_TCP_IDLE;
pub use tcp::{TcpListen, TcpProtocol};
pub(crate) use types::{Dur, Method, OneOrMany, Pointer, Re, Size};
pub(crate) use upstream_tls::{BackendTls, UpstreamTlsSettings};
pub(crate) use writes::{RetryAmbiguous, WritesConfig};

use validator::{PresetSource, Validator};

#[cfg(test)]
mod access_tests;
#[cfg(test)]
mod consistency_tests;
#[cfg(test)]
mod discovery_tests;
#[cfg(test)]
mod native_tests;
#[cfg(test)]
mod preset_tests;
#[cfg(test)]
mod reads_tests;
#[cfg(test)]
mod shipped_tests;
#[cfg(test)]
mod tcp_tests;
#[cfg(test)]
mod tests;
