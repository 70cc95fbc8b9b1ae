#!/usr/bin/env bash
# Stops what deploy/local/up.sh started (leaderproxy and the 3 etcd members),
# with or without --tls (both use the same pid files), and the --postgres
# cluster (Patroni, PostgreSQL, its etcd and HAProxy) if it runs.
#   bash deploy/local/down.sh            # stop, keep data and logs
#   bash deploy/local/down.sh --purge    # stop and delete the state directory
#                                          (etcd data, logs, the --tls certificates)
# Idempotent: does nothing for processes that are not running.
set -euo pipefail

STATE="${LEADERPROXY_STATE:-/tmp/leaderproxy-local}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# stop <pidfile> <command-line fragment>: SIGTERM, wait up to 10s, then SIGKILL.
stop() {
  local pidfile="$1" what="$2" pid
  [[ -f "$pidfile" ]] || return 0
  pid="$(cat "$pidfile")"
  if [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$what"; then
    echo "down.sh: stopping $what (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      [[ -e "/proc/$pid" ]] || break
      sleep 0.1
    done
    if [[ -e "/proc/$pid" ]]; then
      echo "down.sh: $what did not stop in 10s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidfile"
}

stop "$STATE/leaderproxy.pid" "leaderproxy run"
stop "$STATE/leaderproxy-pg.pid" "leaderproxy run" # up.sh --postgres
for name in n1 n2 n3; do
  stop "$STATE/$name.pid" "etcd --name $name"
done
if [[ -f "$STATE/postgres/env" ]]; then # up.sh --postgres
  bash "$ROOT/tests/support/patroni.sh" down "$STATE/postgres"
fi

if [[ "${1:-}" == "--purge" ]]; then
  rm -rf "$STATE"
  echo "down.sh: removed $STATE"
fi
echo "down.sh: stopped"
