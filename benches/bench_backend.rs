//! Tiny, fast HTTP/1.1 + h2c (prior knowledge) backend used by `benches/compare.sh`
//! and handy for manual load tests of leaderproxy.
//!
//! ```text
//! bench_backend --listen 127.0.0.1:PORT [--role leader|follower] [--threads N]
//! ```
//!
//! * Every request is answered `200` with the same fixed 70-byte body.
//! * `GET /leader` answers `200` when `--role leader`, else `503`, so leaderproxy's
//!   leader probe (`leader: { path: /leader, expect: { status: [200] } }`) finds it.
//! * `GET /role` answers `200` with the role name as body (for humans and scripts).
//! * HTTP/1.1 keep-alive and h2c prior knowledge on the same port
//!   (`hyper_util::server::conn::auto`), `TCP_NODELAY` on every accepted socket.
//!
//! Built as a cargo example: `cargo build --release --example bench_backend`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

/// Exactly 70 bytes (checked at compile time below).
const BODY: &[u8] =
    b"{\"ok\":true,\"from\":\"bench_backend\",\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxx\"}\n";
const _: () = assert!(BODY.len() == 70);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Leader,
    Follower,
}

struct Args {
    listen: SocketAddr,
    role: Role,
    threads: usize,
}

const USAGE: &str =
    "usage: bench_backend --listen 127.0.0.1:PORT [--role leader|follower] [--threads N]";

fn parse_args() -> Result<Args, String> {
    let mut listen = None;
    let mut role = Role::Follower;
    let mut threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match key.as_str() {
            "--listen" | "-l" => {
                let v = value("--listen")?;
                listen = Some(v.parse().map_err(|e| format!("bad --listen {v:?}: {e}"))?);
            }
            "--role" | "-r" => {
                role = match value("--role")?.as_str() {
                    "leader" => Role::Leader,
                    "follower" => Role::Follower,
                    other => return Err(format!("bad --role {other:?} (leader|follower)")),
                }
            }
            "--threads" | "-t" => {
                let v = value("--threads")?;
                threads = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("bad --threads {v:?}"))?;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(Args {
        listen: listen.ok_or_else(|| format!("--listen is required\n{USAGE}"))?,
        role,
        threads,
    })
}

fn respond(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

async fn handle(req: Request<Incoming>, role: Role) -> Result<Response<Full<Bytes>>, Infallible> {
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/leader") => {
            let status = if role == Role::Leader {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            respond(status, Bytes::from_static(BODY))
        }
        (&Method::GET, "/role") => respond(
            StatusCode::OK,
            Bytes::from_static(match role {
                Role::Leader => b"leader\n",
                Role::Follower => b"follower\n",
            }),
        ),
        _ => respond(StatusCode::OK, Bytes::from_static(BODY)),
    };
    // Drain a request body (writes) so the HTTP/1.1 connection stays reusable.
    let body = req.into_body();
    if !body.is_end_stream() {
        let _ = body.collect().await;
    }
    Ok(resp)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench_backend: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(serve(args))
}

async fn serve(args: Args) -> ExitCode {
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bench_backend: bind {}: {e}", args.listen);
            return ExitCode::from(1);
        }
    };
    let role = args.role;
    eprintln!(
        "bench_backend: listening on {} role={} threads={}",
        listener.local_addr().map_or(args.listen, |a| a),
        if role == Role::Leader {
            "leader"
        } else {
            "follower"
        },
        args.threads
    );

    let mut builder = auto::Builder::new(TokioExecutor::new());
    // No header-read timer: keeps the per-request path free of timer work.
    builder
        .http1()
        .keep_alive(true)
        .header_read_timeout(None)
        .max_buf_size(64 * 1024);
    builder.http2().max_concurrent_streams(1024);
    let builder = std::sync::Arc::new(builder);

    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        // EMFILE and friends: back off briefly instead of spinning.
                        eprintln!("bench_backend: accept: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let builder = builder.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(req, role));
                    let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                });
            }
            _ = &mut shutdown => {
                eprintln!("bench_backend: shutting down");
                return ExitCode::SUCCESS;
            }
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
