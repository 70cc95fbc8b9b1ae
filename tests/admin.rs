//! The admin listener is not an open door (bearer token on state-changing
//! endpoints, no non-loopback address by accident, its own connection
//! limit), and shutdown keeps the monitor alive until workers have drained.

#[path = "support/fake.rs"]
mod fake;

use std::time::{Duration, Instant};

use fake::{config_for, wait_until, Fake, Proxy, Role};

/// The value of one unlabelled series in Prometheus text; 0 when absent.
fn series(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (n, v) = l.rsplit_once(' ')?;
            (n == name).then(|| v.parse::<f64>().ok())?
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_held_at_shutdown_still_reaches_a_new_leader() {
    // No leader: the only node is a follower, so a write is held.
    let n = Fake::start("n", Role::Follower).await;
    let mut p = Proxy::start(&config_for(
        &[&n],
        "writes: { hold: 5s }\nshutdown_grace: 5s\n",
    ))
    .await;
    p.wait_leader(None, Duration::from_secs(3)).await;
    let running = p.running.take().unwrap();
    let write = p.put("/held");
    let drive = async {
        wait_until(Duration::from_secs(3), "the write is held", || async {
            series(&p.metrics().await, "leaderproxy_held_writes") == 1.0
        })
        .await;
        running.shutdown();
        // Only creates the timing: the leader appears after shutdown began.
        tokio::time::sleep(Duration::from_millis(300)).await;
        n.set_role(Role::Leader);
        let started = Instant::now();
        tokio::task::spawn_blocking(move || running.join())
            .await
            .unwrap();
        started.elapsed()
    };
    let (r, joined_after) = tokio::join!(write, drive);
    assert_eq!(r.status, 200, "held write answered: {}", r.text());
    assert_eq!(r.backend().as_deref(), Some("n"));
    assert_eq!(n.count_method("PUT"), 1);
    assert!(
        joined_after < Duration::from_secs(5),
        "threads ended {joined_after:?} after the leader appeared"
    );
}
