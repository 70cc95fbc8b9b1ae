#!/usr/bin/env bash
# User-space instructions per keep-alive request, repeatable on a shared box:
# leaderproxy (one worker) runs under valgrind's callgrind in front of two
# bench_backend servers; `h2load --h1 -n N -c 1` sends N GETs through it, and
# the instructions of an idle run of the same length are subtracted.
#
#   benches/callgrind.sh [BINARY] [N]     (default: target/release/leaderproxy, 2000)
#   CG_OUT=/tmp/cg.out benches/callgrind.sh ...   also keeps the loaded run's profile
#
# Needs valgrind, h2load (nghttp2-client), curl, and the bench backend
# (`cargo build --release --example bench_backend`). Everything listens on
# 127.0.0.1 (ports 18100-18199); the load is N requests on one connection.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${1:-$ROOT/target/release/leaderproxy}"
N="${2:-2000}"
BACKEND="${BENCH_BACKEND:-$ROOT/target/release/examples/bench_backend}"
W="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT

"$BACKEND" --listen 127.0.0.1:18101 --role leader >/dev/null 2>&1 & PIDS+=($!)
"$BACKEND" --listen 127.0.0.1:18102 --role follower >/dev/null 2>&1 & PIDS+=($!)
cat > "$W/lp.yaml" <<YAML
listen: 127.0.0.1:18100
admin: 127.0.0.1:18199
workers: 1
backends:
  - { name: l, url: "http://127.0.0.1:18101" }
  - { name: f, url: "http://127.0.0.1:18102" }
health: { path: /role, interval: 1s, timeout: 500ms }
leader: { path: /leader, interval: 1s, timeout: 500ms, expect: { status: [200] } }
routes: [ { methods: [GET], to: read } ]
YAML

# Runs the proxy under callgrind for $1 requests (0: stays idle 3 s); prints
# the program's total instructions.
measure() {
  valgrind --tool=callgrind --callgrind-out-file="$W/cg.out" "$BIN" run --config "$W/lp.yaml" >/dev/null 2>&1 &
  local v=$!
  local ready=0
  for _ in $(seq 150); do
    if curl -sf http://127.0.0.1:18199/readyz >/dev/null; then ready=1; break; fi
    sleep 0.2
  done
  # (measure runs in a subshell: the EXIT trap does not see $v, so kill it here.)
  [[ $ready == 1 ]] || { echo "callgrind.sh: the proxy did not get ready" >&2; kill "$v" 2>/dev/null; exit 1; }
  curl -s http://127.0.0.1:18100/warm >/dev/null || true
  if [[ "$1" -gt 0 ]]; then
    timeout 300 h2load --h1 -n "$1" -c 1 http://127.0.0.1:18100/x >/dev/null 2>&1
  else
    sleep 3
  fi
  kill -INT "$v"
  wait "$v" 2>/dev/null || true
  # awk reads to the end: an early exit would kill callgrind_annotate (pipefail).
  callgrind_annotate "$W/cg.out" 2>/dev/null | awk '/PROGRAM TOTALS/ && !seen { gsub(",", "", $1); print $1; seen = 1 }'
}

total=$(measure "$N")
# CG_OUT=path keeps the loaded run's profile (for callgrind_annotate).
[[ -n "${CG_OUT:-}" ]] && cp "$W/cg.out" "$CG_OUT"
idle=$(measure 0)
echo "$(basename "$BIN"): requests=$N total=$total idle=$idle instructions_per_request=$(( (total - idle) / N ))"
