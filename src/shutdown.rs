//! The shutdown signal every long-lived loop watches: a `watch` channel
//! of `bool` that turns `true` once, when the process (or a listener set
//! being replaced) starts draining.

use tokio::sync::watch;

/// Resolves once `rx` holds `true` (or its sender is gone).
pub(crate) async fn until_true(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
