//! Starting a fake cluster and a proxy on it in one line each, for the
//! fake-node tests: `nodes(["l", "f1", "f2"])` and `led_by(&[&l, &f1, &f2],
//! extra, "l")`.
//!
//! Needs `#[path = "support/fake.rs"] mod fake;` at the test crate root.
#![allow(dead_code)]

use std::time::Duration;

use crate::fake::{config_for, Fake, Proxy, Role};

/// How long a new proxy may take to find its leader.
const LEADER_WITHIN: Duration = Duration::from_secs(3);

/// Fake nodes named `names`, started in order: the first leads, the others
/// follow.
pub async fn nodes<const N: usize>(names: [&str; N]) -> [Fake; N] {
    let mut fakes = Vec::with_capacity(N);
    for (i, name) in names.into_iter().enumerate() {
        let role = if i == 0 { Role::Leader } else { Role::Follower };
        fakes.push(Fake::start(name, role).await);
    }
    fakes.try_into().unwrap_or_else(|_| unreachable!())
}

/// A proxy over `fakes` (config [`config_for`] with `extra`), once it takes
/// `leader` for the leader (3s).
pub async fn led_by(fakes: &[&Fake], extra: &str, leader: &str) -> Proxy {
    let p = Proxy::start(&config_for(fakes, extra)).await;
    p.wait_leader(Some(leader), LEADER_WITHIN).await;
    p
}
