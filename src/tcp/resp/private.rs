//! A client's own connection to the primary: for a transaction, a blocking
//! command, or the rest of a connection that stops being one reply per
//! command (Pub/Sub, `MONITOR`, …). Logged in like the client's shared
//! connections; commands go one batch at a time and the replies are read
//! in full.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::mux::Login;
use crate::backend::Backend;
use crate::resp::parse::{reply_len, Limits, Progress};
use crate::routing::RoutingTable;

/// The client's own connection to the primary `backend`.
pub(crate) struct Private {
    pub(super) backend: Arc<Backend>,
    pub(super) stream: TcpStream,
    buf: BytesMut,
}

impl Private {
    /// Connects to `backend`'s data address and replays `login` (its
    /// replies are read and dropped: an error there is the client's to see
    /// on its next command, as on a direct connection).
    pub(super) async fn open(
        backend: Arc<Backend>,
        login: &Login,
        connect: Duration,
    ) -> std::io::Result<Private> {
        let addr = backend
            .tcp
            .as_ref()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default();
        let stream = tokio::time::timeout(connect, TcpStream::connect(addr))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        let _ = stream.set_nodelay(true);
        let mut p = Private {
            backend,
            stream,
            buf: BytesMut::new(),
        };
        let (replay, n) = login.replay();
        if n > 0 {
            p.exchange(replay, n).await?;
        }
        Ok(p)
    }

    /// Whether its node is still the confirmed write leader.
    pub(super) fn still_primary(&self, t: &RoutingTable) -> bool {
        t.write_leader().is_some_and(|l| l.id == self.backend.id)
    }

    /// Sends `bytes` (`replies` commands) and reads their replies.
    pub(super) async fn exchange(
        &mut self,
        bytes: Bytes,
        replies: usize,
    ) -> std::io::Result<Bytes> {
        self.stream.write_all(&bytes).await?;
        let lim = Limits::default();
        let mut at = 0;
        let mut left = replies;
        while left > 0 {
            match reply_len(&self.buf[at..], &lim) {
                Ok(Progress::Complete(n)) => {
                    at += n;
                    left -= 1;
                }
                Ok(Progress::NeedMore) => {
                    if self.stream.read_buf(&mut self.buf).await? == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                }
                Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            }
        }
        Ok(self.buf.split_to(at).freeze())
    }
}
