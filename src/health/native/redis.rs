//! The Redis probe: `AUTH` (when `probe_auth` has a password) and `ROLE`,
//! pipelined in one write. `ROLE` gives the role and the replication
//! offset in one round trip: `master` (offset, replicas) or `slave` (host,
//! port, link state, the offset it has processed); a Sentinel answers
//! `sentinel` (healthy, never a leader, no position).
//!
//! RESP is encoded and decoded by the `redis-protocol` crate (RESP2 frames
//! only; no connection manager): the probe needs two commands and their
//! replies, nothing the `redis` client crate's connection layer would add.

use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::encode::encode;
use redis_protocol::resp2::types::{OwnedFrame, Resp2Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Reply;
use crate::config::ProbeAuth;
use crate::health::probe::ProbeFailure;

/// Largest reply read (a master's ROLE lists its replicas: small).
const MAX_REPLY: usize = 64 << 10;

/// One command as a RESP array of bulk strings.
fn command(args: &[&str]) -> OwnedFrame {
    OwnedFrame::Array(
        args.iter()
            .map(|a| OwnedFrame::BulkString(a.as_bytes().to_vec()))
            .collect(),
    )
}

/// The bytes sent: `AUTH [user] password` when there is a password, then
/// `ROLE`. Returns them and how many replies to read.
pub(super) fn request(auth: &ProbeAuth) -> (Vec<u8>, usize) {
    let mut frames = Vec::with_capacity(2);
    if let Some(pw) = &auth.password {
        frames.push(match &auth.user {
            Some(u) => command(&["AUTH", u, pw.expose()]),
            None => command(&["AUTH", pw.expose()]),
        });
    }
    frames.push(command(&["ROLE"]));
    let mut out = Vec::new();
    for f in &frames {
        let start = out.len();
        out.resize(start + f.encode_len(false), 0);
        // The buffer has exactly the frame's length.
        let _ = encode(&mut out[start..], f, false);
    }
    (out, frames.len())
}

/// The reply to `AUTH`: `+OK`, else why not (the server's error, which
/// never repeats the password).
pub(super) fn auth_reply(f: &OwnedFrame) -> Result<(), String> {
    match f {
        OwnedFrame::SimpleString(s) if s == b"OK" => Ok(()),
        OwnedFrame::Error(e) => Err(format!("AUTH refused: {e}")),
        other => Err(format!("AUTH answered {other:?}")),
    }
}

fn text(f: &OwnedFrame) -> Option<String> {
    match f {
        OwnedFrame::BulkString(b) | OwnedFrame::SimpleString(b) => {
            Some(String::from_utf8_lossy(b).into_owned())
        }
        _ => None,
    }
}

/// A non-negative offset (a replica still connecting reports -1).
fn offset(f: Option<&OwnedFrame>) -> Option<u64> {
    match f? {
        OwnedFrame::Integer(i) => u64::try_from(*i).ok(),
        _ => None,
    }
}

/// The reply to `ROLE`.
pub(super) fn role_reply(f: &OwnedFrame) -> Result<Reply, String> {
    let items = match f {
        OwnedFrame::Array(items) => items,
        OwnedFrame::Error(e) => return Err(format!("ROLE answered an error: {e}")),
        other => return Err(format!("ROLE answered {other:?}, not an array")),
    };
    let role = items
        .first()
        .and_then(text)
        .ok_or("ROLE answered an array without a role")?;
    match role.as_str() {
        "master" => Ok(Reply {
            leads: true,
            position: offset(items.get(1)),
            replicas: match items.get(2) {
                Some(OwnedFrame::Array(r)) => u32::try_from(r.len()).ok(),
                _ => None,
            },
            role,
        }),
        // slave, host, port, connect|connecting|sync|connected, offset
        "slave" | "replica" => Ok(Reply {
            leads: false,
            position: offset(items.get(4)),
            replicas: None,
            role,
        }),
        "sentinel" => Ok(Reply {
            leads: false,
            position: None,
            replicas: None,
            role,
        }),
        _ => Err(format!("ROLE answered an unknown role {role:?}")),
    }
}

/// Sends the request on `stream` and reads its replies.
pub(super) async fn ask(mut stream: TcpStream, auth: &ProbeAuth) -> Result<Reply, ProbeFailure> {
    let broken = |what: &str, e: std::io::Error| ProbeFailure::Broken(format!("{what}: {e}"));
    let (req, replies) = request(auth);
    stream
        .write_all(&req)
        .await
        .map_err(|e| broken("write", e))?;
    let mut buf = Vec::with_capacity(512);
    let mut frames = Vec::with_capacity(replies);
    while frames.len() < replies {
        match decode(&buf) {
            Ok(Some((frame, used))) => {
                buf.drain(..used);
                frames.push(frame);
                continue;
            }
            Ok(None) => {}
            Err(e) => return Err(ProbeFailure::Broken(format!("not RESP: {e:?}"))),
        }
        if buf.len() > MAX_REPLY {
            return Err(ProbeFailure::Broken(format!(
                "reply longer than {MAX_REPLY} bytes"
            )));
        }
        let mut chunk = [0u8; 4096];
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| broken("read", e))?;
        if n == 0 {
            return Err(ProbeFailure::Broken(
                "connection closed before the reply".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    if replies == 2 {
        auth_reply(&frames[0]).map_err(ProbeFailure::Broken)?;
    }
    role_reply(&frames[replies - 1]).map_err(ProbeFailure::Unexpected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn frame(bytes: &[u8]) -> OwnedFrame {
        let (f, used) = decode(bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        f
    }

    #[test]
    fn master_leads_at_its_offset() {
        // Redis 7.0.15's ROLE on a primary with one replica.
        let f = frame(b"*3\r\n$6\r\nmaster\r\n:3129659\r\n*1\r\n*3\r\n$9\r\n127.0.0.1\r\n$4\r\n9001\r\n$7\r\n3129242\r\n");
        assert_eq!(
            role_reply(&f).unwrap(),
            Reply {
                leads: true,
                role: "master".into(),
                position: Some(3129659),
                replicas: Some(1),
            }
        );
    }

    #[test]
    fn replica_follows_at_its_processed_offset() {
        let f = frame(
            b"*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:9000\r\n$9\r\nconnected\r\n:3167038\r\n",
        );
        assert_eq!(
            role_reply(&f).unwrap(),
            Reply {
                leads: false,
                role: "slave".into(),
                position: Some(3167038),
                replicas: None,
            }
        );
        // Still connecting: offset -1, position unknown.
        let f =
            frame(b"*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:9000\r\n$10\r\nconnecting\r\n:-1\r\n");
        assert_eq!(role_reply(&f).unwrap().position, None);
    }

    #[test]
    fn sentinel_errors_and_junk() {
        let f = frame(b"*2\r\n$8\r\nsentinel\r\n*1\r\n$8\r\nmymaster\r\n");
        let r = role_reply(&f).unwrap();
        assert!(!r.leads && r.position.is_none());
        let f = frame(b"-NOAUTH Authentication required.\r\n");
        assert_eq!(
            role_reply(&f).unwrap_err(),
            "ROLE answered an error: NOAUTH Authentication required."
        );
        assert!(role_reply(&frame(b":1\r\n")).is_err());
        assert!(role_reply(&frame(b"*0\r\n")).is_err());
    }

    #[test]
    fn auth_then_role_in_one_write() {
        let none = ProbeAuth::default();
        assert_eq!(request(&none), (b"*1\r\n$4\r\nROLE\r\n".to_vec(), 1));
        let pw = ProbeAuth {
            password: Some(Secret::new("s3cret")),
            ..Default::default()
        };
        assert_eq!(
            request(&pw),
            (
                b"*2\r\n$4\r\nAUTH\r\n$6\r\ns3cret\r\n*1\r\n$4\r\nROLE\r\n".to_vec(),
                2
            )
        );
        let user = ProbeAuth {
            user: Some("probe".into()),
            ..pw
        };
        assert!(request(&user)
            .0
            .starts_with(b"*3\r\n$4\r\nAUTH\r\n$5\r\nprobe\r\n"));
        assert!(auth_reply(&frame(b"+OK\r\n")).is_ok());
        assert_eq!(
            auth_reply(&frame(
                b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
            ))
            .unwrap_err(),
            "AUTH refused: WRONGPASS invalid username-password pair or user is disabled."
        );
    }
}
