//! A client's stateful commands: its login (`AUTH`, `HELLO`), a
//! transaction or a blocking command on its own connection to the primary
//! ([`Private`]), and the switch to a tunnel (Pub/Sub, `MONITOR`, …).

use bytes::Bytes;
use tokio::time::Instant;

use super::mux::Login;
use super::plan::Step;
use super::private::Private;
use super::session::{as_write, Cmd, Ctl, Session, TxVerb, NO_PRIMARY, TOO_MANY_HELD};

impl Session<'_> {
    /// A command that is not a plain read or write (or any command of a
    /// pinned client), at index `i`: returns the index of the next command
    /// to run, or how the connection goes on.
    pub(super) async fn special(
        &mut self,
        batch: &Bytes,
        cmds: &[Cmd],
        i: usize,
        out: &mut Vec<u8>,
    ) -> Result<usize, Ctl> {
        let c = cmds[i];
        match c.step {
            Step::Quit => {
                out.extend_from_slice(b"+OK\r\n");
                return Err(Ctl::Close);
            }
            Step::Local(reply) if self.pinned.is_none() => {
                out.extend_from_slice(reply);
                return Ok(i + 1);
            }
            Step::Reset if self.pinned.is_none() => {
                self.login = Login::default();
                self.private = None;
                out.extend_from_slice(b"+RESET\r\n");
                return Ok(i + 1);
            }
            Step::Login if self.pinned.is_none() => {
                let cmd = batch.slice(c.start..c.end);
                let next = self.login.with(cmd, c.auth);
                let before = std::mem::replace(&mut self.login, next);
                let r = self.exchange_one(batch, &as_write(c), None, None).await;
                if r.first() == Some(&b'-') {
                    self.login = before;
                } else {
                    // The client's own connection logs in anew when next needed.
                    self.private = None;
                }
                out.extend_from_slice(&r);
                return Ok(i + 1);
            }
            Step::Tunnel if self.pinned.is_none() => {
                self.ctx.pinned("tunnel");
                let private = match self.take_private().await {
                    Ok(p) => p,
                    Err(reply) => {
                        out.extend_from_slice(reply);
                        return Err(Ctl::Close);
                    }
                };
                return Err(Ctl::Tunnel {
                    private,
                    from: c.start,
                });
            }
            _ => {}
        }
        // On the client's own connection to the primary: a blocking command
        // alone, or a transaction up to its end.
        if self.pinned.is_none() {
            self.ctx.pinned(if c.step == Step::Blocking {
                "blocking"
            } else {
                "transaction"
            });
        }
        let was_pinned = self.pinned.is_some();
        let mut pinned = self.pinned.take().unwrap_or_default();
        let mut j = i;
        while j < cmds.len() {
            let c = cmds[j];
            if c.step == Step::Quit {
                break;
            }
            pinned.sent(&[c.tx.name()]);
            j += 1;
            if pinned.over() {
                break;
            }
        }
        let private = match self.private.take() {
            Some(p) if p.still_primary(&self.ctx.proxy.shared.load()) => p,
            Some(_) if was_pinned => {
                // Its primary changed under a transaction: the transaction
                // is gone; so is the connection (as on a direct one).
                return Err(Ctl::Close);
            }
            _ => match self.take_private().await {
                Ok(p) => p,
                Err(reply) => {
                    for _ in i..j {
                        out.extend_from_slice(reply);
                    }
                    return Ok(j);
                }
            },
        };
        let mut private = private;
        let bytes = batch.slice(cmds[i].start..cmds[j - 1].end);
        // A transaction's end is answered once replicated, as a write is.
        let wait = match &self.ctx.listener.wait {
            Some(w) if pinned.over() && cmds[j - 1].tx == TxVerb::End => {
                Some((w, w.want(private.backend.replicas()))).filter(|(_, n)| *n > 0)
            }
            _ => None,
        };
        let sent = match wait {
            None => private.exchange(bytes, j - i).await,
            Some((w, n)) => {
                let both = [&bytes[..], &w.command(n)[..]].concat();
                private.exchange(Bytes::from(both), j - i + 1).await
            }
        };
        match sent {
            Ok(r) => match wait {
                None => out.extend_from_slice(&r),
                Some((w, n)) => {
                    // Only EXEC's array (the transaction ran) is a write.
                    let ran = |k: usize| k == j - i - 1;
                    let (r, acked) = w.split(&r, n);
                    if acked {
                        out.extend_from_slice(&r);
                    } else {
                        let (r, replaced) = w.unreplicated_exec(&r, n, (0..j - i).map(ran));
                        self.ctx.unreplicated(replaced);
                        out.extend_from_slice(&r);
                    }
                }
            },
            Err(e) => {
                tracing::debug!(listener = %self.ctx.listener.label, error = %e, "resp: the client's own connection to the primary broke");
                return Err(Ctl::Close);
            }
        }
        self.private = Some(private);
        self.pinned = (!pinned.over()).then_some(pinned);
        Ok(j)
    }

    /// A new connection of the client's own to the primary, logged in;
    /// waits for a primary up to `writes.hold`. `Err`: the reply to give.
    async fn take_private(&mut self) -> Result<Private, &'static [u8]> {
        let cfg = self.ctx.proxy.shared.load().cfg.clone();
        let deadline = Instant::now() + cfg.writes.hold;
        let recheck = cfg.leader.probe.interval * 2;
        let mut avoid = None;
        let mut held = None;
        loop {
            let t = self.ctx.proxy.shared.load();
            match t
                .write_leader()
                .filter(|b| b.tcp.is_some() && Some(b.id) != avoid)
            {
                Some(b) => {
                    match Private::open(b.clone(), &self.login, cfg.timeouts.connect).await {
                        Ok(p) => return Ok(p),
                        Err(e) => {
                            tracing::debug!(backend = %b.name(), error = %e, "resp: cannot open a connection to the primary");
                            self.ctx.proxy.monitor.fence(b);
                            avoid = Some(b.id);
                        }
                    }
                }
                None => {
                    if held.is_none() {
                        held = self.ctx.proxy.hold(cfg.writes.max_held);
                        if held.is_none() {
                            return Err(TOO_MANY_HELD);
                        }
                    }
                    if self
                        .ctx
                        .proxy
                        .shared
                        .wait_for_leader(deadline, avoid, recheck)
                        .await
                        .is_none()
                    {
                        return Err(NO_PRIMARY);
                    }
                    avoid = None;
                }
            }
        }
    }
}
