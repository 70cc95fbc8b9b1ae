#!/usr/bin/env bash
# Leader failover under write load: leaderproxy vs HAProxy in front of a real
# 3-member etcd 3.4 cluster on 127.0.0.1.
#
# Each run (benches/failover.rs, `--example failover`) starts a fresh cluster and
# the front, runs WRITERS keep-alive writers of unique v2 keys, SIGKILLs the
# leader after BEFORE seconds, keeps writing AFTER seconds (and >= 2s after the
# new leader appeared), quorum-reads every key back and reports:
#   failed  writes without a 2xx answer (writers do not retry, see FAIL_PAUSE_MS)
#   lost    acknowledged writes missing afterwards
#   pause   longest gap between two consecutive acknowledgements (all writers)
#   elect   etcd election time: reaping of the killed leader -> first 200 on
#           /v2/stats/leader from a surviving member
# HAProxy is tuned the usual way: option httpchk GET /v2/stats/leader,
# inter 200ms fall 2 rise 1, on-marked-down shutdown-sessions, option redispatch,
# retries 3 (full config: benches/failover.rs, haproxy_config).
#
# Environment:
#   RUNS=1              runs per front (alternating); with RUNS>1 a median row is added
#   QUICK=1             BEFORE=2 AFTER=3 (default BEFORE=3 AFTER=4)
#   BEFORE=3 AFTER=4    seconds of load before / after the kill
#   WRITERS=8           concurrent writers
#   FAIL_PAUSE_MS=0     writers sleep this long after a failed write
#   FRONTS="leaderproxy haproxy"
#   SKIP_BUILD=1        do not run cargo (use target/release binaries)
#   NO_INSTALL=1        never run apt-get
#   LEADERPROXY_BIN     leaderproxy binary (default target/release/leaderproxy)
#
# Usage: bash benches/failover_vs_haproxy.sh
#        QUICK=1 RUNS=3 bash benches/failover_vs_haproxy.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"

RUNS="${RUNS:-1}"
if [[ "${QUICK:-0}" == 1 ]]; then BEFORE="${BEFORE:-2}"; AFTER="${AFTER:-3}"; fi
BEFORE="${BEFORE:-3}"
AFTER="${AFTER:-4}"
WRITERS="${WRITERS:-8}"
FAIL_PAUSE_MS="${FAIL_PAUSE_MS:-0}"
FRONTS="${FRONTS:-leaderproxy haproxy}"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || { echo "RUNS must be a positive integer" >&2; exit 2; }
# hard bound per run (the example has its own watchdog at before+after+90s)
RUN_TIMEOUT=$(awk -v b="$BEFORE" -v a="$AFTER" 'BEGIN { printf "%d", b + a + 120 }')

log() { printf '[failover %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- tools
missing=()
[[ -x /usr/bin/etcd ]] || missing+=(etcd-server)
command -v haproxy >/dev/null || [[ -x /usr/sbin/haproxy ]] || missing+=(haproxy)
if [[ ${#missing[@]} -gt 0 ]]; then
  [[ "${NO_INSTALL:-0}" == 1 ]] && die "missing packages: ${missing[*]} (NO_INSTALL=1)"
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  log "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
# the Debian etcd-server package starts a system etcd on 2379/2380; the runs use
# free ports, so it does not matter, but say so
log "etcd: $(/usr/bin/etcd --version 2>/dev/null | head -1); $(haproxy -v 2>/dev/null | head -1 || /usr/sbin/haproxy -v | head -1)"

# ---------------------------------------------------------------- build
cd "$ROOT"
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  log "cargo build --release --bin leaderproxy --example failover"
  cargo build --release --bin leaderproxy --example failover
fi
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
EXAMPLE="$TARGET_DIR/release/examples/failover"
export LEADERPROXY_BIN="${LEADERPROXY_BIN:-$TARGET_DIR/release/leaderproxy}"
[[ -x "$EXAMPLE" ]] || die "$EXAMPLE not built"
[[ -x "$LEADERPROXY_BIN" ]] || die "$LEADERPROXY_BIN not built"

# ---------------------------------------------------------------- runs
WORK="$(mktemp -d "${TMPDIR:-/tmp}/failover-bench.XXXXXX")"
RESULTS="$WORK/results"
: >"$RESULTS"
RUN_PGID=""

cleanup() {
  # the example runs in its own session: its process group holds it, etcd and the front
  if [[ -n "$RUN_PGID" ]]; then kill -KILL -- "-$RUN_PGID" 2>/dev/null || true; fi
  RUN_PGID=""
}
trap 'cleanup; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

# run_one FRONT RUN -> appends the result line to $RESULTS, prints the breakdown
run_one() {
  local front="$1" run="$2" out="$WORK/$1-$2.out" pid rc=0 waited=0
  log "run $run/$RUNS: $front (writers=$WRITERS before=${BEFORE}s after=${AFTER}s)"
  setsid "$EXAMPLE" --front "$front" --seconds-before "$BEFORE" --seconds-after "$AFTER" \
    --writers "$WRITERS" --fail-pause-ms "$FAIL_PAUSE_MS" >"$out" 2>&1 &
  pid=$!
  RUN_PGID="$pid"
  while kill -0 "$pid" 2>/dev/null; do
    if ((waited >= RUN_TIMEOUT * 10)); then
      log "run exceeded ${RUN_TIMEOUT}s, killing it"
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  cleanup
  wait "$pid" || rc=$?
  if ! grep -q "^front=$front " "$out"; then
    cat "$out" >&2
    die "run $run of $front failed (exit $rc)"
  fi
  grep "^front=$front " "$out" | sed "s/^/run=$run /" >>"$RESULTS"
  grep -v "^front=" "$out" | sed "s/^/    /" >&2 || true
}

for run in $(seq 1 "$RUNS"); do
  for front in $FRONTS; do
    run_one "$front" "$run"
  done
done

# ---------------------------------------------------------------- table
echo
echo "etcd 3.4 x3, SIGKILL of the leader after ${BEFORE}s, ${WRITERS} writers (v2 PUT, keep-alive), ${AFTER}s after the kill"
awk -v runs="$RUNS" -v fronts="$FRONTS" '
function kv(line, key,   n, i, a, p) {
  n = split(line, a, " ")
  for (i = 1; i <= n; i++) { p = index(a[i], "="); if (substr(a[i], 1, p - 1) == key) return substr(a[i], p + 1) }
  return ""
}
function median(list,   n, a, i, j, t) {
  n = split(list, a, " ")
  for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
  return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
BEGIN {
  fmt = "%-12s %4s %8s %8s %6s %15s %14s %21s\n"
  printf fmt, "front", "run", "writes", "failed", "lost", "longest pause", "election time", "failed but committed"
}
{
  f = kv($0, "front")
  row[f] = row[f] sprintf(fmt, f, kv($0, "run"), kv($0, "writes"), kv($0, "failed"), kv($0, "lost"),
    kv($0, "longest_pause_ms") " ms", kv($0, "election_ms") " ms", kv($0, "failed_but_committed"))
  for (k = 1; k <= 6; k++) {
    key = (k == 1) ? "writes" : (k == 2) ? "failed" : (k == 3) ? "lost" : (k == 4) ? "longest_pause_ms" : (k == 5) ? "election_ms" : "failed_but_committed"
    vals[f, key] = vals[f, key] " " kv($0, key)
  }
}
END {
  n = split(fronts, fl, " ")
  for (i = 1; i <= n; i++) {
    f = fl[i]
    printf "%s", row[f]
    if (runs > 1)
      printf fmt, f, "med", median(vals[f, "writes"]), median(vals[f, "failed"]), median(vals[f, "lost"]),
        median(vals[f, "longest_pause_ms"]) " ms", median(vals[f, "election_ms"]) " ms", median(vals[f, "failed_but_committed"])
  }
}' "$RESULTS"
echo
echo "raw:"
cat "$RESULTS"
