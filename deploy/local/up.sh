#!/usr/bin/env bash
# Local demo: a 3-member etcd cluster on 127.0.0.1 and leaderproxy in front of
# it (config/etcd.yaml), then one write and a few reads through the proxy.
#
#   bash deploy/local/up.sh      # start (idempotent: reuses what is running)
#   bash deploy/local/down.sh    # stop everything (--purge also deletes data)
#
# etcd members: n1 client :2379 peer :2380, n2 :22379/:22380, n3 :32379/:32380.
# leaderproxy: data 127.0.0.1:8080, admin 127.0.0.1:9901.
# State (pid files, logs, etcd data): $LEADERPROXY_STATE or /tmp/leaderproxy-local.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${LEADERPROXY_STATE:-/tmp/leaderproxy-local}"
CONFIG="$ROOT/config/etcd.yaml"
PROXY="http://127.0.0.1:8080"
ADMIN="http://127.0.0.1:9901"
mkdir -p "$STATE"

log() { echo "up.sh: $*"; }

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo -n "$@"; fi
}

# ---------------------------------------------------------------- packages
need=()
[[ -x /usr/bin/etcd ]] || need+=(etcd-server)
command -v curl >/dev/null 2>&1 || need+=(curl)
if ((${#need[@]} > 0)); then
  log "installing ${need[*]}"
  created_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then   # keep the Debian etcd service from starting
    as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
    created_policy=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
  [[ $created_policy == 1 ]] && as_root rm -f /usr/sbin/policy-rc.d
fi
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
  log "stopping the system etcd service (it would hold port 2379)"
  as_root systemctl stop etcd
fi

# pid file -> running process whose command line contains $2?
alive() {
  local pidfile="$1" what="$2" pid
  [[ -f "$pidfile" ]] || return 1
  pid="$(cat "$pidfile")"
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$what"
}

# ---------------------------------------------------------------- etcd
CLUSTER="n1=http://127.0.0.1:2380,n2=http://127.0.0.1:22380,n3=http://127.0.0.1:32380"
for m in n1:2379:2380 n2:22379:22380 n3:32379:32380; do
  IFS=: read -r name client peer <<<"$m"
  if alive "$STATE/$name.pid" "etcd --name $name"; then
    log "etcd $name already running (pid $(cat "$STATE/$name.pid"))"
    continue
  fi
  if curl -s -m 1 -o /dev/null "http://127.0.0.1:$client/version"; then
    echo "up.sh: port $client is taken by something this script did not start" >&2
    exit 1
  fi
  log "starting etcd $name on 127.0.0.1:$client"
  setsid nohup /usr/bin/etcd --name "$name" --data-dir "$STATE/$name.etcd" \
    --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "$CLUSTER" --initial-cluster-state new --initial-cluster-token leaderproxy-local \
    --enable-v2=true --heartbeat-interval 100 --election-timeout 1000 --pre-vote=true \
    >>"$STATE/$name.log" 2>&1 </dev/null &
  echo $! >"$STATE/$name.pid"
done

log "waiting for an etcd leader"
leader=""
for _ in $(seq 1 150); do
  for m in n1:2379 n2:22379 n3:32379; do
    if [[ "$(curl -s -m 1 -o /dev/null -w '%{http_code}' "http://127.0.0.1:${m#*:}/v2/stats/leader")" == 200 ]]; then
      leader="${m%%:*}"
    fi
  done
  [[ -n "$leader" ]] && break
  sleep 0.2
done
if [[ -z "$leader" ]]; then
  echo "up.sh: etcd elected no leader within 30s; see $STATE/n*.log" >&2
  exit 1
fi
log "etcd leader is $leader"

# ---------------------------------------------------------------- leaderproxy
if ! command -v cargo >/dev/null 2>&1; then
  echo "up.sh: cargo not found; install Rust >= 1.80 (https://rustup.rs)" >&2
  exit 1
fi
if [[ ! -f "$CONFIG" ]]; then
  echo "up.sh: $CONFIG is missing" >&2
  exit 1
fi
log "cargo build --release"
(cd "$ROOT" && cargo build --release --bin leaderproxy)
BIN="$ROOT/target/release/leaderproxy"

if alive "$STATE/leaderproxy.pid" "leaderproxy run" && [[ "$BIN" -nt "$STATE/leaderproxy.pid" ]]; then
  log "the leaderproxy binary was rebuilt; restarting the running proxy"
  pid="$(cat "$STATE/leaderproxy.pid")"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    [[ -e "/proc/$pid" ]] || break
    sleep 0.1
  done
  [[ -e "/proc/$pid" ]] && kill -KILL "$pid" 2>/dev/null
  rm -f "$STATE/leaderproxy.pid"
fi
if alive "$STATE/leaderproxy.pid" "leaderproxy run"; then
  log "leaderproxy already running (pid $(cat "$STATE/leaderproxy.pid")); reloading its config"
  curl -s -m 2 -X POST "$ADMIN/admin/reload" >/dev/null || true
else
  "$BIN" check --config "$CONFIG"
  log "starting leaderproxy (log: $STATE/leaderproxy.log)"
  setsid nohup "$BIN" run --config "$CONFIG" >>"$STATE/leaderproxy.log" 2>&1 </dev/null &
  echo $! >"$STATE/leaderproxy.pid"
fi

log "waiting for $ADMIN/readyz"
ready=0
for _ in $(seq 1 150); do
  if [[ "$(curl -s -m 1 -o /dev/null -w '%{http_code}' "$ADMIN/readyz")" == 200 ]]; then
    ready=1
    break
  fi
  if ! alive "$STATE/leaderproxy.pid" "leaderproxy run"; then
    echo "up.sh: leaderproxy exited; last log lines:" >&2
    tail -n 30 "$STATE/leaderproxy.log" >&2
    exit 1
  fi
  sleep 0.2
done
if [[ $ready != 1 ]]; then
  echo "up.sh: leaderproxy not ready within 30s: $(curl -s -m 1 "$ADMIN/readyz")" >&2
  exit 1
fi

# ---------------------------------------------------------------- demo
show() { # run a curl command, print it and the interesting part of the answer
  echo
  echo "\$ $*"
  "$@" -s -i | tr -d '\r' | grep -iE '^HTTP/|^x-leaderproxy-|^\{' || true
}
echo
echo "leaderproxy is up: data $PROXY, admin $ADMIN; etcd leader is $leader."
echo "A write goes to the leader (x-leaderproxy-backend names it):"
show curl -X PUT "$PROXY/v2/keys/demo" -d value=hello
echo
echo "Reads are spread over the followers:"
for _ in 1 2 3 4; do
  show curl "$PROXY/v2/keys/demo"
done
echo
echo "Routing table:"
echo "\$ curl -s $ADMIN/admin/routing"
curl -s "$ADMIN/admin/routing"
echo
echo
echo "Stop everything with: bash deploy/local/down.sh"
