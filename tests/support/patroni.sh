#!/usr/bin/env bash
# A real Patroni 3 + PostgreSQL 15 cluster on 127.0.0.1, from Debian packages:
# one etcd member (Patroni's DCS, etcd v3 API via the `etcd3:` section) and
# three Patroni nodes pg1..pg3, each with its own data dir under DIR.
#
#   bash tests/support/patroni.sh up DIR            # install if needed, start, wait for 1 leader + 2 streaming replicas
#   bash tests/support/patroni.sh down DIR          # stop everything started from DIR (DIR is kept)
#   bash tests/support/patroni.sh kill-primary DIR  # SIGKILL the leader's Patroni and postmaster
#   bash tests/support/patroni.sh freeze-primary DIR  # SIGSTOP the leader's Patroni until a replica is promoted (+2 s), then SIGCONT
#   bash tests/support/patroni.sh switchover DIR    # patronictl switchover --force to a replica, waits for it
#   bash tests/support/patroni.sh leader DIR        # print the leader's name (pg1..pg3)
#   bash tests/support/patroni.sh wait DIR          # wait for 1 leader + 2 streaming replicas
#   bash tests/support/patroni.sh env DIR           # print the ports and credentials (shell syntax)
#   bash tests/support/patroni.sh haproxy DIR       # HAProxy as Patroni documents it (haproxy-patroni.cfg.tmpl)
#
# `up` is idempotent: it starts only what is not running, so `up` after
# `kill-primary` brings the killed node back as a replica (pg_rewind).
# Measured here (Debian 12, Patroni 3.0.2, PostgreSQL 15.18, 2 busy cores):
# first `up` 4-5 s (+ ~30 s for apt-get), `up` of a killed node 7-8 s,
# `switchover` 9 s (until the old leader streams again), `down` 7 s.
# `down` stops the replicas first and the leader last and remembers it;
# `up` starts that node first and waits for it to lead before the others.
#
# Ports (env, read by `up` and remembered in DIR/env for the other commands):
#   PATRONI_ETCD_PORT (default 2479; peer port +1)  etcd client URL http://127.0.0.1:$PATRONI_ETCD_PORT
#   PATRONI_REST_PORT (default 8008)  REST API of pg1, pg2 = +1, pg3 = +2
#   PATRONI_PG_PORT   (default 5432)  PostgreSQL of pg1, pg2 = +1, pg3 = +2
#   PATRONI_HAPROXY_PORT (default 5000)  HAProxy write port, read port +1, stats +2
#   PATRONI_HAPROXY_CHECK (default "3s 3 2": Patroni's documented inter, fall, rise)
# Timing (env, read by `up` on the first bootstrap only: it is Patroni's
# dynamic configuration, stored in etcd):
#   PATRONI_TTL (default 20 s: Patroni's documented minimum, which 3.0.2 does
#     not enforce)  leader lock TTL: a SIGKILLed leader keeps the lock this long,
#     so `kill-primary` takes about TTL seconds (measured 20.0-20.5 s)
#   PATRONI_LOOP_WAIT (default 1 s)  PATRONI_RETRY_TIMEOUT (default 5 s)
#   PATRONI_WAIT (default 180 s)  deadline of every wait in this script
#
# Credentials (demo only, md5 over loopback): superuser postgres/postgres,
# replication replicator/replicator, rewind rewind/rewind; database postgres.
# PostgreSQL refuses to run as root: run as root, the script chowns DIR to
# `postgres` and runs etcd, Patroni and PostgreSQL as that user (DIR and its
# parents must then be reachable by `postgres`, e.g. under /tmp).
set -euo pipefail

SCOPE=lp-pg
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NODES=(pg1 pg2 pg3)
PG_BIN=/usr/lib/postgresql/15/bin
WAIT="${PATRONI_WAIT:-180}"

die() { echo "patroni.sh: $*" >&2; exit 1; }
log() { echo "patroni.sh: $*" >&2; }
usage() { die "usage: patroni.sh up|down|kill-primary|freeze-primary|switchover|leader|wait|env|haproxy DIR"; }

# ---------------------------------------------------------------- packages
as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo -n "$@"; fi; }
have_pkg() { dpkg-query -W -f '${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# Installs what is missing; `apt-get update` only when something is.
install_packages() {
  local need=()
  [[ -x $PG_BIN/postgres ]] || need+=(postgresql-15)
  command -v psql >/dev/null 2>&1 || need+=(postgresql-client-15)
  command -v patroni >/dev/null 2>&1 || need+=(patroni)
  [[ -x /usr/bin/etcd ]] || need+=(etcd-server)
  command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
  # Patroni's etcd3 DCS talks to etcd's JSON gateway itself but imports python-etcd
  # (Debian: python3-etcd); psycopg2 is how it talks to PostgreSQL.
  have_pkg python3-etcd || need+=(python3-etcd)
  have_pkg python3-psycopg2 || need+=(python3-psycopg2)
  command -v jq >/dev/null 2>&1 || need+=(jq)
  command -v curl >/dev/null 2>&1 || need+=(curl)
  ((${#need[@]} == 0)) && return 0
  log "installing ${need[*]}"
  local created_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then # keep Debian's postgresql/etcd/patroni services stopped
    as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
    created_policy=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
  [[ $created_policy == 1 ]] && as_root rm -f /usr/sbin/policy-rc.d
  return 0
}

# ---------------------------------------------------------------- helpers
# Run as the `postgres` user when we are root (PostgreSQL refuses root).
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- env HOME="$DIR" "$@"; else "$@"; fi
}

# Start `$@` in the background, detached, as the postgres user, appending to
# LOG; the process itself (not a wrapper: runuser forks) writes its pid to
# PIDFILE before it execs. Returns once PIDFILE is there.
spawn() { # pidfile log command...
  local pidfile="$1" logfile="$2"
  shift 2
  rm -f "$pidfile"
  # shellcheck disable=SC2016
  local run=(sh -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@")
  [[ $(id -u) -eq 0 ]] && run=(runuser -u postgres -- env HOME="$DIR" "${run[@]}")
  setsid "${run[@]}" >>"$logfile" 2>&1 </dev/null &
  wait_until "$pidfile" test -s "$pidfile"
}

# Patroni reads PATRONI_* variables as configuration (PATRONI_ETCD_PORT
# alone makes it look for an `etcd:` DCS section and fail: "Neither srv,
# hosts, host nor url are defined"), and so would every Patroni this script
# starts: the ports live in DIR/env, so drop them from the environment.
forget_patroni_env() {
  local v
  for v in "${!PATRONI_@}"; do unset "$v"; done
}

load_env() {
  [[ -f "$DIR/env" ]] || die "$DIR/env is missing: run 'patroni.sh up $DIR' first"
  # shellcheck disable=SC1091
  source "$DIR/env"
}

node_index() { case "$1" in pg1) echo 0 ;; pg2) echo 1 ;; pg3) echo 2 ;; *) die "no node $1" ;; esac; }
rest_port() { echo $((REST_PORT + $(node_index "$1"))); }
pg_port() { echo $((PG_PORT + $(node_index "$1"))); }

# pid file -> running process whose command line contains $2?
alive() {
  local pidfile="$1" what="$2" pid
  [[ -f "$pidfile" ]] || return 1
  pid="$(cat "$pidfile")"
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$what"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The postmaster of a node: first line of its postmaster.pid, if that process lives.
postmaster_pid() {
  local f="$DIR/$1/data/postmaster.pid" pid
  [[ -f "$f" ]] || return 1
  pid="$(head -n 1 "$f")"
  [[ -n "$pid" && -e "/proc/$pid" ]] || return 1
  echo "$pid"
}

# psql against one node as the superuser, unaligned, tuples only.
pg_query() { # node sql
  PGPASSWORD=postgres PGCONNECT_TIMEOUT=2 psql -X -q -At -h 127.0.0.1 -p "$(pg_port "$1")" -U postgres -d postgres -c "$2" 2>/dev/null
}

now_ms() { date +%s%3N; }

# Poll `$@` every 0.2 s until it succeeds or WAIT seconds pass.
wait_until() { # description command...
  local what="$1" deadline=$(($(date +%s) + WAIT))
  shift
  until "$@"; do
    (($(date +%s) < deadline)) || die "timed out after ${WAIT}s waiting for $what; logs in $DIR/*/patroni.log"
    sleep 0.2
  done
}

# ---------------------------------------------------------------- cluster state
# The leader's name by Patroni's REST API (GET /cluster of any live node).
current_leader() {
  cluster_json | jq -er '.members[] | select(.role == "leader" and .state == "running") | .name' 2>/dev/null
}

# GET /cluster of the first node that answers.
cluster_json() {
  local n
  for n in "${NODES[@]}"; do
    curl -sf -m 1 "http://127.0.0.1:$(rest_port "$n")/cluster" 2>/dev/null && return 0
  done
  return 1
}

# True when Patroni shows all three members running (3.0: "running"; later
# versions say "streaming" for replicas), a leader out of recovery, the
# leader's pg_stat_replication shows two streaming replicas, and both have
# *replayed* up to the leader's WAL position read first (the position Patroni
# publishes is max(received, replayed): a replica whose replay stopped still
# shows "running", lag 0; seen once here).
healthy() {
  local leader lsn n
  [[ "$(cluster_json | jq '[.members[] | select(.state == "running" or .state == "streaming")] | length' 2>/dev/null)" == 3 ]] ||
    return 1
  leader="$(current_leader)" || return 1
  lsn="$(pg_query "$leader" 'select pg_current_wal_lsn()')" || return 1
  [[ -n "$lsn" ]] || return 1
  [[ "$(pg_query "$leader" "select count(*) from pg_stat_replication where state = 'streaming'")" == 2 ]] || return 1
  for n in "${NODES[@]}"; do
    [[ $n == "$leader" ]] && continue
    [[ "$(pg_query "$n" "select pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '$lsn') >= 0")" == t ]] || return 1
  done
}

# True when $1 is the leader, out of recovery, with two streaming replicas.
healthy_with_leader() {
  [[ "$(current_leader)" == "$1" ]] && healthy
}

# True when some node other than $1 leads and its PostgreSQL is out of recovery.
new_primary_other_than() {
  local leader
  leader="$(current_leader)" || return 1
  [[ "$leader" != "$1" && "$(pg_query "$leader" 'select pg_is_in_recovery()')" == f ]]
}

# ---------------------------------------------------------------- up
write_env() {
  cat >"$DIR/env" <<EOF
ETCD_PORT=${PATRONI_ETCD_PORT:-2479}
REST_PORT=${PATRONI_REST_PORT:-8008}
PG_PORT=${PATRONI_PG_PORT:-5432}
TTL=${PATRONI_TTL:-20}
LOOP_WAIT=${PATRONI_LOOP_WAIT:-1}
RETRY_TIMEOUT=${PATRONI_RETRY_TIMEOUT:-5}
HAPROXY_PORT=${PATRONI_HAPROXY_PORT:-5000}
HAPROXY_CHECK="${PATRONI_HAPROXY_CHECK:-3s 3 2}"
PGUSER=postgres
PGPASSWORD=postgres
PGDATABASE=postgres
EOF
}

write_node_config() { # node
  local n="$1" nd="$DIR/$1"
  mkdir -p "$nd"
  cat >"$nd/patroni.yml" <<EOF
scope: $SCOPE
namespace: /service/
name: $n
log:
  level: INFO
restapi:
  listen: 127.0.0.1:$(rest_port "$n")
  connect_address: 127.0.0.1:$(rest_port "$n")
etcd3:
  hosts: 127.0.0.1:$ETCD_PORT
bootstrap:
  dcs:
    ttl: $TTL
    loop_wait: $LOOP_WAIT
    retry_timeout: $RETRY_TIMEOUT
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      parameters:
        wal_level: replica
        hot_standby: "on"
        wal_log_hints: "on"
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 128MB
  initdb:
    - encoding: UTF8
    - data-checksums
  pg_hba:
    - local all all trust
    - host replication replicator 127.0.0.1/32 md5
    - host all all 127.0.0.1/32 md5
postgresql:
  listen: 127.0.0.1:$(pg_port "$n")
  connect_address: 127.0.0.1:$(pg_port "$n")
  data_dir: $nd/data
  bin_dir: $PG_BIN
  pgpass: $nd/pgpass
  authentication:
    superuser: {username: postgres, password: postgres}
    replication: {username: replicator, password: replicator}
    rewind: {username: rewind, password: rewind}
  parameters:
    unix_socket_directories: $nd
    max_connections: 100
    shared_buffers: 32MB
tags:
  nofailover: false
  noloadbalance: false
EOF
}

start_etcd() {
  local peer=$((ETCD_PORT + 1))
  if alive "$DIR/etcd.pid" "etcd --name lp-pg-etcd"; then return 0; fi
  port_open "$ETCD_PORT" && die "port $ETCD_PORT is taken by something this script did not start"
  log "starting etcd on http://127.0.0.1:$ETCD_PORT"
  spawn "$DIR/etcd.pid" "$DIR/etcd.log" /usr/bin/etcd --name lp-pg-etcd --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "lp-pg-etcd=http://127.0.0.1:$peer" --initial-cluster-state new \
    --initial-cluster-token lp-pg-etcd --heartbeat-interval 100 --election-timeout 1000
  wait_until "etcd on :$ETCD_PORT" etcd_ready
}
etcd_ready() { [[ "$(curl -s -m 1 "http://127.0.0.1:$ETCD_PORT/health" | jq -r .health 2>/dev/null)" == true ]]; }

start_node() { # node
  local n="$1"
  if alive "$DIR/$n/patroni.pid" "$DIR/$n/patroni.yml"; then return 0; fi
  # A postmaster left by a killed Patroni would make the new Patroni fail its start.
  local pm
  if pm="$(postmaster_pid "$n")"; then
    log "stopping $n's orphaned postmaster (pid $pm)"
    kill -TERM "$pm" 2>/dev/null || true
    wait_until "$n's orphaned postmaster to exit" eval "[[ ! -e /proc/$pm ]]"
  fi
  port_open "$(rest_port "$n")" && die "port $(rest_port "$n") is taken by something this script did not start"
  port_open "$(pg_port "$n")" && die "port $(pg_port "$n") is taken (Debian's own PostgreSQL service?); set PATRONI_PG_PORT"
  log "starting Patroni $n (REST :$(rest_port "$n"), PostgreSQL :$(pg_port "$n"))"
  spawn "$DIR/$n/patroni.pid" "$DIR/$n/patroni.log" /usr/bin/patroni "$DIR/$n/patroni.yml"
}

cmd_up() {
  install_packages
  mkdir -p "$DIR"
  [[ -f "$DIR/env" ]] || write_env
  forget_patroni_env
  load_env
  if [[ $(id -u) -eq 0 ]]; then
    chown -R postgres: "$DIR"
    runuser -u postgres -- test -w "$DIR" ||
      die "the postgres user cannot write $DIR (a parent directory is closed to it?); use a DIR under /tmp"
  fi
  local t0 n first=pg1
  t0=$(now_ms)
  start_etcd
  for n in "${NODES[@]}"; do
    write_node_config "$n"
    [[ $(id -u) -eq 0 ]] && chown -R postgres: "$DIR/$n"
  done
  # After `down`, the last leader (the most advanced: it stopped last) starts
  # first and leads again; the others then follow it. Started together, any
  # of them could win the race and leave the others diverged.
  [[ -s "$DIR/last_leader" ]] && first="$(cat "$DIR/last_leader")"
  if ! current_leader >/dev/null; then
    start_node "$first"
    wait_until "$first to lead" eval '[[ "$(current_leader)" == "$first" ]]'
  fi
  for n in "${NODES[@]}"; do start_node "$n"; done
  wait_until "one leader and two streaming replicas" healthy
  log "up in $(($(now_ms) - t0)) ms: leader $(current_leader)"
}

# ---------------------------------------------------------------- down
stop_pid() { # pidfile what
  local pidfile="$1" what="$2" pid
  alive "$pidfile" "$what" || { rm -f "$pidfile"; return 0; }
  pid="$(cat "$pidfile")"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$(($(date +%s) + 30))
  while [[ -e /proc/$pid ]] && (($(date +%s) < deadline)); do sleep 0.1; done
  [[ -e /proc/$pid ]] && kill -KILL "$pid" 2>/dev/null
  rm -f "$pidfile"
}

cmd_down() {
  load_env
  local n pm leader order=()
  # Replicas first, the leader last: stopping the leader first makes a replica
  # take over (a new timeline) while it is being stopped itself.
  if leader="$(current_leader)"; then
    echo "$leader" >"$DIR/last_leader"
    for n in "${NODES[@]}"; do [[ $n != "$leader" ]] && order+=("$n"); done
    order+=("$leader")
  else
    order=("${NODES[@]}")
  fi
  for n in "${order[@]}"; do
    stop_pid "$DIR/$n/patroni.pid" "$DIR/$n/patroni.yml" # Patroni stops its PostgreSQL
    if pm="$(postmaster_pid "$n")"; then                  # left by a killed Patroni
      kill -TERM "$pm" 2>/dev/null || true
      wait_until "$n's postmaster to exit" eval "[[ ! -e /proc/$pm ]]"
    fi
  done
  stop_pid "$DIR/etcd.pid" "etcd --name lp-pg-etcd"
  bash "$HERE/haproxy.sh" down "$DIR/haproxy"
  log "down"
}

# ---------------------------------------------------------------- failures
cmd_kill_primary() {
  load_env
  local leader pid pm t0
  leader="$(current_leader)" || die "no leader to kill"
  pid="$(cat "$DIR/$leader/patroni.pid")"
  pm="$(postmaster_pid "$leader")" || die "$leader has no postmaster"
  t0=$(now_ms)
  kill -KILL "$pid" "$pm"
  log "SIGKILLed $leader's Patroni ($pid) and postmaster ($pm)"
  rm -f "$DIR/$leader/patroni.pid"
  wait_until "a new primary" new_primary_other_than "$leader"
  log "new primary $(current_leader) after $(($(now_ms) - t0)) ms (bring $leader back with: patroni.sh up $DIR)"
}

# SIGSTOP the leader's Patroni: its PostgreSQL stays up, a primary taking
# writes, while its REST API stops answering and its leader lock expires
# (TTL); once a replica is promoted, the deposed primary keeps running for
# FROZEN_S (default 2) more seconds, then Patroni is resumed (SIGCONT).
# Seen here (Patroni 3.0.2, etcd3): the resumed node took the lock back and
# the promoted replica was pg_rewound to follow it; either way `wait` ends
# with one leader and two streaming replicas.
cmd_freeze_primary() {
  load_env
  local leader pid ppid t0
  leader="$(current_leader)" || die "no leader to freeze"
  pid="$(cat "$DIR/$leader/patroni.pid")"
  ppid="$(ps -o ppid= -p "$pid" | tr -d ' ')"
  t0=$(now_ms)
  kill -STOP "$pid"
  log "SIGSTOPped $leader's Patroni ($pid); its PostgreSQL keeps running"
  wait_until "a new primary" new_primary_other_than "$leader"
  log "new primary $(current_leader) after $(($(now_ms) - t0)) ms; $leader's PostgreSQL still runs"
  sleep "${FROZEN_S:-2}"
  kill -CONT "$pid"
  # Run as root, runuser (Patroni's parent) stops itself when its child stops,
  # like su: resume it too, or it stays stopped after Patroni exits.
  [[ "$(ps -o comm= -p "$ppid" 2>/dev/null)" == runuser ]] && kill -CONT "$ppid"
  log "SIGCONTed $leader's Patroni after $(($(now_ms) - t0)) ms"
}

cmd_switchover() {
  load_env
  local leader candidate t0
  leader="$(current_leader)" || die "no leader"
  candidate="$(cluster_json | jq -r '[.members[] | select(.role == "replica" and (.state == "running" or .state == "streaming"))][0].name // empty')"
  [[ -n "${candidate:-}" ]] || die "no replica to switch over to"
  t0=$(now_ms)
  as_pg /usr/bin/patronictl -c "$DIR/$leader/patroni.yml" switchover "$SCOPE" \
    --leader "$leader" --candidate "$candidate" --force >&2
  wait_until "$candidate to lead with two streaming replicas" healthy_with_leader "$candidate"
  log "switchover $leader -> $candidate done in $(($(now_ms) - t0)) ms"
}

# HAProxy in TCP mode with Patroni's documented checks: write port
# $HAPROXY_PORT (/primary), read port +1 (/replica), stats page +2.
cmd_haproxy() {
  load_env
  local inter fall rise
  read -r inter fall rise <<<"$HAPROXY_CHECK"
  bash "$HERE/haproxy.sh" up "$DIR/haproxy" "$HERE/haproxy-patroni.cfg.tmpl" \
    WRITE_PORT="$HAPROXY_PORT" READ_PORT=$((HAPROXY_PORT + 1)) STATS_PORT=$((HAPROXY_PORT + 2)) \
    INTER="$inter" FALL="$fall" RISE="$rise" \
    PG1="$(pg_port pg1)" PG2="$(pg_port pg2)" PG3="$(pg_port pg3)" \
    REST1="$(rest_port pg1)" REST2="$(rest_port pg2)" REST3="$(rest_port pg3)"
  # HAProxy starts every server UP and needs `fall` failed checks to mark one
  # down: until then its write port also reaches replicas. Wait until it agrees
  # with Patroni.
  wait_until "HAProxy's checks to settle (primary: the leader only, replicas: the 2 others)" haproxy_settled
  echo "PGPASSWORD=postgres psql -h 127.0.0.1 -p $HAPROXY_PORT -U postgres       # writes: the primary"
  echo "PGPASSWORD=postgres psql -h 127.0.0.1 -p $((HAPROXY_PORT + 1)) -U postgres       # reads: the replicas"
}

# The servers HAProxy has UP in backend $1, sorted, space-separated.
haproxy_up() {
  bash "$HERE/haproxy.sh" state "$DIR/haproxy" | awk -v be="$1" '$2 == be && $6 == 2 { print $4 }' | sort | tr '\n' ' '
}

haproxy_settled() {
  local leader n replicas=""
  leader="$(current_leader)" || return 1
  for n in "${NODES[@]}"; do [[ $n != "$leader" ]] && replicas+="$n "; done
  [[ "$(haproxy_up primary)" == "$leader " && "$(haproxy_up replicas)" == "$replicas" ]]
}

cmd_leader() {
  load_env
  current_leader || die "no leader"
}

cmd_env() {
  load_env
  cat "$DIR/env"
  local n
  for n in "${NODES[@]}"; do
    echo "${n^^}_REST=http://127.0.0.1:$(rest_port "$n") ${n^^}_PG=127.0.0.1:$(pg_port "$n")"
  done
}

(($# == 2)) || usage
DIR="$2"
[[ "$DIR" == /* ]] || DIR="$PWD/$DIR"
[[ $1 == up ]] || forget_patroni_env
case "$1" in
  up) cmd_up ;;
  down) cmd_down ;;
  kill-primary) cmd_kill_primary ;;
  freeze-primary) cmd_freeze_primary ;;
  switchover) cmd_switchover ;;
  leader) cmd_leader ;;
  wait) load_env && wait_until "one leader and two streaming replicas" healthy && current_leader ;;
  env) cmd_env ;;
  haproxy) cmd_haproxy ;;
  *) usage ;;
esac
