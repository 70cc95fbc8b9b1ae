#!/usr/bin/env bash
# The TCP copy path side by side: redis-benchmark straight to redis-server,
# through HAProxy in TCP mode, and through a leaderproxy `tcp` write listener.
# leaderproxy's leader probe goes to a bench_backend (`/leader` answers 200),
# the bytes to redis-server: only the copy path is measured, not a probe.
#
#   benches/tcp_compare.sh            (REPEAT=3 N=300000 by default)
#
# Rows: GET and SET with -P 16 (pipelined, 50 clients), and GET without
# pipelining (-P 1, 50 clients): requests/s, proxy CPU µs per request (utime +
# stime of the proxy process from /proc), ratio to HAProxy. Then the memory
# of idle TCP connections: RSS growth per connection with IDLE_CONNS (2000)
# connections open through each proxy.
#
# Environment: LEADERPROXY_BIN (default target/release/leaderproxy),
# BENCH_BACKEND (default target/release/examples/bench_backend), REPEAT, N,
# IDLE_CONNS. Everything listens on 127.0.0.1 (ports 18300-18399); every
# load is bounded (N requests, a 120 s timeout per run).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${LEADERPROXY_BIN:-$ROOT/target/release/leaderproxy}"
BACKEND="${BENCH_BACKEND:-$ROOT/target/release/examples/bench_backend}"
REPEAT="${REPEAT:-3}"
N="${N:-300000}"
IDLE_CONNS="${IDLE_CONNS:-2000}"
W="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT

REDIS=18301 HAPROXY=18302 LP=18303 LP_ADMIN=18399 PROBE=18304
redis-server --port "$REDIS" --bind 127.0.0.1 --save "" --appendonly no --daemonize no >/dev/null 2>&1 & PIDS+=($!)
"$BACKEND" --listen "127.0.0.1:$PROBE" --role leader >/dev/null 2>&1 & PIDS+=($!)
cat > "$W/haproxy.cfg" <<CFG
global
  nbthread 2
defaults
  mode tcp
  timeout connect 1s
  timeout client 30m
  timeout server 30m
listen redis
  bind 127.0.0.1:$HAPROXY
  server r 127.0.0.1:$REDIS
CFG
cat > "$W/lp.yaml" <<YAML
admin: 127.0.0.1:$LP_ADMIN
workers: 2
tcp:
  - { listen: "127.0.0.1:$LP", to: write }
backends:
  - { name: r, url: "http://127.0.0.1:$PROBE", tcp: "127.0.0.1:$REDIS" }
leader: { path: /leader, interval: 1s, timeout: 500ms, expect: { status: [200] } }
health: { path: /role, interval: 1s, timeout: 500ms }
YAML
haproxy -f "$W/haproxy.cfg" >/dev/null 2>&1 & PIDS+=($!); HAPROXY_PID=$!
"$BIN" run --config "$W/lp.yaml" >"$W/lp.log" 2>&1 & PIDS+=($!); LP_PID=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$LP_ADMIN/admin/routing" | grep -q '"leader":{' && break
  sleep 0.1
done

# run PORT PID ARGS... and ratio A B
# shellcheck source=benches/redis_benchmark_run.sh
source "$ROOT/benches/redis_benchmark_run.sh"

printf '%-10s %-12s %10s %12s %10s %12s\n' test target req/s "vs HAProxy" "CPU us/req" "vs HAProxy"
for row in "GET -P 16:-t get -P 16" "SET -P 16:-t set -P 16" "GET -P 1:-t get -P 1"; do
  name="${row%%:*}"; args="${row#*:}"
  declare -A rps=() cpu=()
  for target in direct haproxy leaderproxy; do
    case $target in
      direct) port=$REDIS pid=${PIDS[0]} ;;
      haproxy) port=$HAPROXY pid=$HAPROXY_PID ;;
      leaderproxy) port=$LP pid=$LP_PID ;;
    esac
    vals=()
    for _ in $(seq "$REPEAT"); do
      # shellcheck disable=SC2086
      vals+=("$(run "$port" "$pid" $args)")
    done
    # The median run by requests/s.
    med=$(printf '%s\n' "${vals[@]}" | sort -n | sed -n "$(( (REPEAT + 1) / 2 ))p")
    rps[$target]=${med% *}; cpu[$target]=${med#* }
  done
  for target in direct haproxy leaderproxy; do
    r=${rps[$target]}; c=${cpu[$target]}
    if [[ $target == direct ]]; then
      printf '%-10s %-12s %10s %12s %10s %12s\n' "$name" "$target" "$r" - - -
    else
      printf '%-10s %-12s %10s %11sx %10s %11sx\n' "" "$target" "$r" \
        "$(awk -v a="$r" -v b="${rps[haproxy]}" 'BEGIN { printf "%.2f", a / b }')" "$c" \
        "$(awk -v a="$c" -v b="${cpu[haproxy]}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')"
    fi
  done
done

rss() { awk '/VmRSS/ { print $2 }' "/proc/$1/status"; }
if [[ "$IDLE_CONNS" -gt 0 ]]; then
  echo
  echo "idle TCP connections: $IDLE_CONNS each, RSS growth per connection"
  for target in haproxy leaderproxy; do
    if [[ $target == haproxy ]]; then port=$HAPROXY pid=$HAPROXY_PID; else port=$LP pid=$LP_PID; fi
    before=$(rss "$pid")
    python3 - "$port" "$IDLE_CONNS" "$W/$target.hold" <<'PY' &
import socket, sys, time, os
port, n, flag = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
conns = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"PING\r\n")
    conns.append(s)
for s in conns:
    s.recv(16)
open(flag, "w").close()
time.sleep(30)
PY
    holder=$!
    for _ in $(seq 300); do [[ -e "$W/$target.hold" ]] && break; sleep 0.1; done
    sleep 1
    after=$(rss "$pid")
    kill "$holder" 2>/dev/null || true
    wait "$holder" 2>/dev/null || true
    printf '%-12s %8.2f KiB/conn\n' "$target" "$(awk -v a="$after" -v b="$before" -v n="$IDLE_CONNS" 'BEGIN { print (a - b) / n }')"
  done
fi
