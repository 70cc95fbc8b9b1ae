//! The leader's position after a write was acknowledged, when the write's
//! answer does not carry one (`positions.response` unset or absent).
//!
//! Writes are batched like a group commit: a write joins the batch that
//! waits for the next probe; a probe starts only when none is running, so
//! every write in its batch was acknowledged before it started, and the
//! position it reads covers all of them. Under load this costs one probe
//! per probe round trip, not one per write.

use std::sync::Arc;

use tokio::sync::watch;

use crate::backend::Backend;
use crate::config::{PositionSource, ProbeConfig};

/// `None` until the batch's probe finished; then its result.
type Batch = watch::Sender<Option<Option<u64>>>;

/// The position of `backend` read by a probe that started after this
/// call; `None` when that probe failed. The batch state is the backend's
/// own (`Backend::after_ack`; only the leader's is used).
pub(crate) async fn position(
    backend: &Arc<Backend>,
    probe: &(ProbeConfig, PositionSource),
) -> Option<u64> {
    let mut rx = {
        let mut g = backend.after_ack.lock().unwrap_or_else(|e| e.into_inner());
        let rx = g
            .next
            .get_or_insert_with(|| watch::channel(None).0)
            .subscribe();
        if !g.running {
            g.running = true;
            let batch = g.next.take().expect("just made");
            tokio::spawn(run(backend.clone(), probe.clone(), batch));
        }
        rx
    };
    let got = match rx.wait_for(|v| v.is_some()).await {
        Ok(v) => v.flatten(),
        Err(_) => None,
    };
    got
}

async fn run(backend: Arc<Backend>, probe: (ProbeConfig, PositionSource), mut batch: Batch) {
    loop {
        let p = crate::health::probe::position(&backend, &probe.0, &probe.1)
            .await
            .ok();
        backend.metrics().write_position_probes.inc();
        batch.send_replace(Some(p));
        let mut g = backend.after_ack.lock().unwrap_or_else(|e| e.into_inner());
        match g.next.take() {
            Some(n) => batch = n,
            None => {
                g.running = false;
                return;
            }
        }
    }
}
