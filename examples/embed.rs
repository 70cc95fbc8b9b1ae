//! leaderproxy as a library, mounted inside another hyper server.
//!
//! ```text
//! cargo run --example embed -- leaderproxy.yaml 127.0.0.1:8080
//! curl -X PUT 127.0.0.1:8080/cluster/v2/keys/a -d value=1   # to the leader
//! curl 127.0.0.1:8080/cluster/v2/keys/a                     # to a follower
//! curl 127.0.0.1:8080/hello                                 # the app itself
//! ```
//!
//! The app answers `/hello` itself. A request under `/cluster/` loses that
//! prefix and goes through the proxy core, a `tower::Service` that
//! [`leaderproxy::app::Running::service`] hands out per client connection:
//! writes to the cluster's leader, reads to a follower, with the config's
//! health checks, hold, fencing and retries. [`leaderproxy::app::start_embedded`]
//! starts the monitor and the admin API but opens none of the config's
//! `listen` addresses.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use leaderproxy::app::Running;
use leaderproxy::proxy::body::DownBody;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// The path prefix the app mounts the cluster under.
pub const PREFIX: &str = "/cluster";

/// Serves HTTP/1.1 on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, proxy: Arc<Running>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| route(proxy.clone(), peer, req));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                eprintln!("connection from {peer}: {e}");
            }
        });
    }
}

/// The app's own routes, and the cluster under [`PREFIX`].
async fn route(
    proxy: Arc<Running>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<DownBody>, std::convert::Infallible> {
    if req.uri().path() == "/hello" {
        return Ok(Response::new(DownBody::full("hello from the app\n")));
    }
    match unprefixed(req.uri()) {
        Some(uri) => {
            let (mut parts, body) = req.into_parts();
            parts.uri = uri;
            let req = Request::from_parts(parts, body);
            // One service per connection is the usual shape; one per
            // request works the same (it is a pointer and the client's address).
            proxy.service(peer, false).oneshot(req).await
        }
        None => {
            let mut resp = Response::new(DownBody::full(Bytes::from_static(b"not found\n")));
            *resp.status_mut() = StatusCode::NOT_FOUND;
            Ok(resp)
        }
    }
}

/// `uri` without [`PREFIX`]; `None` when it is not under it.
fn unprefixed(uri: &Uri) -> Option<Uri> {
    let pq = uri.path_and_query()?.as_str();
    let rest = pq.strip_prefix(PREFIX)?;
    if !(rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')) {
        return None;
    }
    let rest = if rest.starts_with('/') {
        rest.to_string()
    } else {
        format!("/{rest}")
    };
    rest.parse().ok()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let config = args.next().ok_or("usage: embed CONFIG.yaml [ADDR]")?;
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8080".into());
    let cfg = leaderproxy::config::load(std::path::Path::new(&config))?;
    let proxy = Arc::new(leaderproxy::app::start_embedded(cfg)?);
    let listener = TcpListener::bind(&addr).await?;
    println!(
        "app on http://{}, cluster under {PREFIX}/, leaderproxy admin on http://{}",
        listener.local_addr()?,
        proxy.admin
    );
    tokio::select! {
        _ = serve(listener, proxy.clone()) => {}
        _ = tokio::signal::ctrl_c() => proxy.shutdown(),
    }
    Ok(())
}
