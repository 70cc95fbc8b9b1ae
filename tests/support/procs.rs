//! Process, port, polling and HTTP helpers for the real-cluster tests.
//!
//! Included by integration test crates with
//! `#[path = "support/procs.rs"] mod procs;` (at the crate root: `etcd.rs` and
//! `redis.rs` refer to it as `crate::procs`). Only std + the crate's normal
//! dependencies (`serde_json`) are used.
#![allow(dead_code)]

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------
// ports, temp dirs, binaries
// ---------------------------------------------------------------------------

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A free TCP port on 127.0.0.1 (bind :0, read the port, drop the listener).
/// Never returns the same port twice within one test process.
pub fn free_port() -> u16 {
    let mut seen = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let seen = seen.get_or_insert_with(HashSet::new);
    for _ in 0..1000 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().expect("local_addr").port();
        drop(l);
        if seen.insert(port) {
            return port;
        }
    }
    panic!("free_port: could not find an unused port");
}

/// The first of `n` consecutive free TCP ports on 127.0.0.1 (for a script
/// that numbers its nodes' ports from a base, like tests/support/patroni.sh).
/// Each was bound once here; none is handed out twice in one test process.
pub fn free_ports(n: u16) -> u16 {
    let mut seen = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let seen = seen.get_or_insert_with(HashSet::new);
    for _ in 0..1000 {
        let base = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        let Some(ports) = (0..n)
            .map(|i| base.checked_add(i))
            .collect::<Option<Vec<u16>>>()
        else {
            continue;
        };
        let all_free = ports
            .iter()
            .all(|p| !seen.contains(p) && TcpListener::bind(("127.0.0.1", *p)).is_ok());
        if all_free {
            seen.extend(ports);
            return base;
        }
    }
    panic!("free_ports: could not find {n} consecutive unused ports");
}

/// True when an executable file exists at `path`.
pub fn binary_exists(path: &str) -> bool {
    fs::metadata(path).map(|m| m.is_file()).unwrap_or(false)
}

/// Checks that every binary exists. If `LEADERPROXY_SKIP_REAL=1`, prints a
/// notice and returns `false` (the caller returns early). If a binary is
/// missing otherwise, the test FAILS with instructions.
pub fn require_binaries(test: &str, bins: &[&str]) -> bool {
    if std::env::var("LEADERPROXY_SKIP_REAL")
        .map(|v| v == "1")
        .unwrap_or(false)
    {
        eprintln!("NOTICE: {test} skipped because LEADERPROXY_SKIP_REAL=1");
        return false;
    }
    let missing: Vec<&str> = bins.iter().copied().filter(|b| !binary_exists(b)).collect();
    if !missing.is_empty() {
        panic!(
            "{test}: missing binaries {missing:?}. Install them with `bash tests/run.sh` \
             (as root, installs the Debian packages etcd-server, redis-server, redis-sentinel, \
             webdis, ...) or set LEADERPROXY_SKIP_REAL=1 to skip the real-cluster tests."
        );
    }
    true
}

/// The `backends:` list of a leaderproxy config, one `{ name, url }` a line.
pub fn backends_yaml<'a>(backends: impl IntoIterator<Item = (&'a str, String)>) -> String {
    backends_yaml_with(backends, "")
}

/// [`backends_yaml`] with `fields` (e.g. `", h2c: true"`) after each url.
pub fn backends_yaml_with<'a>(
    backends: impl IntoIterator<Item = (&'a str, String)>,
    fields: &str,
) -> String {
    let mut s = String::from("backends:\n");
    for (name, url) in backends {
        s.push_str(&format!("  - {{ name: {name}, url: \"{url}\"{fields} }}\n"));
    }
    s
}

/// A temporary directory, removed on drop unless the thread is panicking or
/// `LEADERPROXY_KEEP_TMP=1` (then its path is printed so logs can be read).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path =
            std::env::temp_dir().join(format!("leaderproxy-{tag}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let keep = std::env::var("LEADERPROXY_KEEP_TMP")
            .map(|v| v == "1")
            .unwrap_or(false);
        if keep || std::thread::panicking() {
            eprintln!("(kept test directory {})", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

// ---------------------------------------------------------------------------
// child processes
// ---------------------------------------------------------------------------

/// A child process whose stdout+stderr go to a log file. SIGKILLed on drop.
pub struct Proc {
    pub name: String,
    program: PathBuf,
    args: Vec<String>,
    cwd: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    /// Spawns `program args...` with cwd `dir`, logging to `dir/<name>.log`
    /// (appended, so a restarted process keeps the earlier output).
    pub fn spawn(name: &str, program: impl AsRef<Path>, args: &[String], dir: &Path) -> Proc {
        let mut p = Proc {
            name: name.to_string(),
            program: program.as_ref().to_path_buf(),
            args: args.to_vec(),
            cwd: dir.to_path_buf(),
            log: dir.join(format!("{name}.log")),
            child: None,
        };
        p.start();
        p
    }

    fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("open log {}: {e}", self.log.display()));
        let err = log.try_clone().expect("clone log fd");
        let child = Command::new(&self.program)
            .args(&self.args)
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {} ({}): {e}", self.name, self.program.display()));
        self.child = Some(child);
    }

    /// Starts the same command again (after `kill`).
    pub fn restart(&mut self) {
        self.start();
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL (std's `Child::kill` sends SIGKILL on Unix) and reap.
    /// Returns once the process is gone (its sockets are closed).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(c) => matches!(c.try_wait(), Ok(None)),
        }
    }

    /// The exit status if the process exited on its own.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        log_tail(&self.log, n)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Last `n` lines of a file (empty string if unreadable).
pub fn log_tail(path: &Path, n: usize) -> String {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(_) => return String::new(),
    };
    let lines: Vec<String> = BufReader::new(f).lines().map_while(Result::ok).collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}

// ---------------------------------------------------------------------------
// polling
// ---------------------------------------------------------------------------

/// Polls `cond` every 25ms until it returns true; panics with `what` at the deadline.
pub fn wait_until(deadline: Instant, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        if cond() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {:?} waiting for: {what}", start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// `wait_until(Instant::now() + timeout, ...)`.
pub fn wait_for(timeout: Duration, what: &str, cond: impl FnMut() -> bool) {
    wait_until(Instant::now() + timeout, what, cond)
}

/// Like `wait_until` but returns the value produced by `f` once it is `Some`.
pub fn wait_some<T>(deadline: Instant, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let mut out = None;
    wait_until(deadline, what, || {
        out = f();
        out.is_some()
    });
    out.unwrap()
}

// ---------------------------------------------------------------------------
// minimal HTTP/1.1 client
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.text()))
    }

    fn wants_close(&self) -> bool {
        self.header("connection")
            .map(|v| v.eq_ignore_ascii_case("close"))
            .unwrap_or(false)
    }
}

/// Splits `http://host:port/path?q` into (`host:port`, `/path?q`).
pub fn split_url(url: &str) -> (String, String) {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("only http:// URLs are supported: {url}"));
    match rest.find('/') {
        Some(i) => (rest[..i].to_string(), rest[i..].to_string()),
        None => (rest.to_string(), "/".to_string()),
    }
}

fn resolve(authority: &str) -> io::Result<SocketAddr> {
    authority
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other("no address"))
}

/// A keep-alive HTTP/1.1 connection to one `host:port`, reconnecting when
/// needed. Not pipelined: one request at a time.
pub struct HttpConn {
    authority: String,
    timeout: Duration,
    stream: Option<BufReader<TcpStream>>,
}

impl HttpConn {
    pub fn new(authority: &str, timeout: Duration) -> HttpConn {
        HttpConn {
            authority: authority.to_string(),
            timeout,
            stream: None,
        }
    }

    /// Drops the current connection (the next request opens a new one).
    pub fn reset(&mut self) {
        self.stream = None;
    }

    /// Sends one request. `path` includes the query string. On any I/O error
    /// the connection is dropped and the error returned: the request is NOT
    /// retried (a write may or may not have been executed).
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<HttpResponse> {
        let r = self.request_inner(method, path, headers, body);
        match &r {
            Ok(resp) if !resp.wants_close() => {}
            _ => self.stream = None,
        }
        r
    }

    fn request_inner(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<HttpResponse> {
        if self.stream.is_none() {
            let addr = resolve(&self.authority)?;
            let s = TcpStream::connect_timeout(&addr, self.timeout)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(self.timeout))?;
            s.set_write_timeout(Some(self.timeout))?;
            self.stream = Some(BufReader::new(s));
        }
        let reader = self.stream.as_mut().unwrap();
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.authority);
        let mut has_ct = false;
        for (k, v) in headers {
            if k.eq_ignore_ascii_case("content-type") {
                has_ct = true;
            }
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() || !matches!(method, "GET" | "HEAD" | "DELETE" | "OPTIONS") {
            if !has_ct && !body.is_empty() {
                req.push_str("Content-Type: application/octet-stream\r\n");
            }
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut buf = req.into_bytes();
        buf.extend_from_slice(body);
        reader.get_mut().write_all(&buf)?;
        reader.get_mut().flush()?;
        read_response(reader, method == "HEAD")
    }
}

fn read_line(r: &mut BufReader<TcpStream>) -> io::Result<String> {
    let mut line = String::new();
    let n = r.read_line(&mut line)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a complete response",
        ));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn read_response(r: &mut BufReader<TcpStream>, head: bool) -> io::Result<HttpResponse> {
    let status_line = read_line(r)?;
    let mut parts = status_line.splitn(3, ' ');
    let _version = parts.next();
    let status: u16 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad status line {status_line:?}"),
        )
    })?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let mut resp = HttpResponse {
        status,
        headers,
        body: Vec::new(),
    };
    if head || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(resp);
    }
    let chunked = resp
        .header("transfer-encoding")
        .map(|v| v.to_ascii_lowercase().contains("chunked"))
        .unwrap_or(false);
    if chunked {
        loop {
            let size_line = read_line(r)?;
            let size_hex = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad chunk size {size_line:?}"),
                )
            })?;
            if size == 0 {
                // trailers until empty line
                loop {
                    if read_line(r)?.is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = resp.body.len();
            resp.body.resize(start + size, 0);
            r.read_exact(&mut resp.body[start..])?;
            read_line(r)?; // CRLF after chunk
        }
    } else if let Some(len) = resp.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad content-length"))?;
        resp.body.resize(len, 0);
        r.read_exact(&mut resp.body)?;
    } else {
        r.read_to_end(&mut resp.body)?;
        resp.headers
            .push(("connection".to_string(), "close".to_string()));
    }
    Ok(resp)
}

/// One request on a fresh connection. `url` = `http://host:port/path`.
pub fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<HttpResponse> {
    let (authority, path) = split_url(url);
    let mut c = HttpConn::new(&authority, timeout);
    c.request(method, &path, headers, body)
}

/// GET with a 2s timeout.
pub fn http_get(url: &str) -> io::Result<HttpResponse> {
    http("GET", url, &[], b"", Duration::from_secs(2))
}

// ---------------------------------------------------------------------------
// the proxy under test
// ---------------------------------------------------------------------------

/// A running `leaderproxy run --config FILE`.
pub struct ProxyProc {
    pub proc: Proc,
    pub dir: TempDir,
    pub config_path: PathBuf,
    /// `127.0.0.1:port` of the (first) data listener.
    pub listen: String,
    /// `127.0.0.1:port` of the admin listener.
    pub admin: String,
}

fn yaml_top_level_value(yaml: &str, key: &str) -> Option<String> {
    yaml.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| {
            v.split('#')
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches('"')
                .to_string()
        })
        .filter(|v| !v.is_empty())
}

/// Writes `config_yaml` to a temp file and starts `bin run --config FILE`,
/// then waits (15s) for the admin `/readyz` to answer 200.
///
/// If the YAML has no top-level `listen:` / `admin:` line, free ports are
/// picked and those lines are prepended. (`listen:` as a list is not parsed:
/// give a single address.) `bin` is `env!("CARGO_BIN_EXE_leaderproxy")`,
/// which only exists inside integration-test crates.
pub fn spawn_proxy(bin: &str, config_yaml: &str) -> ProxyProc {
    let mut p = spawn_proxy_unready(bin, config_yaml);
    p.wait_ready(Duration::from_secs(15));
    p
}

/// Like `spawn_proxy` but does not wait for readiness.
pub fn spawn_proxy_unready(bin: &str, config_yaml: &str) -> ProxyProc {
    let dir = TempDir::new("proxy");
    let mut yaml = String::new();
    let listen = match yaml_top_level_value(config_yaml, "listen") {
        Some(v) => v,
        None => {
            let v = format!("127.0.0.1:{}", free_port());
            yaml.push_str(&format!("listen: {v}\n"));
            v
        }
    };
    let admin = match yaml_top_level_value(config_yaml, "admin") {
        Some(v) => v,
        None => {
            let v = format!("127.0.0.1:{}", free_port());
            yaml.push_str(&format!("admin: {v}\n"));
            v
        }
    };
    yaml.push_str(config_yaml);
    let config_path = dir.join("leaderproxy.yaml");
    fs::write(&config_path, &yaml).expect("write proxy config");
    let args = vec![
        "run".to_string(),
        "--config".to_string(),
        config_path.display().to_string(),
        "--log-level".to_string(),
        std::env::var("LEADERPROXY_TEST_LOG_LEVEL").unwrap_or_else(|_| "info".to_string()),
    ];
    let proc = Proc::spawn("leaderproxy", bin, &args, dir.path());
    ProxyProc {
        proc,
        dir,
        config_path,
        listen,
        admin,
    }
}

impl ProxyProc {
    /// Waits until admin `/readyz` answers 200; panics with the log tail if
    /// the proxy exits or the timeout passes.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let url = self.admin_url("/readyz");
        let mut last;
        loop {
            if let Some(st) = self.proc.exited() {
                panic!(
                    "leaderproxy exited with {st} before becoming ready; config:\n{}\nlog:\n{}",
                    fs::read_to_string(&self.config_path).unwrap_or_default(),
                    self.proc.log_tail(60)
                );
            }
            match http("GET", &url, &[], b"", Duration::from_millis(500)) {
                Ok(r) if r.status == 200 => return,
                Ok(r) => last = format!("{} {}", r.status, r.text()),
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                panic!(
                    "leaderproxy /readyz not 200 within {timeout:?} (last: {last}); log:\n{}",
                    self.proc.log_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// `http://<listen><path>`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.listen, path)
    }

    /// `http://<admin><path>`
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// `GET /admin/routing` as JSON.
    pub fn routing(&self) -> serde_json::Value {
        let r = http_get(&self.admin_url("/admin/routing")).expect("GET /admin/routing");
        assert_eq!(r.status, 200, "/admin/routing: {}", r.text());
        r.json()
    }

    /// The `role` of backend `name` in `/admin/routing` (leader|follower|down).
    pub fn backend_role(&self, name: &str) -> Option<String> {
        let v = http_get(&self.admin_url("/admin/routing")).ok()?;
        if v.status != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&v.body).ok()?;
        v["backends"]
            .as_array()?
            .iter()
            .find(|b| b["name"] == name)
            .and_then(|b| b["role"].as_str().map(str::to_string))
    }

    /// The leader name in `/admin/routing`, if any.
    pub fn leader_name(&self) -> Option<String> {
        let v = self.try_routing()?;
        v["leader"]["name"].as_str().map(str::to_string)
    }

    /// `GET /admin/routing` as JSON, or `None` while the admin API does not
    /// answer (yet).
    pub fn try_routing(&self) -> Option<serde_json::Value> {
        let v = http_get(&self.admin_url("/admin/routing")).ok()?;
        serde_json::from_slice(&v.body).ok()
    }

    /// Waits up to `within` until `/admin/routing` names `leader` the leader
    /// ("proxy /admin/routing names leader <name>" when it does not).
    pub fn wait_leader(&self, leader: &str, within: Duration) {
        let what = format!("proxy /admin/routing names leader {leader}");
        self.wait_leader_as(leader, within, &what);
    }

    /// [`ProxyProc::wait_leader`], the wait named `what`.
    pub fn wait_leader_as(&self, leader: &str, within: Duration, what: &str) {
        wait_for(within, what, || {
            self.leader_name().as_deref() == Some(leader)
        });
    }

    /// `GET /metrics` text.
    pub fn metrics(&self) -> String {
        http_get(&self.admin_url("/metrics"))
            .map(|r| r.text())
            .unwrap_or_default()
    }

    /// Sum of all samples of metric `name` whose label set contains every
    /// `label="value"` pair given (e.g. `&[("role", "write")]`).
    pub fn metric_sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_sum(&self.metrics(), name, labels)
    }

    pub fn log_tail(&self, n: usize) -> String {
        self.proc.log_tail(n)
    }
}

/// Sums Prometheus text samples of `name` whose labels include all `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut sum = 0.0;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let (metric, lbls) = match series.find('{') {
            Some(i) => (&series[..i], &series[i..]),
            None => (series, ""),
        };
        if metric != name {
            continue;
        }
        if labels
            .iter()
            .all(|(k, v)| lbls.contains(&format!("{k}=\"{v}\"")))
        {
            sum += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    sum
}
