//! Leader failover under write load: leaderproxy vs HAProxy in front of a real
//! 3-member etcd 3.4 cluster (Debian `etcd-server`), everything on 127.0.0.1.
//!
//! One run: start a fresh cluster, start the front, run `--writers` threads
//! that PUT unique v2 keys (`PUT /v2/keys/lpbench/k-<t>-<n>`, form
//! `value=...`, one keep-alive connection each, the same writer for both
//! fronts and the same API as `tests/real_etcd.rs`), SIGKILL the leader after
//! `--seconds-before`, keep writing `--seconds-after` (and at least 2s after
//! the new leader appeared), then read every key back with one recursive
//! quorum read from the new leader and print one line:
//!
//! `front=haproxy writes=.. acked=.. failed=.. lost=.. longest_pause_ms=.. election_ms=.. ...`
//!
//! followed by `kind:` lines (failures grouped by status and body, or I/O
//! error) and, for HAProxy, the abnormal-request log lines.
//!
//! - `failed`: writes without a 2xx answer (the writer does not retry; with
//!   `--fail-pause-ms 0` it sends its next write at once, so fail-fast
//!   answers are counted once per attempt).
//! - `lost`: acknowledged writes missing (or with another value) afterwards.
//! - `longest_pause_ms`: longest gap between two consecutive acknowledgements
//!   (all writers merged).
//! - `election_ms`: from the reaping of the killed leader to the first 200 on
//!   `GET /v2/stats/leader` from a surviving member (polled every ~25ms).
//!
//! Fronts:
//! - leaderproxy: `LEADERPROXY_BIN` or `--leaderproxy-bin` (default
//!   `target/release/leaderproxy`); leader probe `GET /v2/stats/leader` every
//!   200ms (timeout 150ms), writes held up to 5s.
//! - haproxy: `haproxy -f haproxy.cfg -db` with `option httpchk GET
//!   /v2/stats/leader`, `inter 200ms fall 2 rise 1 on-marked-down
//!   shutdown-sessions`, `option redispatch`, `retries 3`.
//!
//! Every child is SIGKILLed when the run ends, also on panic; a watchdog kills
//! them and exits 3 if the run takes far longer than planned.
//!
//! Run: `cargo run --release --example failover -- --front haproxy`
//! (or `bash benches/failover_vs_haproxy.sh` for both, side by side).

#[path = "../tests/support/procs.rs"]
mod procs;

#[path = "../tests/support/etcd.rs"]
mod etcd;

#[path = "../tests/support/writes.rs"]
mod writes;

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use etcd::EtcdCluster;
use procs::{
    free_port, http, spawn_proxy, split_url, wait_for, HttpResponse, Proc, ProxyProc, TempDir,
};
use writes::{Load, Outcome, Rec, Request, Verdict};

const DIR: &str = "lpbench";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum FrontKind {
    Leaderproxy,
    Haproxy,
}

impl FrontKind {
    fn name(self) -> &'static str {
        match self {
            FrontKind::Leaderproxy => "leaderproxy",
            FrontKind::Haproxy => "haproxy",
        }
    }
}

#[derive(Parser, Debug)]
#[command(about = "SIGKILL the etcd leader under write load behind leaderproxy or HAProxy")]
struct Args {
    /// Which front to put before the cluster.
    #[arg(long, value_enum)]
    front: FrontKind,
    /// Seconds of write load before the kill.
    #[arg(long, default_value_t = 3.0)]
    seconds_before: f64,
    /// Seconds of write load after the kill (at least 2s after the new leader appears).
    #[arg(long, default_value_t = 4.0)]
    seconds_after: f64,
    /// Concurrent writers, one keep-alive connection each.
    #[arg(long, default_value_t = 8)]
    writers: usize,
    /// Sleep this long after a failed write before the next one (0 = at once).
    #[arg(long, default_value_t = 0)]
    fail_pause_ms: u64,
    /// leaderproxy binary (default: $LEADERPROXY_BIN, else target/release/leaderproxy).
    #[arg(long)]
    leaderproxy_bin: Option<PathBuf>,
    /// haproxy binary (default: /usr/sbin/haproxy, else `haproxy` on the PATH).
    #[arg(long)]
    haproxy_bin: Option<PathBuf>,
}

// ---------------------------------------------------------------------------
// the fronts
// ---------------------------------------------------------------------------

enum Front {
    Leaderproxy(ProxyProc),
    Haproxy {
        // field order: the process is killed before its directory is removed
        proc: Proc,
        _dir: TempDir,
        listen: String,
        stats: String,
    },
}

impl Front {
    fn authority(&self) -> String {
        match self {
            Front::Leaderproxy(p) => split_url(&p.url("/")).0,
            Front::Haproxy { listen, .. } => listen.clone(),
        }
    }

    fn pid(&self) -> Option<u32> {
        match self {
            Front::Leaderproxy(p) => p.proc.pid(),
            Front::Haproxy { proc, .. } => proc.pid(),
        }
    }

    /// Waits until the front routes writes to member `leader`.
    fn wait_for_leader(&self, names: &[String], leader: usize) {
        match self {
            Front::Leaderproxy(p) => wait_for(
                Duration::from_secs(10),
                &format!("leaderproxy names leader {}", names[leader]),
                || p.leader_name().as_deref() == Some(names[leader].as_str()),
            ),
            Front::Haproxy { stats, .. } => wait_for(
                Duration::from_secs(10),
                &format!("haproxy: only {} is UP", names[leader]),
                || {
                    let st = haproxy_states(stats);
                    names.iter().enumerate().all(|(i, n)| {
                        let s = st.get(n).map(String::as_str).unwrap_or("");
                        if i == leader {
                            s == "UP"
                        } else {
                            s.starts_with("DOWN")
                        }
                    })
                },
            ),
        }
    }

    /// Where the front would send a write right now, polled without holding `self`.
    fn view_source(&self) -> ViewSource {
        match self {
            Front::Leaderproxy(p) => ViewSource::Leaderproxy(p.admin_url("/admin/routing")),
            Front::Haproxy { stats, .. } => ViewSource::Haproxy(stats.clone()),
        }
    }

    fn extra_report(&self) -> Vec<String> {
        match self {
            Front::Leaderproxy(p) => {
                let m = p.metrics();
                vec![format!(
                    "leaderproxy metrics: writes_resent={} leader_changes={} write_hold_seconds_count={}",
                    procs::metric_sum(&m, "leaderproxy_writes_resent_total", &[]),
                    procs::metric_sum(&m, "leaderproxy_leader_changes_total", &[]),
                    procs::metric_sum(&m, "leaderproxy_write_hold_seconds_count", &[]),
                )]
            }
            Front::Haproxy { proc, .. } => {
                let log = fs::read_to_string(&proc.log).unwrap_or_default();
                // -db also copies alerts and warnings to stderr as "[WARNING] ..."
                let lines: Vec<&str> = log
                    .lines()
                    .filter(|l| !l.trim().is_empty() && !l.starts_with('['))
                    .collect();
                let mut out = vec![format!(
                    "haproxy log ({} lines: server state changes and abnormal requests only), first 16:",
                    lines.len()
                )];
                out.extend(lines.iter().take(16).map(|l| format!("  {l}")));
                out
            }
        }
    }
}

enum ViewSource {
    Leaderproxy(String),
    Haproxy(String),
}

impl ViewSource {
    /// leaderproxy: `leader=<name>` or `leader=none`; HAProxy: `up=[..]`.
    fn view(&self) -> String {
        match self {
            ViewSource::Leaderproxy(url) => {
                match http("GET", url, &[], b"", Duration::from_millis(300)) {
                    Ok(r) if r.status == 200 => {
                        let v: serde_json::Value =
                            serde_json::from_slice(&r.body).unwrap_or_default();
                        format!("leader={}", v["leader"]["name"].as_str().unwrap_or("none"))
                    }
                    _ => "admin-unreachable".to_string(),
                }
            }
            ViewSource::Haproxy(stats) => {
                let st = haproxy_states(stats);
                if st.is_empty() {
                    return "stats-unreachable".to_string();
                }
                let up: Vec<&str> = st
                    .iter()
                    .filter(|(_, s)| s.starts_with("UP"))
                    .map(|(n, _)| n.as_str())
                    .collect();
                format!("up=[{}]", up.join(","))
            }
        }
    }
}

/// Polls the front's view every 20ms, keeping the changes, until `stop`.
fn watch_front(
    src: ViewSource,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<(Instant, String)>> {
    std::thread::spawn(move || {
        let mut changes: Vec<(Instant, String)> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let v = src.view();
            let at = Instant::now();
            if changes.last().map(|(_, l)| l != &v).unwrap_or(true) {
                changes.push((at, v));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        changes
    })
}

fn haproxy_config(cluster: &EtcdCluster, listen: &str, stats: &str) -> String {
    let mut servers = String::new();
    for m in &cluster.members {
        servers.push_str(&format!("    server {} {} check\n", m.name, m.authority()));
    }
    format!(
        r#"global
    log stdout format iso local0 info
    maxconn 4096

defaults
    mode http
    log global
    option httplog
    option dontlog-normal
    option redispatch
    retries 3
    http-reuse safe
    timeout connect 1s
    timeout client 30s
    timeout server 30s

frontend fe
    bind {listen}
    default_backend etcd

backend etcd
    option httpchk GET /v2/stats/leader
    http-check expect status 200
    default-server inter 200ms fall 2 rise 1 on-marked-down shutdown-sessions
{servers}
listen stats
    bind {stats}
    stats enable
    stats uri /stats
"#
    )
}

/// Server name -> status (`UP`, `DOWN`, `DOWN 1/2`, ...) of backend `etcd`
/// from the stats CSV; empty on any error.
fn haproxy_states(stats: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let r = match http(
        "GET",
        &format!("http://{stats}/stats;csv"),
        &[],
        b"",
        Duration::from_millis(500),
    ) {
        Ok(r) if r.status == 200 => r,
        _ => return out,
    };
    let text = r.text();
    let mut lines = text.lines();
    let header: Vec<&str> = match lines.next() {
        Some(h) => h.trim_start_matches("# ").split(',').collect(),
        None => return out,
    };
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(px), Some(sv), Some(st)) = (col("pxname"), col("svname"), col("status")) else {
        return out;
    };
    for l in lines {
        let f: Vec<&str> = l.split(',').collect();
        if f.get(px) == Some(&"etcd") && !matches!(f.get(sv), Some(&"BACKEND" | &"FRONTEND")) {
            if let (Some(n), Some(s)) = (f.get(sv), f.get(st)) {
                out.insert(n.to_string(), s.to_string());
            }
        }
    }
    out
}

fn start_front(kind: FrontKind, args: &Args, cluster: &EtcdCluster) -> Front {
    match kind {
        FrontKind::Leaderproxy => {
            let bin = args
                .leaderproxy_bin
                .clone()
                .or_else(|| std::env::var_os("LEADERPROXY_BIN").map(PathBuf::from))
                .unwrap_or_else(|| {
                    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/leaderproxy")
                });
            assert!(
                bin.is_file(),
                "leaderproxy binary {} not found (cargo build --release --bin leaderproxy)",
                bin.display()
            );
            Front::Leaderproxy(spawn_proxy(
                &bin.display().to_string(),
                &cluster.leaderproxy_yaml("writes:\n  hold: 5s\n"),
            ))
        }
        FrontKind::Haproxy => {
            let bin = args.haproxy_bin.clone().unwrap_or_else(|| {
                let p = PathBuf::from("/usr/sbin/haproxy");
                if p.is_file() {
                    p
                } else {
                    PathBuf::from("haproxy")
                }
            });
            let dir = TempDir::new("haproxy");
            let listen = format!("127.0.0.1:{}", free_port());
            let stats = format!("127.0.0.1:{}", free_port());
            let cfg = dir.join("haproxy.cfg");
            fs::write(&cfg, haproxy_config(cluster, &listen, &stats)).expect("write haproxy.cfg");
            let check = Command::new(&bin)
                .args(["-c", "-q", "-f"])
                .arg(&cfg)
                .output()
                .unwrap_or_else(|e| panic!("run {} -c: {e}", bin.display()));
            assert!(
                check.status.success(),
                "haproxy -c rejected the config:\n{}{}",
                String::from_utf8_lossy(&check.stdout),
                String::from_utf8_lossy(&check.stderr)
            );
            let cfg_arg = cfg.display().to_string();
            let mut proc = Proc::spawn(
                "haproxy",
                &bin,
                &["-f".to_string(), cfg_arg, "-db".to_string()],
                dir.path(),
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while haproxy_states(&stats).len() < cluster.len() {
                if let Some(st) = proc.exited() {
                    panic!("haproxy exited with {st}:\n{}", proc.log_tail(30));
                }
                assert!(
                    Instant::now() < deadline,
                    "haproxy stats not answering within 10s:\n{}",
                    proc.log_tail(30)
                );
                std::thread::sleep(Duration::from_millis(25));
            }
            Front::Haproxy {
                proc,
                _dir: dir,
                listen,
                stats,
            }
        }
    }
}

// ---------------------------------------------------------------------------
// what counts as an acknowledgement (the same for both fronts)
// ---------------------------------------------------------------------------

/// A 2xx echoing the value written is an acknowledgement; a 2xx echoing
/// another value is recorded as a failure.
fn acked(req: &Request, resp: &HttpResponse) -> Verdict {
    if !(200..300).contains(&resp.status) {
        return Verdict::Other;
    }
    let echoed = serde_json::from_slice::<serde_json::Value>(&resp.body)
        .ok()
        .and_then(|v| v["node"]["value"].as_str().map(str::to_string));
    if echoed.as_deref() == Some(req.value.as_str()) {
        Verdict::Acked
    } else {
        Verdict::Suspect("(2xx echoing another value)")
    }
}

// ---------------------------------------------------------------------------
// watchdog
// ---------------------------------------------------------------------------

/// SIGKILLs `pids` and exits 3 if `done` is not set by `deadline`.
fn watchdog(pids: Vec<u32>, deadline: Instant, done: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        while Instant::now() < deadline {
            if done.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if done.load(Ordering::Relaxed) {
            return;
        }
        eprintln!("failover: watchdog: run exceeded its time bound; killing {pids:?}");
        let _ = Command::new("kill")
            .arg("-KILL")
            .args(pids.iter().map(|p| p.to_string()))
            .status();
        std::process::exit(3);
    });
}

fn one_line(s: &str, max: usize) -> String {
    let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > max {
        format!("{}...", s.chars().take(max).collect::<String>())
    } else {
        s
    }
}

fn main() {
    let args = Args::parse();
    assert!(
        procs::binary_exists(etcd::ETCD_BIN),
        "{} missing: apt-get install etcd-server",
        etcd::ETCD_BIN
    );
    assert!(args.writers > 0, "--writers must be at least 1");
    let before = Duration::from_secs_f64(args.seconds_before.max(0.5));
    let after = Duration::from_secs_f64(args.seconds_after.max(0.5));
    let front_name = args.front.name();

    let mut cluster = EtcdCluster::start(3);
    let front = start_front(args.front, &args, &cluster);
    let names: Vec<String> = cluster.members.iter().map(|m| m.name.clone()).collect();

    let done = Arc::new(AtomicBool::new(false));
    let mut pids: Vec<u32> = cluster
        .members
        .iter()
        .filter_map(|m| m.proc.pid())
        .collect();
    pids.extend(front.pid());
    // cluster start, front start, load, election (<=15s), writer timeouts (12s), read-back
    watchdog(
        pids,
        Instant::now() + before + after + Duration::from_secs(90),
        done.clone(),
    );

    let first_leader = cluster.wait_for_leader(Duration::from_secs(10));
    front.wait_for_leader(&names, first_leader);

    // ---- load, kill, load ------------------------------------------------
    let stop = Arc::new(AtomicBool::new(false));
    let authority = front.authority();
    let fail_pause = Duration::from_millis(args.fail_pause_ms);
    let view_watch = watch_front(front.view_source(), stop.clone());
    let load = Load::start(
        args.writers,
        &authority,
        fail_pause,
        |t, n| writes::etcd_v2_put(DIR, t, n),
        acked,
    );
    std::thread::sleep(before);
    let kill_started = Instant::now();
    let election = cluster.kill_leader_and_measure(Duration::from_secs(15));
    let killed_at = election.killed_at;
    let new_leader_seen = killed_at + election.took;
    let load_end = std::cmp::max(killed_at + after, new_leader_seen + Duration::from_secs(2));
    while Instant::now() < load_end {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed); // the front watch
    let recs = load.stop();
    let views = view_watch.join().expect("front watch thread panicked");

    // ---- read back (quorum) from the new leader ---------------------------
    let stored = cluster.v2_list(election.new, DIR);

    // ---- classify ----------------------------------------------------------
    let rel = |t: Instant| writes::rel(killed_at, t);
    let (acked, failed) = writes::split(&recs);
    let lost = acked.iter().filter(|r| !r.stored_in(&stored)).count();
    let failed_committed = failed.iter().filter(|r| r.stored_in(&stored)).count();
    // in flight to the dying leader: sent before it was reaped, answered after the kill began
    let in_flight = |r: &Rec| r.sent <= killed_at && r.done >= kill_started;
    let failed_in_flight = failed.iter().filter(|r| in_flight(r)).count();

    let longest = writes::longest_pause(&acked, killed_at);
    let acks_after_kill = acked.iter().filter(|r| r.done > killed_at).count();
    let fail_window = match (failed.first(), failed.last()) {
        (Some(a), Some(b)) => format!("{}..{}", rel(a.done), rel(b.done)),
        _ => "none".to_string(),
    };

    println!(
        "front={front_name} writes={} acked={} failed={} lost={} longest_pause_ms={} election_ms={} \
         failed_in_flight_at_kill={failed_in_flight} failed_but_committed={failed_committed} \
         pause_window={}..{} fail_window={fail_window} acked_after_kill={acks_after_kill} \
         writers={} seconds_before={} seconds_after={} killed={} new_leader={}",
        recs.len(),
        acked.len(),
        failed.len(),
        lost,
        longest.gap.as_millis(),
        election.took.as_millis(),
        rel(longest.from),
        rel(longest.to),
        args.writers,
        args.seconds_before,
        args.seconds_after,
        names[election.old],
        names[election.new],
    );

    // failures grouped by kind, with where they happened relative to the kill
    let kinds = writes::tally(&failed, |r| match &r.outcome {
        Outcome::Other { status, body, .. } => format!("{status} {:?}", one_line(body, 110)),
        Outcome::Io(e) => format!("io {:?}", one_line(e, 110)),
        Outcome::Acked { .. } => unreachable!(),
    });
    let mut kinds: Vec<(String, Vec<&Rec>)> = kinds.into_iter().collect();
    kinds.sort_by_key(|k| std::cmp::Reverse(k.1.len()));
    for (k, v) in &kinds {
        // each group is ordered by `done`, as `failed` is
        println!(
            "  kind: front={front_name} x{} (sent before the leader was reaped: {}, committed anyway: {}) answered {}..{}: {k}",
            v.len(),
            v.iter().filter(|r| in_flight(r)).count(),
            v.iter().filter(|r| r.stored_in(&stored)).count(),
            rel(v[0].done),
            rel(v[v.len() - 1].done)
        );
    }
    let timeline: Vec<String> = views
        .iter()
        .map(|(at, v)| format!("{} {v}", rel(*at)))
        .collect();
    println!(
        "  front view (polled every 20ms, times from the kill): {}",
        timeline.join(" ; ")
    );
    for l in front.extra_report() {
        println!("  {l}");
    }

    done.store(true, Ordering::Relaxed);
    drop(front);
    drop(cluster);
}
