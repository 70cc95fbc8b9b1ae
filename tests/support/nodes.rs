//! Starting a fake cluster and a proxy on it in one line each, for the
//! fake-node tests: `nodes(["l", "f1", "f2"])` and `led_by(&[&l, &f1, &f2],
//! extra, "l")` (or `reading_from(.., "f1")` for a proxy that reads from f1).
//!
//! Needs `#[path = "support/fake.rs"] mod fake;` at the test crate root.
#![allow(dead_code)]

use std::time::Duration;

use crate::fake::{config_for, wait_until, Fake, Proxy, Role};

/// How long a new proxy may take to find its leader.
const LEADER_WITHIN: Duration = Duration::from_secs(3);

/// How long a new proxy may take to take a follower as a read candidate.
const FOLLOWER_WITHIN: Duration = Duration::from_secs(5);

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

/// A proxy over `fakes` (config [`config_for`] with `extra`), once
/// `follower` is a read candidate (5s).
pub async fn reading_from(fakes: &[&Fake], extra: &str, follower: &str) -> Proxy {
    let p = Proxy::start(&config_for(fakes, extra)).await;
    wait_follower(&p, follower).await;
    p
}

/// Waits (5s) until `name` is a read candidate.
pub async fn wait_follower(p: &Proxy, name: &str) {
    wait_until(FOLLOWER_WITHIN, &format!("{name} a follower"), || async {
        p.routing().await["followers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == name)
    })
    .await;
}
