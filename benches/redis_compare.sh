#!/usr/bin/env bash
# Redis through a proxy, side by side (issue 19): redis-benchmark straight to
# the primary, through HAProxy in TCP mode (to the primary), through
# twemproxy (Debian `nutcracker`, one server: the primary) and through
# leaderproxy's RESP listener with the read/write split on (preset
# redis-sentinel: ROLE probes; GETs go to the two replicas, SETs to the
# primary).
#
#   benches/redis_compare.sh          (REPEAT=3 N=500000 by default)
#
# Rows: GET and SET with -P 16 (pipelined), 50 clients: requests/s, CPU µs per
# request of the proxy process (utime + stime from /proc/PID/stat before and
# after; for `direct`, the primary's redis-server), and both as ratios to
# HAProxy. Then how many of leaderproxy's GETs each node answered (the
# nodes' own INFO commandstats), to show the split was on.
#
# Environment: LEADERPROXY_BIN (default target/release/leaderproxy, built if
# missing), REPEAT, N, NO_INSTALL=1 (never run apt-get), LP_RESP (more keys
# of leaderproxy's listener, e.g. 'resp: { wait_replicas: 1 }'). Installs haproxy,
# nutcracker and redis-tools with apt-get when missing (keeping Debian from
# starting their services). Everything listens on 127.0.0.1 (ports
# 18401-18499); every load is bounded (N requests, a 120 s timeout per run).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${LEADERPROXY_BIN:-$ROOT/target/release/leaderproxy}"
REPEAT="${REPEAT:-3}"
N="${N:-500000}"

log() { printf '[redis-compare %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- tools
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-benchmark >/dev/null || missing+=(redis-tools)
command -v haproxy >/dev/null || [[ -x /usr/sbin/haproxy ]] || missing+=(haproxy)
command -v nutcracker >/dev/null || [[ -x /usr/sbin/nutcracker ]] || missing+=(nutcracker)
if [[ ${#missing[@]} -gt 0 ]]; then
  [[ "${NO_INSTALL:-0}" == 1 ]] && die "missing packages: ${missing[*]} (NO_INSTALL=1)"
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  log "installing: ${missing[*]}"
  # policy-rc.d exit 101: Debian's maintainer scripts start no service.
  created_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    $sudo sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
    created_policy=1
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
  [[ $created_policy == 1 ]] && $sudo rm -f /usr/sbin/policy-rc.d
fi
HAPROXY_BIN=$(command -v haproxy || echo /usr/sbin/haproxy)
NUTCRACKER_BIN=$(command -v nutcracker || echo /usr/sbin/nutcracker)
if [[ ! -x "$BIN" ]]; then
  log "building $BIN"
  (cd "$ROOT" && cargo build --release --bin leaderproxy)
fi

W="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT

# ---------------------------------------------------------------- servers
R1=18401 R2=18402 R3=18403 HAPROXY=18404 TWEM=18405 TWEM_STATS=18406 LP=18407 LP_ADMIN=18499
redis() { # PORT [MASTER_PORT]
  local args=(--port "$1" --bind 127.0.0.1 --save "" --appendonly no --daemonize no --dir "$W")
  [[ $# -gt 1 ]] && args+=(--replicaof 127.0.0.1 "$2")
  redis-server "${args[@]}" --dbfilename "dump-$1.rdb" >"$W/redis-$1.log" 2>&1 &
  PIDS+=($!)
}
redis "$R1"; R1_PID=${PIDS[-1]}
redis "$R2" "$R1"
redis "$R3" "$R1"
for _ in $(seq 100); do
  up=0
  for p in $R2 $R3; do
    redis-cli -p "$p" INFO replication 2>/dev/null | grep -q master_link_status:up && up=$((up + 1))
  done
  [[ $up == 2 ]] && break
  sleep 0.1
done
[[ $up == 2 ]] || die "the replicas did not connect"

cat >"$W/haproxy.cfg" <<CFG
global
  nbthread 2
defaults
  mode tcp
  timeout connect 1s
  timeout client 30m
  timeout server 30m
listen redis
  bind 127.0.0.1:$HAPROXY
  server r1 127.0.0.1:$R1
CFG
"$HAPROXY_BIN" -f "$W/haproxy.cfg" >"$W/haproxy.log" 2>&1 &
PIDS+=($!); HAPROXY_PID=$!

cat >"$W/twemproxy.yml" <<YML
primary:
  listen: 127.0.0.1:$TWEM
  redis: true
  hash: fnv1a_64
  distribution: ketama
  auto_eject_hosts: false
  servers:
    - 127.0.0.1:$R1:1
YML
"$NUTCRACKER_BIN" -c "$W/twemproxy.yml" -a 127.0.0.1 -s "$TWEM_STATS" -o "$W/twemproxy.log" &
PIDS+=($!); TWEM_PID=$!

cat >"$W/lp.yaml" <<YAML
preset: redis-sentinel
admin: 127.0.0.1:$LP_ADMIN
workers: 2
tcp:
  - { listen: "127.0.0.1:$LP", protocol: resp${LP_RESP:+, $LP_RESP} }
backends:
  - { name: r1, tcp: "127.0.0.1:$R1" }
  - { name: r2, tcp: "127.0.0.1:$R2" }
  - { name: r3, tcp: "127.0.0.1:$R3" }
YAML
"$BIN" run --config "$W/lp.yaml" >"$W/lp.log" 2>&1 &
PIDS+=($!); LP_PID=$!

# Every proxy answers PING; leaderproxy knows its leader and both replicas
# take reads (GETs on new connections counted on the replicas).
for port in $HAPROXY $TWEM $LP; do
  for _ in $(seq 100); do
    [[ "$(redis-cli -p "$port" PING 2>/dev/null)" == PONG ]] && break
    sleep 0.1
  done
  [[ "$(redis-cli -p "$port" PING 2>/dev/null)" == PONG ]] || die "nothing answers PING on :$port (logs in $W)"
done
# get_calls PORT: GETs node PORT has run (INFO commandstats), 0 if none.
get_calls() {
  redis-cli -p "$1" INFO commandstats | tr -d '\r' |
    awk -F'[=,]' '/^cmdstat_get:/ { n = $2 } END { print n + 0 }'
}
replica_gets() { echo $(( $(get_calls "$R2") + $(get_calls "$R3") )); }
redis-cli -p "$R1" SET key:__rand_int__ x >/dev/null
for _ in $(seq 100); do
  before=$(replica_gets)
  for _ in 1 2 3 4; do redis-cli -p "$LP" GET key:__rand_int__ >/dev/null; done
  [[ $(( $(replica_gets) - before )) -ge 4 ]] && break
  sleep 0.1
done

# run PORT PID ARGS... and ratio A B
# shellcheck source=benches/redis_benchmark_run.sh
source "$ROOT/benches/redis_benchmark_run.sh"

TARGETS=(direct haproxy twemproxy leaderproxy)
declare -A GETS
printf '%-10s %-12s %10s %12s %10s %12s\n' test target req/s "vs HAProxy" "CPU us/req" "vs HAProxy"
for row in "GET -P 16:-t get -P 16" "SET -P 16:-t set -P 16"; do
  name="${row%%:*}"; args="${row#*:}"
  declare -A rps=() cpu=()
  for target in "${TARGETS[@]}"; do
    case $target in
      direct) port=$R1 pid=$R1_PID ;;
      haproxy) port=$HAPROXY pid=$HAPROXY_PID ;;
      twemproxy) port=$TWEM pid=$TWEM_PID ;;
      leaderproxy) port=$LP pid=$LP_PID ;;
    esac
    vals=()
    before=("$(get_calls "$R1")" "$(get_calls "$R2")" "$(get_calls "$R3")")
    for _ in $(seq "$REPEAT"); do
      # shellcheck disable=SC2086
      vals+=("$(run "$port" "$pid" $args)")
    done
    if [[ $target == leaderproxy && $name == GET* ]]; then
      GETS[r1]=$(( $(get_calls "$R1") - before[0] ))
      GETS[r2]=$(( $(get_calls "$R2") - before[1] ))
      GETS[r3]=$(( $(get_calls "$R3") - before[2] ))
    fi
    # The median run by requests/s.
    med=$(printf '%s\n' "${vals[@]}" | sort -n | sed -n "$(( (REPEAT + 1) / 2 ))p")
    rps[$target]=${med% *}; cpu[$target]=${med#* }
  done
  for target in "${TARGETS[@]}"; do
    r=${rps[$target]}; c=${cpu[$target]}
    if [[ $target == direct ]]; then
      printf '%-10s %-12s %10s %12s %10s %12s\n' "$name" "$target" "$r" - "$c" -
    else
      printf '%-10s %-12s %10s %11sx %10s %11sx\n' "" "$target" "$r" \
        "$(ratio "$r" "${rps[haproxy]}")" "$c" "$(ratio "$c" "${cpu[haproxy]}")"
    fi
  done
done
echo
echo "leaderproxy's GETs answered by: primary r1 ${GETS[r1]:-?}, replica r2 ${GETS[r2]:-?}, replica r3 ${GETS[r3]:-?}"
echo "(direct CPU is the primary redis-server's; the others are the proxy process's; $REPEAT runs of $N requests, median by req/s)"
