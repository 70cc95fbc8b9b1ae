#!/usr/bin/env bash
# MariaDB 10.11 (Debian `mariadb-server`) on 127.0.0.1: a primary and two
# replicas with GTID replication (MASTER_USE_GTID=slave_pos), each its own
# datadir under DIR made by mariadb-install-db.
#
#   bash tests/support/mariadb.sh up DIR          # install if needed, start m1 (primary), m2, m3 (replicas), wait until they replicate
#   bash tests/support/mariadb.sh down DIR        # stop all three (DIR is kept)
#   bash tests/support/mariadb.sh primary DIR     # print the primary's name (the one node with read_only=0)
#   bash tests/support/mariadb.sh switchover DIR  # old primary read_only=1, the first replica promoted, the others re-pointed
#   bash tests/support/mariadb.sh lag DIR N       # STOP SLAVE SQL_THREAD on mN (its replay falls behind)
#   bash tests/support/mariadb.sh unlag DIR N     # START SLAVE SQL_THREAD on mN
#   bash tests/support/mariadb.sh status DIR      # name, port, read_only, gtid_current_pos, replication threads
#   bash tests/support/mariadb.sh env DIR         # ports and credentials (shell syntax)
#
# Ports: MARIADB_PORT (default 3306) for m1, m2 = +1, m3 = +2 (remembered in DIR/env).
# Users (created on the primary, replicated): app/app (DML and DDL, no
# READ_ONLY ADMIN: read_only applies to it), monitor/monitor (what a probe
# needs: SLAVE MONITOR, PROCESS), repl/repl (REPLICATION SLAVE); all
# @127.0.0.1. The script itself talks to each node as root over its socket.
# Run as root, mariadbd drops to the `mysql` user (DIR is chowned to it).
set -euo pipefail

NODES=(m1 m2 m3)
WAIT="${MARIADB_WAIT:-120}"

die() { echo "mariadb.sh: $*" >&2; exit 1; }
log() { echo "mariadb.sh: $*" >&2; }
usage() { die "usage: mariadb.sh up|down|primary|switchover|status|env DIR | lag|unlag DIR N"; }
now_ms() { date +%s%3N; }

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo -n "$@"; fi; }

install_packages() {
  local need=()
  command -v mariadbd >/dev/null 2>&1 || [[ -x /usr/sbin/mariadbd ]] || need+=(mariadb-server)
  command -v mariadb >/dev/null 2>&1 || need+=(mariadb-client)
  ((${#need[@]} == 0)) && return 0
  log "installing ${need[*]}"
  local created_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then # keep Debian's mariadb service stopped
    as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
    created_policy=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
  [[ $created_policy == 1 ]] && as_root rm -f /usr/sbin/policy-rc.d
  return 0
}

wait_until() { # description command...
  local what="$1" deadline=$(($(date +%s) + WAIT))
  shift
  until "$@"; do
    (($(date +%s) < deadline)) || die "timed out after ${WAIT}s waiting for $what; logs in $DIR/m*/error.log"
    sleep 0.1
  done
}

load_env() {
  [[ -f "$DIR/env" ]] || die "$DIR/env is missing: run 'mariadb.sh up $DIR' first"
  # shellcheck disable=SC1091
  source "$DIR/env"
}

node_index() { case "$1" in m1) echo 0 ;; m2) echo 1 ;; m3) echo 2 ;; *) die "no node $1" ;; esac; }
port() { echo $((MARIADB_PORT + $(node_index "$1"))); }

# SQL on one node as root over its socket; tab-separated, no headers.
sql() { # node statement
  mariadb --no-defaults -S "$DIR/$1/mysqld.sock" -uroot -N -B -e "$2"
}
var() { sql "$1" "SELECT @@$2"; } # node variable
# SHOW SLAVE STATUS, vertical ("  Field: value" lines; -N would drop the names).
slave_status() { mariadb --no-defaults -S "$DIR/$1/mysqld.sock" -uroot -B -e 'SHOW SLAVE STATUS\G'; }

alive() { # node
  local pid
  [[ -f "$DIR/$1/mysqld.pid" ]] || return 1
  pid="$(cat "$DIR/$1/mysqld.pid")"
  [[ -n "$pid" && -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$DIR/$1/my.cnf"
}
pingable() { mariadb-admin --no-defaults -S "$DIR/$1/mysqld.sock" -uroot ping >/dev/null 2>&1; }

# ---------------------------------------------------------------- up
write_config() { # node
  local n="$1" id=$(($(node_index "$1") + 1))
  mkdir -p "$DIR/$n"
  cat >"$DIR/$n/my.cnf" <<EOF
[mariadbd]
datadir = $DIR/$n/data
socket = $DIR/$n/mysqld.sock
pid-file = $DIR/$n/mysqld.pid
log-error = $DIR/$n/error.log
port = $(port "$n")
bind-address = 127.0.0.1
skip-name-resolve
server-id = $id
log-bin = $n-bin
log-slave-updates = 1
binlog-format = ROW
gtid-strict-mode = 1
gtid-domain-id = 0
innodb-buffer-pool-size = 32M
performance-schema = 0
# every node starts read-only; up and switchover make the primary writable
read-only = 1
EOF
}

start_node() { # node
  local n="$1" user=()
  alive "$n" && return 0
  if [[ ! -d "$DIR/$n/data/mysql" ]]; then
    log "mariadb-install-db for $n"
    local as=()
    [[ $(id -u) -eq 0 ]] && as=(--user=mysql)
    mariadb-install-db --defaults-file="$DIR/$n/my.cnf" "${as[@]}" --auth-root-authentication-method=normal \
      --skip-test-db >"$DIR/$n/install.log" 2>&1 || { cat "$DIR/$n/install.log" >&2; die "mariadb-install-db failed for $n"; }
  fi
  [[ $(id -u) -eq 0 ]] && user=(--user=mysql)
  log "starting $n on 127.0.0.1:$(port "$n")"
  setsid /usr/sbin/mariadbd --defaults-file="$DIR/$n/my.cnf" "${user[@]}" >>"$DIR/$n/stdout.log" 2>&1 </dev/null &
  wait_until "$n to answer" pingable "$n"
}

# True when replica $1 has applied everything primary $2 wrote and both threads run.
caught_up() { # replica primary
  local st
  st="$(slave_status "$1")" || return 1
  grep -q 'Slave_IO_Running: Yes' <<<"$st" && grep -q 'Slave_SQL_Running: Yes' <<<"$st" &&
    [[ "$(var "$1" gtid_slave_pos)" == "$(var "$2" gtid_binlog_pos)" ]]
}

replicate_from() { # replica primary
  sql "$1" "STOP SLAVE; CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$(port "$2"),
    MASTER_USER='repl', MASTER_PASSWORD='repl', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1; START SLAVE"
}

cmd_up() {
  install_packages
  mkdir -p "$DIR"
  [[ -f "$DIR/env" ]] || printf 'MARIADB_PORT=%s\n' "${MARIADB_PORT:-3306}" >"$DIR/env"
  load_env
  local n t0 fresh=0
  t0=$(now_ms)
  [[ -d "$DIR/m1/data/mysql" ]] || fresh=1
  for n in "${NODES[@]}"; do write_config "$n"; done
  [[ $(id -u) -eq 0 ]] && chown -R mysql: "$DIR"
  for n in "${NODES[@]}"; do start_node "$n"; done
  if [[ $fresh == 1 ]]; then
    # m1 is the first primary; these statements are binlogged and replicate.
    sql m1 "SET GLOBAL read_only = 0;
      CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY 'repl';
      GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1';
      CREATE USER 'monitor'@'127.0.0.1' IDENTIFIED BY 'monitor';
      GRANT SLAVE MONITOR, PROCESS ON *.* TO 'monitor'@'127.0.0.1';
      CREATE USER 'app'@'127.0.0.1' IDENTIFIED BY 'app';
      GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER ON *.* TO 'app'@'127.0.0.1';
      CREATE DATABASE app;
      CREATE TABLE app.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64), at TIMESTAMP(3) DEFAULT CURRENT_TIMESTAMP(3))"
    replicate_from m2 m1
    replicate_from m3 m1
    echo m1 >"$DIR/primary"
  fi
  local primary
  # every node starts read-only (my.cnf): the remembered primary is made writable again
  primary="$(cat "$DIR/primary")"
  sql "$primary" "SET GLOBAL read_only = 0"
  [[ "$(cmd_primary)" == "$primary" ]] || die "more than one writable node"
  for n in "${NODES[@]}"; do
    [[ $n == "$primary" ]] && continue
    # a node restarted by `up` (read_only from my.cnf) resumes its replication by itself
    wait_until "$n to catch up with $primary" caught_up "$n" "$primary"
  done
  log "up in $(($(now_ms) - t0)) ms: primary $primary"
}

# ---------------------------------------------------------------- the rest
cmd_primary() {
  local n found=()
  for n in "${NODES[@]}"; do
    [[ "$(var "$n" read_only 2>/dev/null)" == 0 ]] && found+=("$n")
  done
  ((${#found[@]} == 1)) || die "expected one node with read_only=0, found: ${found[*]:-none}"
  echo "${found[0]}"
}

cmd_switchover() {
  load_env
  local old new n t0
  old="$(cmd_primary)"
  t0=$(now_ms)
  sql "$old" "SET GLOBAL read_only = 1" # from now on the app user's writes fail: no two writable nodes
  for n in "${NODES[@]}"; do [[ $n != "$old" ]] && { new="$n"; break; }; done
  wait_until "$new to apply all of $old's binlog" caught_up "$new" "$old"
  sql "$new" "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0"
  echo "$new" >"$DIR/primary"
  log "$new is the primary $(($(now_ms) - t0)) ms after $old went read-only"
  for n in "${NODES[@]}"; do
    [[ $n == "$old" || $n == "$new" ]] && continue
    wait_until "$n to apply all of $old's binlog" caught_up "$n" "$old"
    replicate_from "$n" "$new"
  done
  # the old primary's own transactions are in its binlog, not its slave position
  sql "$old" "SET GLOBAL gtid_slave_pos = @@gtid_binlog_pos"
  replicate_from "$old" "$new"
  for n in "${NODES[@]}"; do
    [[ $n == "$new" ]] || wait_until "$n to replicate from $new" caught_up "$n" "$new"
  done
  log "switchover $old -> $new done in $(($(now_ms) - t0)) ms"
}

cmd_lag() { # N
  load_env
  sql "m$1" "STOP SLAVE SQL_THREAD"
  log "m$1: SQL thread stopped (its gtid_slave_pos stays at $(var "m$1" gtid_slave_pos))"
}
cmd_unlag() { # N
  load_env
  sql "m$1" "START SLAVE SQL_THREAD"
}

cmd_status() {
  load_env
  local n
  for n in "${NODES[@]}"; do
    printf '%s :%s read_only=%s gtid_current_pos=%s %s\n' "$n" "$(port "$n")" "$(var "$n" read_only)" \
      "$(var "$n" gtid_current_pos)" \
      "$(slave_status "$n" | grep -E 'Slave_(IO|SQL)_Running:' | tr -s ' ' | tr '\n' ' ')"
  done
}

cmd_env() {
  load_env
  cat "$DIR/env"
  local n
  for n in "${NODES[@]}"; do echo "${n^^}=127.0.0.1:$(port "$n")"; done
  echo "APP_USER=app APP_PASSWORD=app MONITOR_USER=monitor MONITOR_PASSWORD=monitor"
}

cmd_down() {
  load_env
  local n pid
  for n in "${NODES[@]}"; do
    alive "$n" || continue
    pid="$(cat "$DIR/$n/mysqld.pid")"
    kill -TERM "$pid"
    wait_until "$n to stop" eval "[[ ! -e /proc/$pid ]]"
  done
  log "down"
}

(($# >= 2)) || usage
DIR="$2"
[[ "$DIR" == /* ]] || DIR="$PWD/$DIR"
case "$1" in
  up) cmd_up ;;
  down) cmd_down ;;
  primary) load_env && cmd_primary ;;
  switchover) cmd_switchover ;;
  lag) (($# == 3)) || usage; cmd_lag "$3" ;;
  unlag) (($# == 3)) || usage; cmd_unlag "$3" ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *) usage ;;
esac
