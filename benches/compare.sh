#!/usr/bin/env bash
# Side-by-side load comparison: direct backend vs HAProxy vs nginx vs leaderproxy.
#
# Starts three bench_backend servers (one leader, two followers), then each proxy in
# turn with an equivalent configuration (round-robin GETs over the same two followers,
# upstream keep-alive) and drives it with identical load:
#   h1-ka-64    wrk -t1 -c64  keep-alive GETs
#   h1-ka-512   wrk -t1 -c512 keep-alive GETs
#   h1-close-64 wrk -t1 -c64  -H 'Connection: close' (new client connection per request)
#   h2          h2load -c16 -m16 (h2c prior knowledge)
# then, with TLS terminated by the proxy (self-signed certificate made at run time with
# openssl in the work dir; HAProxy `bind ... ssl crt`, nginx `listen ... ssl`, leaderproxy
# `tls: { cert, key }`; plain HTTP to the bench backends as above), on a fresh process:
#   h1-tls-ka-c64     wrk -t1 -c64 keep-alive GETs over TLS
#   h1-tls-close-c64  wrk -t1 -c64 -H 'Connection: close': a TLS handshake per request.
#                     wrk keeps the session of the previous connection (SSL_clear), so these
#                     are resumed TLS 1.3 handshakes (PSK + ECDHE) where the server allows it;
#                     the script logs HAProxy's share of resumed handshakes during the run
#   h2-tls            h2load -c16 -m16 over TLS (ALPN h2)
#   tls-full-p16      16 parallel `openssl s_time -new -www /`: a full handshake (no
#                     resumption) + one HTTP/1.0 GET per connection; no latency percentiles
# then the TCP rows, against a real Patroni 3 + PostgreSQL 15 cluster (tests/support/patroni.sh,
# on free loopback ports; HAProxy with Patroni's documented config in mode tcp, leaderproxy with
# a `tcp` read listener; `direct` = one replica), after `pgbench -i -s 10` through the leader:
#   pg-S-c16          pgbench -S -M prepared -c 16 -j 2: read-only transactions on kept
#                     connections (the proxies' copy path); req/s = transactions/s,
#                     p50 = pgbench's average latency, non-2xx = failed transactions,
#                     sock errors = aborted clients
# and prints one table (req/s, p50, p99, proxy CPU µs/request from /proc utime+stime of
# all the proxy's processes and its kernel share, peak RSS = sum of VmHWM, non-2xx, socket
# errors, ratios to HAProxy and nginx), then a second table: RSS with 10,000 idle keep-alive client connections.
#
# Every target runs REPEAT times, interleaved (round 1: haproxy, nginx, leaderproxy; round 2:
# haproxy, nginx, leaderproxy; ...), so a noisy moment hits one run, not one target. Each
# ratio is taken within a round (leaderproxy's run against HAProxy's run of the same round)
# and the table prints the median of the rounds' ratios with their spread (min-max); the
# absolute columns are medians, non-2xx and socket errors are sums over the rounds.
#
# Everything listens on 127.0.0.1; every load is bounded in time; a trap cleans up.
#
# Environment:
#   DURATION=10        seconds per run (default 10, or 3 with QUICK=1)
#   QUICK=1            3 s runs, for fast checks
#   REPEAT=3           rounds over all targets (interleaved); medians and spreads over them
#   TARGETS="direct haproxy nginx leaderproxy"   subset/order of targets
#   SKIP_LEADERPROXY=1 leave leaderproxy out (build only the bench backend)
#   IDLE_CONNS=10000   connections for the idle-RSS table (IDLE_CONNS=0 skips it)
#   IDLE_ONLY=1        only the idle-RSS table (no load rows, no TLS, no PostgreSQL)
#   BENCH_BACKEND=path, LEADERPROXY_BIN=path   use prebuilt binaries (skips cargo)
#   SKIP_BUILD=1       do not run cargo; use binaries in the target dir
#   NO_INSTALL=1       never run apt-get
#   KEEP_WORKDIR=1     keep configs, logs and raw outputs in the work dir
#   SKIP_TLS=1         leave out the TLS rows (h1-tls-*, h2-tls-*)
#   TLS_KEY=ec         certificate key for the TLS rows: ec (P-256, default) or rsa (2048 bits)
#   PG=0               leave out the TCP rows (pg-*; they start a Patroni cluster, ~15 s)
#   HTTP=0             leave out the HTTP rows and the idle table (only the TCP rows run)
#
# Usage: benches/compare.sh            (from anywhere inside the repository)
#        QUICK=1 SKIP_LEADERPROXY=1 benches/compare.sh
#        HTTP=0 TARGETS="haproxy leaderproxy" benches/compare.sh   (the pgbench rows only)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"

QUICK="${QUICK:-0}"
if [[ "$QUICK" == 1 ]]; then DURATION="${DURATION:-3}"; else DURATION="${DURATION:-10}"; fi
DURATION="${DURATION%s}"
REPEAT="${REPEAT:-3}"
IDLE_ONLY="${IDLE_ONLY:-0}"
[[ "$IDLE_ONLY" == 1 ]] && SKIP_TLS=1 PG=0
[[ "$REPEAT" =~ ^[0-9]+$ && "$REPEAT" -gt 0 ]] || { echo "REPEAT must be a positive whole number" >&2; exit 2; }
ROUND=1 # the round being run (recorded with every result)
[[ "$DURATION" =~ ^[0-9]+$ && "$DURATION" -gt 0 ]] || { echo "DURATION must be whole seconds" >&2; exit 2; }
SKIP_LEADERPROXY="${SKIP_LEADERPROXY:-0}"
IDLE_CONNS="${IDLE_CONNS:-10000}"
TARGETS="${TARGETS:-direct haproxy nginx leaderproxy}"
SKIP_TLS="${SKIP_TLS:-0}"
PG="${PG:-1}"
HTTP="${HTTP:-1}"
[[ "$HTTP" == 0 ]] && SKIP_TLS=1
TLS_KEY="${TLS_KEY:-ec}"
[[ "$TLS_KEY" == ec || "$TLS_KEY" == rsa ]] || { echo "TLS_KEY must be ec or rsa" >&2; exit 2; }
if [[ "$SKIP_LEADERPROXY" == 1 ]]; then TARGETS="$(echo "$TARGETS" | tr ' ' '\n' | grep -vx leaderproxy | xargs)"; fi
H2_CLIENTS=16
H2_STREAMS=16
RUN_TIMEOUT=$((DURATION + 30)) # hard bound for every load generator

log() { printf '[compare %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- tools
install_tools() {
  local missing=()
  command -v haproxy >/dev/null || missing+=(haproxy)
  command -v nginx >/dev/null || missing+=(nginx-light)
  command -v wrk >/dev/null || missing+=(wrk)
  command -v h2load >/dev/null || missing+=(nghttp2-client)
  command -v curl >/dev/null || missing+=(curl)
  command -v python3 >/dev/null || missing+=(python3)
  [[ "$SKIP_TLS" == 1 ]] || command -v openssl >/dev/null || missing+=(openssl)
  [[ "$PG" == 0 ]] || command -v pgbench >/dev/null || missing+=(postgresql-client-15) # patroni.sh installs the rest
  [[ ${#missing[@]} -eq 0 ]] && return 0
  [[ "${NO_INSTALL:-0}" == 1 ]] && die "missing tools: ${missing[*]} (NO_INSTALL=1)"
  log "installing: ${missing[*]}"
  local sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"; then
    # nginx-light is gone in newer Debian releases
    missing=("${missing[@]/nginx-light/nginx}")
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
  fi
}
install_tools

# Idle-connection table needs ~10k fds per process (client and proxy).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
NOFILE="$(ulimit -n)"
[[ "$NOFILE" == unlimited ]] && NOFILE=1048576
if ((NOFILE < 65536)); then log "note: open-files limit is $NOFILE (hard limit; wanted 65536)"; fi
if ((IDLE_CONNS > 0 && NOFILE < IDLE_CONNS + 1000)); then
  IDLE_CONNS=$((NOFILE - 1000))
  log "note: IDLE_CONNS lowered to $IDLE_CONNS to fit the fd limit"
fi

# ---------------------------------------------------------------- build
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BENCH_BACKEND="${BENCH_BACKEND:-}"
LEADERPROXY_BIN="${LEADERPROXY_BIN:-}"
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  build_args=()
  [[ -z "$BENCH_BACKEND" && "$HTTP" != 0 ]] && build_args+=(--example bench_backend)
  [[ "$SKIP_LEADERPROXY" != 1 && -z "$LEADERPROXY_BIN" ]] && build_args+=(--bin leaderproxy)
  if [[ ${#build_args[@]} -gt 0 ]]; then
    log "cargo build --release ${build_args[*]}"
    (cd "$ROOT" && cargo build --release "${build_args[@]}")
  fi
fi
BENCH_BACKEND="${BENCH_BACKEND:-$TARGET_DIR/release/examples/bench_backend}"
LEADERPROXY_BIN="${LEADERPROXY_BIN:-$TARGET_DIR/release/leaderproxy}"
[[ "$HTTP" == 0 || -x "$BENCH_BACKEND" ]] || die "bench backend not found: $BENCH_BACKEND"
if [[ " $TARGETS " == *" leaderproxy "* ]]; then
  [[ -x "$LEADERPROXY_BIN" ]] || die "leaderproxy not found: $LEADERPROXY_BIN (SKIP_LEADERPROXY=1 to leave it out)"
fi

# ---------------------------------------------------------------- work dir, cleanup
W="$(mktemp -d /tmp/lp-compare.XXXXXX)"
PIDS=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  if [[ "${KEEP_WORKDIR:-0}" == 1 || $rc -ne 0 ]]; then log "work dir kept: $W"; else rm -rf "$W"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- python helpers
cat >"$W/lpbench.py" <<'PY'
import json, os, resource, socket, sys, time

def tree(root):
    """root pid plus all its descendants"""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st[st.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out

def snap(root):
    """ticks(utime+stime) hwm_kb rss_kb nprocs sys_ticks(stime) over the process tree"""
    ticks = hwm = rss = n = sys_ticks = 0
    for p in tree(root):
        try:
            with open(f"/proc/{p}/stat") as f:
                st = f.read()
            with open(f"/proc/{p}/status") as f:
                status = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        ticks += int(fields[11]) + int(fields[12])
        sys_ticks += int(fields[12])
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                hwm += int(line.split()[1])
            elif line.startswith("VmRSS:"):
                rss += int(line.split()[1])
        n += 1
    return ticks, hwm, rss, n, sys_ticks

def reset_hwm(root):
    ok = True
    for p in tree(root):
        try:
            with open(f"/proc/{p}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            ok = False
    return ok

def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports

def free_run(n):
    """the first of n consecutive ports that are free now (for a script that numbers from a base)"""
    for _ in range(1000):
        base = free_ports(1)[0]
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    sys.exit("no run of free ports")

def pctl(sorted_vals, q):
    if not sorted_vals:
        return 0
    i = min(len(sorted_vals) - 1, max(0, int(round(q / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[i]

def h2stats(logfile):
    lat = []
    non2xx = 0
    with open(logfile) as f:
        for line in f:
            parts = line.split("\t")
            if len(parts) < 3:
                continue
            status = int(parts[1])
            if status < 200 or status > 299:
                non2xx += 1
            lat.append(int(parts[2]))
    lat.sort()
    return len(lat), pctl(lat, 50), pctl(lat, 99), non2xx

def read_response(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            return buf
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    clen = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            clen = int(v.strip())
    while len(body) < clen:
        chunk = s.recv(4096)
        if not chunk:
            break
        body += chunk
    return head

def idle(port, n, root, settle):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    t0 = snap(root)
    req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: lp-idle\r\n\r\n"
    socks, ok, bad, errs = [], 0, 0, 0
    batch = 200
    deadline = time.time() + 120
    while len(socks) + errs < n and time.time() < deadline:
        cur = []
        for _ in range(min(batch, n - len(socks) - errs)):
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.sendall(req)
                cur.append(s)
            except OSError:
                errs += 1
        for s in cur:
            try:
                head = read_response(s)
                if head.startswith(b"HTTP/1.1 200"):
                    ok += 1
                else:
                    bad += 1
                socks.append(s)
            except OSError:
                errs += 1
                s.close()
        if errs > n // 10:
            break
    time.sleep(settle)
    # connections still open (the proxy may have closed some)
    alive = 0
    for s in socks:
        s.setblocking(False)
        try:
            alive += 0 if s.recv(1, socket.MSG_PEEK) == b"" else 1
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    t1 = snap(root)
    print(json.dumps({"opened": len(socks), "ok": ok, "non200": bad, "errors": errs,
                      "alive": alive, "rss0_kb": t0[2], "rss1_kb": t1[2], "nprocs": t1[3]}))
    for s in socks:
        s.close()

def fmt_us(us):
    if us == "" or us is None:
        return "-"
    us = float(us)
    return f"{us / 1000:.2f}ms" if us >= 1000 else f"{us:.0f}us"

def table(rows, headers, aligns, grouped=True):
    widths = [max(len(str(r[i])) for r in rows + [headers]) for i in range(len(headers))]
    def line(r):
        return "  ".join((str(c).rjust(w) if a == "r" else str(c).ljust(w)) for c, w, a in zip(r, widths, aligns))
    out = [line(headers), "  ".join("-" * w for w in widths)]
    prev = None
    for r in rows:
        if grouped and prev is not None and r[0] != "" and prev != r[0]:
            out.append("")
        if r[0] != "":
            prev = r[0]
        out.append(line(r))
    return "\n".join(out)

def median(vals):
    vals = sorted(vals)
    n = len(vals)
    if n == 0:
        return None
    return vals[n // 2] if n % 2 else (vals[n // 2 - 1] + vals[n // 2]) / 2

def num(r, key):
    """a run's field as a float, None when it has none ("" or "-")"""
    v = r.get(key) if r else None
    return float(v) if isinstance(v, (int, float)) else None

def round_ratios(runs, other, key):
    """per round: run[key] / the other target's run[key] of the same round"""
    out = []
    for r in runs:
        o = next((x for x in other if x.get("round", 1) == r.get("round", 1)), None)
        a, b = num(r, key), num(o, key)
        if a is not None and b:
            out.append(a / b)
    return out

def fmt_ratio(vals):
    """median ratio, with its spread (min-max) over the rounds when there are several"""
    if not vals:
        return "-"
    m = f"{median(vals):.2f}x"
    return m if len(vals) == 1 else f"{m} ({min(vals):.2f}-{max(vals):.2f})"

def med_field(runs, key):
    return median([v for v in (num(r, key) for r in runs) if v is not None])

def total(runs, key):
    vals = [r.get(key) for r in runs]
    if all(isinstance(v, int) for v in vals):
        return str(sum(vals))
    return "-" if all(v in (None, "", "-") for v in vals) else "/".join(str(v) for v in vals)

def report(results, idle_results):
    runs = [json.loads(l) for l in open(results) if l.strip()]
    tests, targets = [], []
    for r in runs:
        if r["test"] not in tests:
            tests.append(r["test"])
        if r["target"] not in targets:
            targets.append(r["target"])
    rows = []
    for t in tests:
        by = {tg: [r for r in runs if r["test"] == t and r["target"] == tg] for tg in targets}
        hap, ngx = by.get("haproxy", []), by.get("nginx", [])
        first = True
        for tg in targets:
            rs = by[tg]
            if not rs:
                continue
            def vs(other, key):
                return fmt_ratio(round_ratios(rs, other, key)) if other else "-"
            rps, cpu, rss = med_field(rs, "rps"), med_field(rs, "cpu_us_per_req"), med_field(rs, "peak_rss_kb")
            sys_pct = med_field(rs, "sys_pct")
            rows.append([
                t if first else "", tg, str(len(rs)),
                "-" if rps is None else f"{rps:.0f}", vs(hap, "rps"), vs(ngx, "rps"),
                fmt_us(med_field(rs, "p50_us")), fmt_us(med_field(rs, "p99_us")),
                vs(hap, "p99_us"), vs(ngx, "p99_us"),
                "-" if cpu is None else f"{cpu:.1f}", vs(hap, "cpu_us_per_req"), vs(ngx, "cpu_us_per_req"),
                "-" if sys_pct is None else f"{sys_pct:.0f}%",
                "-" if rss is None else f"{rss / 1024:.1f}",
                total(rs, "non2xx"), total(rs, "sock_errors"),
            ])
            first = False
    if rows:
        print(table(rows,
                ["test", "target", "runs", "req/s", "vs HAProxy", "vs nginx", "p50", "p99",
                 "vs HAProxy", "vs nginx", "CPU us/req", "vs HAProxy", "vs nginx", "kernel",
                 "peak RSS MiB", "non-2xx", "sock errors"],
                ["l", "l", "r", "r", "r", "r", "r", "r", "r", "r", "r", "r", "r", "r", "r", "r", "r"]))
        print()
    if idle_results and os.path.exists(idle_results) and os.path.getsize(idle_results) > 0:
        irs = [json.loads(l) for l in open(idle_results) if l.strip()]
        for r in irs:
            r["delta_kb"] = r["rss1_kb"] - r["rss0_kb"]
            r["per_conn_kb"] = r["delta_kb"] / max(1, r["alive"])
        targets = []
        for r in irs:
            if r["target"] not in targets:
                targets.append(r["target"])
        hap = [r for r in irs if r["target"] == "haproxy"]
        rows = []
        for tg in targets:
            rs = [r for r in irs if r["target"] == tg]
            rows.append([tg, str(len(rs)), str(min(r["opened"] for r in rs)), str(min(r["ok"] for r in rs)),
                         str(min(r["alive"] for r in rs)),
                         f"{med_field(rs, 'rss0_kb') / 1024:.1f}", f"{med_field(rs, 'rss1_kb') / 1024:.1f}",
                         fmt_ratio(round_ratios(rs, hap, "rss1_kb")),
                         f"{med_field(rs, 'delta_kb') / 1024:.1f}", f"{med_field(rs, 'per_conn_kb'):.2f}",
                         fmt_ratio(round_ratios(rs, hap, "per_conn_kb")), str(rs[0]["nprocs"])])
        print(table(rows,
                    ["target", "runs", "conns", "200 OK", "alive", "RSS idle MiB", "RSS w/ conns MiB",
                     "vs HAProxy", "delta MiB", "KiB/conn", "vs HAProxy", "procs"],
                    ["l", "r", "r", "r", "r", "r", "r", "r", "r", "r", "r", "r"], grouped=False))

def hapinfo(path):
    """selected `show info` fields from HAProxy's stats socket, as JSON"""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(2)
    s.connect(path)
    s.sendall(b"show info\n")
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    info = {}
    for line in buf.decode(errors="replace").splitlines():
        k, sep, v = line.partition(":")
        if sep:
            info[k.strip()] = v.strip()
    keep = ["CumSslConns", "SslRate", "SslFrontendKeyRate", "SslFrontendSessionReuse_pct"]
    print(json.dumps({k: info.get(k) for k in keep}))

if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "ports":
        print(" ".join(map(str, free_ports(int(sys.argv[2])))))
    elif cmd == "portrun":
        print(" ".join(str(free_run(int(sys.argv[2]))) for _ in range(int(sys.argv[3]))))
    elif cmd == "snap":
        print(" ".join(map(str, snap(int(sys.argv[2])))))
    elif cmd == "reset":
        sys.exit(0 if reset_hwm(int(sys.argv[2])) else 1)
    elif cmd == "h2stats":
        print(" ".join(map(str, h2stats(sys.argv[2]))))
    elif cmd == "idle":
        idle(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
    elif cmd == "hapinfo":
        hapinfo(sys.argv[2])
    elif cmd == "report":
        report(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
PY
PY="python3 $W/lpbench.py"

# wrk: machine-readable summary (done() does not slow the request path, unlike response()).
# wrk's errors.status counts responses with status >= 400; the bench backend and the proxies
# never send 1xx/3xx here, so it equals the number of non-2xx responses.
cat >"$W/stats.lua" <<'LUA'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "LPSTATS requests=%d duration_us=%d p50_us=%d p99_us=%d non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect, e.read, e.write, e.timeout))
end
LUA

CLK_TCK="$(getconf CLK_TCK)"
RESULTS="$W/results.jsonl"
IDLE_RESULTS="$W/idle.jsonl"
: >"$RESULTS"
: >"$IDLE_RESULTS"

read -r P_LEADER P_F1 P_F2 P_PROXY P_PROXY_H2 P_ADMIN P_PROXY_TLS <<<"$($PY ports 7)"

wait_http() { # url [expected status] [tries]
  local url="$1" want="${2:-200}" tries="${3:-100}" code
  for _ in $(seq "$tries"); do
    code="$(curl -sk -o /dev/null -m 1 -w '%{http_code}' "$url" 2>/dev/null || true)"
    [[ "$code" == "$want" ]] && return 0
    sleep 0.1
  done
  return 1
}

start_bg() { # logfile cmd...  -> sets LAST_PID
  local logf="$1"; shift
  "$@" >"$logf" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}

stop_pid() {
  local p="$1"
  kill -TERM "$p" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  local keep=() q
  for q in "${PIDS[@]}"; do [[ "$q" != "$p" ]] && keep+=("$q"); done
  PIDS=("${keep[@]}")
}

# ---------------------------------------------------------------- backends
if [[ "$HTTP" != 0 ]]; then
  start_bg "$W/backend-leader.log" "$BENCH_BACKEND" --listen "127.0.0.1:$P_LEADER" --role leader
  start_bg "$W/backend-f1.log" "$BENCH_BACKEND" --listen "127.0.0.1:$P_F1" --role follower
  start_bg "$W/backend-f2.log" "$BENCH_BACKEND" --listen "127.0.0.1:$P_F2" --role follower
  for p in "$P_LEADER" "$P_F1" "$P_F2"; do wait_http "http://127.0.0.1:$p/" || die "backend on $p did not start"; done
  wait_http "http://127.0.0.1:$P_LEADER/leader" 200 || die "leader backend does not answer /leader with 200"
  log "backends: leader :$P_LEADER, followers :$P_F1 :$P_F2"
fi

# ---------------------------------------------------------------- TLS material
# One self-signed certificate (SANs 127.0.0.1, localhost) for every proxy's TLS listener.
TLS_DESC=""
HAP_TLS_BIND=""
NGX_TLS=""
if [[ "$SKIP_TLS" != 1 ]]; then
  mkdir -p "$W/tls"
  if [[ "$TLS_KEY" == rsa ]]; then keyopt=(-newkey rsa:2048); TLS_DESC="RSA 2048"
  else keyopt=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1); TLS_DESC="ECDSA P-256"; fi
  openssl req -x509 "${keyopt[@]}" -nodes -days 2 -subj "/CN=localhost" \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -keyout "$W/tls/key.pem" -out "$W/tls/cert.pem" >"$W/tls/openssl.log" 2>&1 ||
    { cat "$W/tls/openssl.log" >&2; die "openssl could not make the test certificate"; }
  cat "$W/tls/cert.pem" "$W/tls/key.pem" >"$W/tls/haproxy.pem" # HAProxy wants both in one file
  HAP_TLS_BIND="  bind 127.0.0.1:$P_PROXY_TLS ssl crt $W/tls/haproxy.pem alpn h2,http/1.1"
  NGX_TLS="    listen 127.0.0.1:$P_PROXY_TLS ssl http2 backlog=4096;
    ssl_certificate $W/tls/cert.pem;
    ssl_certificate_key $W/tls/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;   # 1.22's default stops at TLSv1.2; the others negotiate 1.3"
  log "TLS rows: self-signed $TLS_DESC certificate in $W/tls, proxies listen for TLS on :$P_PROXY_TLS"
fi

# ---------------------------------------------------------------- proxy configs
HAP_EXTRA=""
((NOFILE < 65536)) && HAP_EXTRA="  no strict-limits   # fd hard limit $NOFILE < 2*maxconn; ~10.3k fds are really needed"
cat >"$W/haproxy.cfg" <<EOF
global
  nbthread 2
  maxconn 20000
  stats socket $W/haproxy.sock mode 600 level user
$HAP_EXTRA

defaults
  mode http
  maxconn 20000
  option http-keep-alive
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-request 10s
  timeout http-keep-alive 60s

frontend fe
  bind 127.0.0.1:$P_PROXY
  bind 127.0.0.1:$P_PROXY_H2 proto h2
$HAP_TLS_BIND
  default_backend followers

backend followers
  balance roundrobin
  http-reuse always
  server f1 127.0.0.1:$P_F1
  server f2 127.0.0.1:$P_F2
EOF

mkdir -p "$W/nginx"
NGX_NOFILE=$((NOFILE < 65536 ? NOFILE : 65536))
cat >"$W/nginx/nginx.conf" <<EOF
worker_processes 2;
worker_rlimit_nofile $NGX_NOFILE;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log warn;
daemon off;
master_process on;
events {
  worker_connections 20000;
  use epoll;
}
http {
  access_log off;
  keepalive_timeout 60s;
  keepalive_requests 100000000;   # default 1000 would force wrk to reconnect
  client_body_temp_path $W/nginx/client_body;
  proxy_temp_path $W/nginx/proxy;
  fastcgi_temp_path $W/nginx/fastcgi;
  uwsgi_temp_path $W/nginx/uwsgi;
  scgi_temp_path $W/nginx/scgi;
  upstream followers {
    server 127.0.0.1:$P_F1;
    server 127.0.0.1:$P_F2;
    keepalive 128;
    keepalive_requests 100000000;
    keepalive_timeout 60s;
  }
  server {
    listen 127.0.0.1:$P_PROXY backlog=4096;
    # nginx 1.22: "http2" on a listen without ssl = h2c prior knowledge only (no HTTP/1.1
    # on that port), so h2c gets its own port.
    listen 127.0.0.1:$P_PROXY_H2 http2 backlog=4096;
$NGX_TLS
    location / {
      proxy_pass http://followers;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF

cat >"$W/leaderproxy.yaml" <<EOF
listen: 127.0.0.1:$P_PROXY
admin: 127.0.0.1:$P_ADMIN
workers: 0
access_log: false
debug_headers: false
backends:
  - { name: leader, url: "http://127.0.0.1:$P_LEADER" }
  - { name: f1, url: "http://127.0.0.1:$P_F1" }
  - { name: f2, url: "http://127.0.0.1:$P_F2" }
health:
  path: /
  method: GET
  interval: 1s
  timeout: 500ms
  rise: 1
  fall: 3
  expect: { status: [200] }
leader:
  path: /leader
  method: GET
  interval: 500ms
  timeout: 300ms
  expect: { status: [200] }
routes:
  - { methods: [GET, HEAD], to: read }
reads: { policy: round_robin, fallback_to_leader: false }
limits: { max_connections: 20000 }
EOF
# TLS applies to every listen address of a leaderproxy process, so the TLS rows run a
# second process with this config: the same one on its own port, with tls: { cert, key }.
if [[ "$SKIP_TLS" != 1 ]]; then
  sed "s|^listen: .*|listen: 127.0.0.1:$P_PROXY_TLS|" "$W/leaderproxy.yaml" >"$W/leaderproxy-tls.yaml"
  printf 'tls: { cert: "%s", key: "%s" }\n' "$W/tls/cert.pem" "$W/tls/key.pem" >>"$W/leaderproxy-tls.yaml"
fi

# ---------------------------------------------------------------- per target
# start_target NAME [tls] -> sets TPID (process to measure, "" for direct), URL_H1, URL_H2
# With tls, both URLs are https:// on the TLS port (leaderproxy: its TLS config).
start_target() {
  local name="$1" tls="${2:-}" lp_config="$W/leaderproxy.yaml"
  TPID=""
  URL_H1="http://127.0.0.1:$P_PROXY/"
  URL_H2="http://127.0.0.1:$P_PROXY_H2/"
  if [[ "$tls" == tls ]]; then
    URL_H1="https://127.0.0.1:$P_PROXY_TLS/"
    URL_H2="$URL_H1"
    lp_config="$W/leaderproxy-tls.yaml"
  fi
  case "$name" in
    direct)
      URL_H1="http://127.0.0.1:$P_F1/"
      URL_H2="$URL_H1"
      return 0
      ;;
    haproxy)
      haproxy -c -q -f "$W/haproxy.cfg" >/dev/null 2>"$W/haproxy-check.log" || { cat "$W/haproxy-check.log" >&2; die "haproxy config"; }
      start_bg "$W/haproxy${tls:+-$tls}.log" haproxy -db -f "$W/haproxy.cfg"
      ;;
    nginx)
      nginx -t -q -e "$W/nginx/error.log" -p "$W/nginx" -c "$W/nginx/nginx.conf" || die "nginx config"
      start_bg "$W/nginx${tls:+-$tls}.log" nginx -e "$W/nginx/error.log" -p "$W/nginx" -c "$W/nginx/nginx.conf"
      ;;
    leaderproxy)
      URL_H2="$URL_H1" # HTTP/1.1 and h2c prior knowledge (or ALPN) on the same port
      "$LEADERPROXY_BIN" check --config "$lp_config" >"$W/leaderproxy-check.log" 2>&1 ||
        { cat "$W/leaderproxy-check.log" >&2; die "leaderproxy check failed"; }
      start_bg "$W/leaderproxy${tls:+-$tls}.log" "$LEADERPROXY_BIN" run --config "$lp_config" --log-level warn
      ;;
  esac
  TPID="$LAST_PID"
  wait_http "$URL_H1" 200 100 || { tail -20 "$W/$name${tls:+-$tls}.log" >&2; die "$name did not start"; }
  if [[ "$name" == leaderproxy ]]; then
    wait_http "http://127.0.0.1:$P_ADMIN/readyz" 200 100 || die "leaderproxy not ready"
    # wait until both followers are in rotation (health rise) so reads are spread like the others
    for _ in $(seq 100); do
      if curl -s -m 1 "http://127.0.0.1:$P_ADMIN/admin/routing" | python3 -c '
import json, sys
t = json.load(sys.stdin)
ok = sum(1 for b in t["backends"] if b["healthy"] and b["role"] == "follower")
sys.exit(0 if ok == 2 and t.get("leader") else 1)' 2>/dev/null; then break; fi
      sleep 0.1
    done
  fi
}

stop_target() { [[ -n "$TPID" ]] && stop_pid "$TPID"; TPID=""; }

record() { # json fields...
  python3 -c 'import json,sys; d={}
for kv in sys.argv[1:]:
    k,v=kv.split("=",1)
    try: v=int(v)
    except ValueError:
        try: v=float(v)
        except ValueError: pass
    d[k]=v
print(json.dumps(d))' round="$ROUND" "$@" >>"$RESULTS"
}

before_run() {
  S0=""
  if [[ -n "$TPID" ]]; then
    $PY reset "$TPID" || log "warning: could not reset VmHWM; peak RSS is since start"
    S0="$($PY snap "$TPID")"
  fi
}

# cpu_fields REQUESTS -> "cpu_us_per_req=... peak_rss_kb=..."
cpu_fields() {
  local reqs="$1"
  if [[ -z "$TPID" || -z "$S0" ]]; then echo "cpu_us_per_req= peak_rss_kb= sys_pct="; return; fi
  local t0 t1 hwm s0 s1
  read -r t0 _ _ _ s0 <<<"$S0"
  read -r t1 hwm _ _ s1 <<<"$($PY snap "$TPID")"
  python3 -c "import sys; t0,t1,r,hz,h,s0,s1=map(float,sys.argv[1:]); print(f'cpu_us_per_req={(t1-t0)*1e6/hz/max(r,1):.2f} peak_rss_kb={int(h)} sys_pct={100*(s1-s0)/max(t1-t0,1):.0f}')" \
    "$t0" "$t1" "$reqs" "$CLK_TCK" "$hwm" "$s0" "$s1"
}

# tls_check TARGET: the TLS port must refuse plain HTTP and answer 200 over TLS; logs what
# was negotiated and whether the server resumes a session (openssl s_client -sess_out/-sess_in).
TLS_NOTES="$W/tls-notes.txt"
: >"$TLS_NOTES"
tls_check() {
  local target="$1" plain code out1 out2 proto alpn tmpkey resumed
  plain="$(curl -s -m 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P_PROXY_TLS/" 2>/dev/null || true)"
  [[ "$plain" == 200 ]] && die "$target answers plain HTTP on its TLS port: the TLS rows would not be TLS"
  code="$(curl -sk -m 2 -o /dev/null -w '%{http_code}' "$URL_H1" 2>/dev/null || true)"
  [[ "$code" == 200 ]] || die "$target: curl -k $URL_H1 answered $code, not 200"
  local req='GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n'
  rm -f "$W/tls/sess.pem"
  # shellcheck disable=SC2059
  out1="$(printf "$req" | timeout -k 2 10 openssl s_client -connect "127.0.0.1:$P_PROXY_TLS" -alpn http/1.1 \
    -ign_eof -sess_out "$W/tls/sess.pem" 2>&1 || true)"
  # shellcheck disable=SC2059
  out2="$(printf "$req" | timeout -k 2 10 openssl s_client -connect "127.0.0.1:$P_PROXY_TLS" -alpn http/1.1 \
    -ign_eof -sess_in "$W/tls/sess.pem" 2>&1 || true)"
  proto="$(echo "$out1" | sed -n 's/^New, \(.*\)$/\1/p' | head -1)"
  tmpkey="$(echo "$out1" | sed -n 's/^\(Server\|Peer\) Temp Key: \([^,]*\).*/\2/p' | head -1)"
  alpn="$(echo "$out1" | sed -n 's/^ALPN protocol: //p' | head -1)"
  if echo "$out2" | grep -q '^Reused,'; then resumed=yes; else resumed=no; fi
  echo "$out1" | grep -q '^HTTP/1.1 200' || die "$target: no HTTP 200 over openssl s_client (see $W)"
  log "  TLS check: plain HTTP on the TLS port refused (curl: ${plain:-000}), curl -k 200; $proto, key exchange ${tmpkey:-?}, ALPN ${alpn:-none}, resumes sessions: $resumed"
  if [[ "$ROUND" == 1 ]]; then # the same in every round: noted once
    printf '  %-12s %s, key exchange %s, resumes sessions: %s\n' "$target" "$proto" "${tmpkey:-?}" "$resumed" >>"$TLS_NOTES"
  fi
}

hap_info() { [[ -S "$W/haproxy.sock" ]] && $PY hapinfo "$W/haproxy.sock" 2>/dev/null || echo '{}'; }
hap_field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2]) or "?")' "$1" "$2"; }

run_wrk() { # target test conns [extra wrk args...]
  local target="$1" test="$2" conns="$3"; shift 3
  local out="$W/$target-$test.wrk"
  # HAProxy over TLS: count its TLS connections, and sample its share of resumed handshakes
  # mid-run (SslFrontendSessionReuse_pct is over the last second): proof that wrk did TLS.
  local hap0="" sampler=""
  if [[ "$target" == haproxy && "$URL_H1" == https://* ]]; then
    hap0="$(hap_info)"
    (sleep $(((DURATION + 1) / 2)); hap_info >"$W/haproxy-$test.mid") &
    sampler=$!
  fi
  before_run
  timeout -k 5 "$RUN_TIMEOUT" wrk -t1 -c"$conns" -d"${DURATION}s" --latency -s "$W/stats.lua" "$@" "$URL_H1" >"$out" 2>&1 || true
  local line
  line="$(grep '^LPSTATS' "$out" || true)"
  if [[ -z "$line" ]]; then
    [[ -n "$sampler" ]] && { wait "$sampler" 2>/dev/null || true; }
    log "wrk failed for $target/$test:"; tail -5 "$out" >&2; return 0
  fi
  local requests duration_us p50_us p99_us non2xx connect read write timeout
  eval "$(echo "${line#LPSTATS }" | tr ' ' '\n' | grep -E '^[a-z0-9_]+=[0-9]+$')"
  local rps
  rps="$(python3 -c "print(${requests}*1e6/max(${duration_us},1))")"
  # shellcheck disable=SC2046
  record target="$target" test="$test" rps="$rps" requests="$requests" p50_us="$p50_us" p99_us="$p99_us" \
    non2xx="$non2xx" sock_errors=$((connect + read + write + timeout)) $(cpu_fields "$requests")
  log "  $test: $(printf '%.0f' "$rps") req/s, p50 ${p50_us}us p99 ${p99_us}us, non-2xx $non2xx, sock errors $((connect + read + write + timeout))"
  if [[ -n "$sampler" ]]; then
    wait "$sampler" 2>/dev/null || true
    local hap1 mid c0 c1 line
    hap1="$(hap_info)"
    mid="$(cat "$W/haproxy-$test.mid" 2>/dev/null || echo '{}')"
    c0="$(hap_field "$hap0" CumSslConns)"
    c1="$(hap_field "$hap1" CumSslConns)"
    line="haproxy $test (round $ROUND): $((c1 - c0)) TLS connections for $requests requests; mid-run $(hap_field "$mid" SslRate) TLS conn/s, $(hap_field "$mid" SslFrontendKeyRate) full handshakes/s, $(hap_field "$mid" SslFrontendSessionReuse_pct)% resumed"
    log "  $line"
    echo "  $line" >>"$TLS_NOTES"
  fi
}

run_h2() { # target [test name prefix]
  local target="$1" test="${2:-h2}-c${H2_CLIENTS}-m${H2_STREAMS}"
  local out="$W/$target-$test.out" lg="$W/$target-$test.log"
  rm -f "$lg"
  before_run
  # http:// URI => h2c with prior knowledge, https:// => TLS with ALPN h2; -D bounds the run in time.
  timeout -k 5 "$RUN_TIMEOUT" h2load -t1 -c"$H2_CLIENTS" -m"$H2_STREAMS" -D "$DURATION" --log-file="$lg" "$URL_H2" >"$out" 2>&1 || true
  # "requests: T total, S started, D done, OK succeeded, F failed, E errored, TO timeout"
  # failed = non-2xx + errored; errored = stream/connection errors (timeouts included).
  local done_n errored rps
  done_n="$(sed -n 's/^requests: .* \([0-9]*\) done.*/\1/p' "$out")"
  errored="$(sed -n 's/^requests: .* \([0-9]*\) errored.*/\1/p' "$out")"
  rps="$(sed -n 's/^finished in .*s, \([0-9.]*\) req\/s.*/\1/p' "$out")"
  if [[ -z "$done_n" || -z "$rps" || ! -s "$lg" ]]; then log "h2load failed for $target:"; tail -5 "$out" >&2; return 0; fi
  local n p50 p99 non2xx
  read -r n p50 p99 non2xx <<<"$($PY h2stats "$lg")"
  # shellcheck disable=SC2046
  record target="$target" test="$test" rps="$rps" requests="$done_n" p50_us="$p50" p99_us="$p99" \
    non2xx="$non2xx" sock_errors="$errored" \
    $(cpu_fields "$done_n")
  log "  $test: $(printf '%.0f' "$rps") req/s, p50 ${p50}us p99 ${p99}us, non-2xx $non2xx, errored $errored"
}

# Full TLS handshakes (wrk resumes sessions): TLS_FULL_PROCS parallel `openssl s_time -new`,
# each one connection at a time: connect, full handshake, GET / (HTTP/1.0), read to close.
TLS_FULL_PROCS=16
run_stime() { # target
  local target="$1" test="tls-full-p$TLS_FULL_PROCS" pids=() i n total=0 bad=0 t0 t1
  before_run
  t0="$(date +%s.%N)"
  for i in $(seq "$TLS_FULL_PROCS"); do
    timeout -k 5 "$RUN_TIMEOUT" openssl s_time -connect "127.0.0.1:$P_PROXY_TLS" -new -time "$DURATION" -www / \
      >"$W/$target-$test.$i.out" 2>&1 </dev/null &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" 2>/dev/null || true; done
  t1="$(date +%s.%N)" # s_time runs a little past -time: rate over the wall time of all of them
  # "N connections in T real seconds, B bytes read per connection"
  for i in $(seq "$TLS_FULL_PROCS"); do
    n="$(sed -n 's/^\([0-9]*\) connections in [0-9.]* real seconds.*/\1/p' "$W/$target-$test.$i.out" | tail -1)"
    if [[ -z "$n" ]]; then bad=$((bad + 1)); else total=$((total + n)); fi
  done
  if ((total == 0)); then log "openssl s_time failed for $target:"; tail -5 "$W/$target-$test.1.out" >&2; return 0; fi
  local rps
  rps="$(python3 -c "print($total/max($t1-$t0,0.001))")"
  # s_time does not check the status (tls_check did) nor time single connections
  # shellcheck disable=SC2046
  record target="$target" test="$test" rps="$rps" requests="$total" p50_us= p99_us= \
    non2xx=- sock_errors="$bad" $(cpu_fields "$total")
  log "  $test: $(printf '%.0f' "$rps") full handshakes + GETs/s ($total in $(printf '%.1f' "$(python3 -c "print($t1-$t0)")")s, $bad s_time processes failed)"
}

run_idle() { # target
  local target="$1"
  [[ "$target" == direct || "$IDLE_CONNS" -le 0 ]] && return 0
  start_target "$target" # fresh process: RSS not inflated by the load runs
  curl -s -o /dev/null "$URL_H1" || true
  sleep 1
  log "  idle: opening $IDLE_CONNS keep-alive connections"
  local res
  res="$(timeout -k 5 180 $PY idle "$P_PROXY" "$IDLE_CONNS" "$TPID" 2 2>"$W/$target-idle.err" || true)"
  res="$(echo "$res" | tail -1)"
  if [[ "$res" == \{* ]]; then
    python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d["target"]=sys.argv[2]; d["round"]=int(sys.argv[3]); print(json.dumps(d))' \
      "$res" "$target" "$ROUND" >>"$IDLE_RESULTS"
    log "  idle: $res"
  else
    log "  idle test failed for $target"; tail -5 "$W/$target-idle.err" >&2
  fi
  stop_target
}

# All HTTP rows of one target in one round: plain, idle, then TLS (each on a fresh process).
http_rows() { # target
  local target="$1"
  if [[ "$IDLE_ONLY" == 1 ]]; then
    log "== $target (idle connections only, round $ROUND/$REPEAT)"
    run_idle "$target"
    return 0
  fi
  log "== $target (round $ROUND/$REPEAT)"
  start_target "$target"
  timeout -k 5 20 wrk -t1 -c64 -d1s "$URL_H1" >/dev/null 2>&1 || true # warm-up (pools, caches)
  run_wrk "$target" h1-ka-c64 64
  sleep 1
  run_wrk "$target" h1-ka-c512 512
  sleep 1
  run_wrk "$target" h1-close-c64 64 -H 'Connection: close'
  sleep 1
  run_h2 "$target"
  if [[ "$target" == leaderproxy ]]; then
    # fairness check: reads must have gone to the two followers only
    curl -s -m 2 "http://127.0.0.1:$P_ADMIN/metrics" >"$W/leaderproxy-metrics.txt" || true
    log "  leaderproxy reads per backend: $(awk '/^leaderproxy_requests_total\{/ && /role="read"/ {
        match($0, /backend="[^"]*"/); b = substr($0, RSTART + 9, RLENGTH - 10); n[b] += $NF }
      END { for (b in n) if (n[b] > 0) printf "%s=%d ", b, n[b] }' "$W/leaderproxy-metrics.txt")"
  fi
  stop_target
  sleep 1
  run_idle "$target"
  if [[ "$SKIP_TLS" != 1 && "$target" != direct ]]; then
    log "== $target (TLS, round $ROUND/$REPEAT)"
    start_target "$target" tls # fresh process (leaderproxy: the TLS config)
    tls_check "$target"
    timeout -k 5 20 wrk -t1 -c64 -d1s "$URL_H1" >/dev/null 2>&1 || true # warm-up
    run_wrk "$target" h1-tls-ka-c64 64
    sleep 1
    run_wrk "$target" h1-tls-close-c64 64 -H 'Connection: close'
    sleep 1
    run_h2 "$target" h2-tls
    sleep 1
    run_stime "$target"
    stop_target
    sleep 1
  fi
}

log "duration ${DURATION}s per run, $REPEAT rounds; targets: $TARGETS"
if [[ "$HTTP" != 0 ]]; then
  for ROUND in $(seq "$REPEAT"); do
    for target in $TARGETS; do http_rows "$target"; done
  done
fi

# ---------------------------------------------------------------- TCP rows (PostgreSQL)
# The Patroni cluster of tests/support/patroni.sh on free ports, stopped on exit.
PATRONI="$ROOT/tests/support/patroni.sh"
pg_cluster_up() {
  local etcd rest pg hap
  # patroni.sh numbers each kind of port from a base: runs of 3 free ports
  read -r etcd rest pg hap <<<"$($PY portrun 3 4)"
  # not under $W (mode 700): run as root, patroni.sh runs PostgreSQL as `postgres`, which must reach it
  PG_DIR="$(mktemp -d /tmp/lp-compare-pg.XXXXXX)"
  PATRONI_ETCD_PORT=$etcd PATRONI_REST_PORT=$rest PATRONI_PG_PORT=$pg PATRONI_HAPROXY_PORT=$hap \
    bash "$PATRONI" up "$PG_DIR" >&2
  PG_UP=1
  # shellcheck disable=SC1091
  source "$PG_DIR/env"
  PG_LEADER="$(bash "$PATRONI" leader "$PG_DIR")"
  local n i=0
  for n in pg1 pg2 pg3; do
    [[ $n == "$PG_LEADER" ]] || { PG_REPLICA_PORT=$((PG_PORT + i)); break; }
    i=$((i + 1))
  done
  PG_LEADER_PORT=$((PG_PORT + ${PG_LEADER#pg} - 1))
}
pg_cluster_down() {
  [[ "${PG_UP:-0}" == 1 ]] || return 0
  bash "$PATRONI" down "$PG_DIR" >&2 || true
  if [[ "${KEEP_WORKDIR:-0}" == 1 ]]; then log "cluster dir kept: $PG_DIR"; else rm -rf "$PG_DIR"; fi
}

# start_pg_target NAME -> TPID (process measured, "" for direct), PG_TARGET_PORT
start_pg_target() {
  TPID=""
  case "$1" in
    direct) PG_TARGET_PORT="$PG_REPLICA_PORT" ;;
    haproxy)
      bash "$PATRONI" haproxy "$PG_DIR" >/dev/null
      TPID="$(cat "$PG_DIR/haproxy/haproxy.pid")"
      PG_TARGET_PORT=$((HAPROXY_PORT + 1)) # Patroni's read port (/replica)
      ;;
    leaderproxy)
      read -r P_PG_WRITE P_PG_READ P_PG_ADMIN <<<"$($PY ports 3)"
      {
        echo "preset: patroni"
        echo "leader: { expect: { status: [200], json: { pointer: /role, equals: master } } }"
        echo "admin: 127.0.0.1:$P_PG_ADMIN"
        echo "tcp:"
        echo "  - { listen: \"127.0.0.1:$P_PG_WRITE\", to: write }"
        echo "  - { listen: \"127.0.0.1:$P_PG_READ\", to: read }"
        echo "backends:"
        for i in 0 1 2; do
          echo "  - { name: pg$((i + 1)), url: \"http://127.0.0.1:$((REST_PORT + i))\", tcp: \"127.0.0.1:$((PG_PORT + i))\" }"
        done
      } >"$W/leaderproxy-pg.yaml"
      "$LEADERPROXY_BIN" check --config "$W/leaderproxy-pg.yaml" >"$W/leaderproxy-pg-check.log" 2>&1 ||
        { cat "$W/leaderproxy-pg-check.log" >&2; die "leaderproxy check (pg) failed"; }
      start_bg "$W/leaderproxy-pg.log" "$LEADERPROXY_BIN" run --config "$W/leaderproxy-pg.yaml" --log-level warn
      TPID="$LAST_PID"
      # ready, and reading from both replicas
      for _ in $(seq 150); do
        if curl -s -m 1 "http://127.0.0.1:$P_PG_ADMIN/admin/routing" | python3 -c '
import json, sys
t = json.load(sys.stdin)
sys.exit(0 if t.get("leader") and len(t["followers"]) == 2 else 1)' 2>/dev/null; then break; fi
        sleep 0.1
      done
      PG_TARGET_PORT="$P_PG_READ"
      ;;
  esac
}
stop_pg_target() {
  case "$1" in
    haproxy) bash "$ROOT/tests/support/haproxy.sh" down "$PG_DIR/haproxy" ;;
    leaderproxy) stop_target ;;
  esac
  TPID=""
}

# run_pgbench TARGET TEST CLIENTS [pgbench args...]
run_pgbench() {
  local target="$1" test="$2" clients="$3" out tps lat failed aborted txns
  shift 3
  before_run
  out="$(PGPASSWORD=postgres timeout -k 5 "$RUN_TIMEOUT" pgbench -n -h 127.0.0.1 -p "$PG_TARGET_PORT" -U postgres \
    -c "$clients" -j 2 -T "$DURATION" "$@" postgres 2>&1)" || true
  echo "$out" >"$W/pgbench-$target-$test.txt"
  tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out" | tail -1)"
  lat="$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out")"
  txns="$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")"
  failed="$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' <<<"$out")"
  aborted="$(grep -c 'aborted in command\|client [0-9]* aborted' <<<"$out" || true)"
  [[ -n "$tps" && -n "$txns" ]] || { log "  $test: pgbench failed: $(tail -3 <<<"$out")"; tps=0 txns=0; }
  # shellcheck disable=SC2046
  record target="$target" test="$test" rps="$tps" p50_us="$(python3 -c "print(${lat:-0} * 1000)")" p99_us= \
    non2xx="${failed:-0}" sock_errors="$aborted" $(cpu_fields "$txns")
  log "  $test: $(printf '%.0f' "$tps") tps, latency average ${lat:-?} ms, failed ${failed:-?}, aborted clients $aborted"
}

if [[ "$PG" != 0 ]]; then
  log "== PostgreSQL (Patroni) TCP rows"
  trap 'rc=$?; pg_cluster_down; (exit $rc); cleanup' EXIT
  pg_cluster_up
  PGPASSWORD=postgres pgbench -q -i -s 10 -h 127.0.0.1 -p "$PG_LEADER_PORT" -U postgres postgres >"$W/pgbench-init.log" 2>&1 ||
    { tail -5 "$W/pgbench-init.log" >&2; die "pgbench -i failed"; }
  bash "$PATRONI" wait "$PG_DIR" >/dev/null # the replicas replayed it
  for ROUND in $(seq "$REPEAT"); do
    for target in $TARGETS; do
      [[ "$target" == nginx ]] && continue # no PostgreSQL routing in nginx's stream module here
      log "== $target (PostgreSQL, read port, round $ROUND/$REPEAT)"
      start_pg_target "$target"
      run_pgbench "$target" pg-S-c16 16 -S -M prepared
      stop_pg_target "$target"
      sleep 1
    done
  done
fi

echo
echo "leaderproxy compare: $(nproc) cores, $(uname -r), ${DURATION}s per run, $REPEAT rounds (interleaved), wrk -t1, h2load -t1 -c$H2_CLIENTS -m$H2_STREAMS"
echo "  haproxy $(haproxy -v 2>/dev/null | head -1 | awk '{print $3}'), nginx $(nginx -v 2>&1 | sed 's|.*nginx/||')$(
  [[ " $TARGETS " == *" leaderproxy "* ]] && echo ", $("$LEADERPROXY_BIN" --version 2>/dev/null | head -1)")"
echo "  CPU = utime+stime of all the proxy's processes over the run / requests; peak RSS = sum of VmHWM (reset before each run)"
echo "  direct = wrk/h2load straight to one follower (no proxy; no CPU/RSS column)"
echo "  absolute columns: medians over the rounds; ratios: median of the per-round ratios (min-max over the rounds)"
echo "  kernel = the share of the proxy's CPU spent in the kernel (stime / (utime + stime))"
if [[ "$SKIP_TLS" != 1 && -s "$TLS_NOTES" ]]; then
  echo "  TLS rows: the proxy terminates TLS (self-signed $TLS_DESC certificate), plain HTTP to the backends;"
  echo "  h1-tls-close = new TCP connection + TLS handshake per request (wrk resumes the previous session);"
  echo "  tls-full-p$TLS_FULL_PROCS = $TLS_FULL_PROCS x openssl s_time -new: full handshake + GET per connection (req/s = connections/s)"
  cat "$TLS_NOTES"
fi
echo
$PY report "$RESULTS" "$IDLE_RESULTS"
