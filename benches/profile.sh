#!/usr/bin/env bash
# Where a keep-alive HTTP/1.1 request's CPU goes, leaderproxy next to
# HAProxy under the same load (issue 20): each proxy in turn in front of the
# same two bench backends, `wrk -t1 -c$CONNS` keep-alive GETs for
# $DURATION s; over the middle of the run `perf stat` counts the proxy's
# task-clock, context switches and system calls, and `perf record -g`
# samples it. Printed per proxy: requests/s, CPU µs per request, the
# kernel's share of the samples, system calls and context switches per
# request, the top kernel and user-space symbols (self time).
#
#   benches/profile.sh                       (CONNS=64 DURATION=8)
#   H2=1 benches/profile.sh                  h2c instead: h2load -t1 -c16 -m16
#   KEEP=/tmp/prof benches/profile.sh        keeps perf.data per proxy there
#
# Needs perf (Debian linux-perf), wrk (h2load for H2=1), haproxy and the bench backend
# (`cargo build --release --example bench_backend`); run as root or with
# kernel.perf_event_paranoid <= 1. Everything listens on 127.0.0.1 (ports
# 18300-18399); each load is bounded by DURATION.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${LEADERPROXY_BIN:-$ROOT/target/release/leaderproxy}"
BACKEND="${BENCH_BACKEND:-$ROOT/target/release/examples/bench_backend}"
CONNS="${CONNS:-64}"
DURATION="${DURATION:-8}"
H2="${H2:-0}"
W="$(mktemp -d)"
KEEP="${KEEP:-}"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; [[ -n "${KEEP_W:-}" ]] || rm -rf "$W"; }
trap cleanup EXIT
log() { printf '[profile %s] %s\n' "$(date +%T)" "$*" >&2; }

for tool in perf wrk haproxy; do
  command -v "$tool" >/dev/null || [[ -x /usr/sbin/$tool ]] || { log "missing $tool"; exit 1; }
done
PATH="$PATH:/usr/sbin"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

"$BACKEND" --listen 127.0.0.1:18301 --role leader >/dev/null 2>&1 & PIDS+=($!)
"$BACKEND" --listen 127.0.0.1:18302 --role follower >/dev/null 2>&1 & PIDS+=($!)
"$BACKEND" --listen 127.0.0.1:18303 --role follower >/dev/null 2>&1 & PIDS+=($!)

cat >"$W/haproxy.cfg" <<EOF
global
  nbthread 2
  maxconn 4000
defaults
  mode http
  maxconn 4000
  option http-keep-alive
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend fe
  bind 127.0.0.1:18310
  bind 127.0.0.1:18311 proto h2
  default_backend followers
backend followers
  balance roundrobin
  http-reuse always
  server f1 127.0.0.1:18302
  server f2 127.0.0.1:18303
EOF

cat >"$W/lp.yaml" <<EOF
listen: 127.0.0.1:18320
admin: 127.0.0.1:18399
workers: 0
access_log: false
debug_headers: false
backends:
  - { name: leader, url: "http://127.0.0.1:18301" }
  - { name: f1, url: "http://127.0.0.1:18302" }
  - { name: f2, url: "http://127.0.0.1:18303" }
health: { path: /, interval: 1s, timeout: 500ms, expect: { status: [200] } }
leader: { path: /leader, interval: 500ms, timeout: 300ms, expect: { status: [200] } }
routes:
  - { methods: [GET, HEAD], to: read }
reads: { policy: round_robin, fallback_to_leader: false }
limits: { max_connections: 4000 }
EOF

wait_up() {
  for _ in $(seq 100); do
    curl -fs -o /dev/null "http://127.0.0.1:$1/" && return 0
    sleep 0.1
  done
  log "port $1 never answered"; exit 1
}

# Profiles proxy process $2 (named $1) listening on port $3.
profile() {
  local name="$1" pid="$2" port="$3" window=$((DURATION / 2))
  if [[ "$H2" == 1 ]]; then
    h2load -t1 -c16 -m16 -D "$DURATION" "http://127.0.0.1:$port/" >"$W/$name.wrk" 2>&1 &
  else
    wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$port/" >"$W/$name.wrk" 2>&1 &
  fi
  local wrk=$!
  sleep $((DURATION / 4))
  local t0 t1
  t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  perf stat -e task-clock,context-switches,raw_syscalls:sys_enter -p "$pid" -o "$W/$name.stat" -- sleep "$window" &
  perf record -q -e cpu-clock -F 999 -g -p "$pid" -o "$W/$name.data" -- sleep "$window" >/dev/null 2>&1
  wait $! || true
  t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  wait "$wrk"
  local rps
  rps=$(awk '/Requests\/sec/ {print $2} /^finished in/ {sub(",", "", $4); print $4}' "$W/$name.wrk")
  local reqs
  reqs=$(awk -v r="$rps" -v w="$window" 'BEGIN {printf "%d", r * w}')
  local ticks=$(( t1 - t0 )) hz
  hz=$(getconf CLK_TCK)
  local calls switches
  calls=$(awk '/raw_syscalls:sys_enter/ {gsub(",", "", $1); print $1}' "$W/$name.stat")
  switches=$(awk '/context-switches/ {gsub(",", "", $1); print $1}' "$W/$name.stat")
  local load="wrk -t1 -c$CONNS"
  [[ "$H2" == 1 ]] && load="h2load -t1 -c16 -m16"
  printf '\n== %s: %s req/s (%s, %ss); %s\n' "$name" "$rps" "$load" "$DURATION" \
    "$(awk '/99%/ {print "p99 " $2}' "$W/$name.wrk")"
  awk -v t="$ticks" -v hz="$hz" -v n="$reqs" -v c="$calls" -v s="$switches" 'BEGIN {
    printf "   CPU %.1f us/request; %.2f system calls and %.3f context switches per request\n",
      t / hz * 1e6 / n, c / n, s / n }'
  perf report -i "$W/$name.data" --no-children --sort dso --stdio 2>/dev/null |
    awk '/^ +[0-9.]+%/ {printf "   %-8s %s\n", $1, $2}' | head -6 || true
  echo "   top kernel symbols (self):"
  perf report -i "$W/$name.data" --no-children --sort sym --stdio 2>/dev/null |
    awk '/^ +[0-9.]+%/ && /\[k\]/ {printf "     %-8s %s\n", $1, $NF}' | head -12 || true
  echo "   top user-space symbols (self):"
  perf report -i "$W/$name.data" --no-children --sort sym --stdio 2>/dev/null |
    awk '/^ +[0-9.]+%/ && /\[\.\]/ {p=$1; sub(/^.*\[\.\] /, ""); printf "     %-8s %s\n", p, $0}' | head -12 || true
  [[ -n "$KEEP" ]] && { mkdir -p "$KEEP"; cp "$W/$name.data" "$KEEP/$name.perf.data"; }
  return 0
}

haproxy -db -f "$W/haproxy.cfg" >"$W/haproxy.log" 2>&1 & PIDS+=($!); HAP=$!
"$BIN" run --config "$W/lp.yaml" >"$W/lp.log" 2>&1 & PIDS+=($!); LP=$!
wait_up 18310
wait_up 18320
log "haproxy $(haproxy -v | head -1 | awk '{print $3}'), leaderproxy $BIN; $(nproc) cores"
if [[ "$H2" == 1 ]]; then
  profile haproxy "$HAP" 18311
else
  profile haproxy "$HAP" 18310
fi
profile leaderproxy "$LP" 18320
