#!/usr/bin/env bash
# Local demo: a 3-member etcd cluster on 127.0.0.1 and leaderproxy in front of
# it (config/etcd.yaml), then one write and a few reads through the proxy.
#
#   bash deploy/local/up.sh          # start (idempotent: reuses what is running)
#   bash deploy/local/up.sh --tls    # the same with TLS everywhere (see below)
#   bash deploy/local/down.sh        # stop everything (--purge also deletes data)
#
# etcd members: n1 client :2379 peer :2380, n2 :22379/:22380, n3 :32379/:32380.
# leaderproxy: data 127.0.0.1:8080, admin 127.0.0.1:9901.
# State (pid files, logs, etcd data): $LEADERPROXY_STATE or /tmp/leaderproxy-local.
#
# --tls: mTLS on every hop. The script makes (openssl, once, into $STATE/tls) a
# CA, one server certificate for the members and the proxy's listener (SANs
# 127.0.0.1 and localhost), a client certificate for leaderproxy and one for
# you. etcd serves clients and peers only over TLS with --client-cert-auth;
# leaderproxy runs config/etcd-tls.yaml's settings (a copy in $STATE with the
# listener on 127.0.0.1:8443 and the three local members as backends) with
# tls.client_ca: a client without a certificate is refused at the handshake.
# Its own etcd data dirs ($STATE/n*-tls.etcd); one demo runs at a time.
#
# --postgres: a Patroni 3 + PostgreSQL 15 cluster instead (Debian packages,
# installed if missing): one etcd member on :2479 as Patroni's DCS, Patroni
# REST on :8008-8010, PostgreSQL on :5432-5434, and HAProxy with Patroni's
# documented checks on :5000 (writes) / :5001 (reads), all by
# tests/support/patroni.sh in $STATE/postgres (it must be reachable by the
# `postgres` user: keep $STATE under /tmp). It uses none of the etcd demo's
# ports, so both can run at once. leaderproxy runs config/patroni-tcp.yaml:
# TCP listeners on :6000 (writes) and :6001 (reads), admin on :9902.
set -euo pipefail

usage() { echo "usage: bash deploy/local/up.sh [--tls | --postgres]" >&2; exit 2; }
TLS=0
POSTGRES=0
for arg in "$@"; do
  case "$arg" in
    --tls) TLS=1 ;;
    --postgres) POSTGRES=1 ;;
    *) usage ;;
  esac
done
[[ $TLS == 1 && $POSTGRES == 1 ]] && usage

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${LEADERPROXY_STATE:-/tmp/leaderproxy-local}"
mkdir -p "$STATE"

# ---------------------------------------------------------------- --postgres
if [[ $POSTGRES == 1 ]]; then
  PATRONI=(bash "$ROOT/tests/support/patroni.sh")
  PGDIR="$STATE/postgres"
  "${PATRONI[@]}" up "$PGDIR"
  "${PATRONI[@]}" haproxy "$PGDIR" >/dev/null
  leader="$("${PATRONI[@]}" leader "$PGDIR")"
  echo
  echo "Patroni cluster is up (leader $leader); password of user postgres: postgres."
  echo "Through HAProxy (Patroni's documented config, for comparison):"
  echo "  PGPASSWORD=postgres psql -h 127.0.0.1 -p 5000 -U postgres -c 'select inet_server_port(), pg_is_in_recovery()'   # writes: the leader"
  echo "  PGPASSWORD=postgres psql -h 127.0.0.1 -p 5001 -U postgres -c 'select inet_server_port(), pg_is_in_recovery()'   # reads: a replica"
  echo "Straight to the members: ports 5432 (pg1), 5433 (pg2), 5434 (pg3); Patroni REST: 8008-8010."
  echo "  bash tests/support/patroni.sh switchover $PGDIR      # or kill-primary, leader"
  echo "building leaderproxy (cargo build --release)"
  (cd "$ROOT" && cargo build --release --bin leaderproxy)
  TARGET_DIR="${CARGO_TARGET_DIR:-target}"
  [[ "$TARGET_DIR" == /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
  BIN="$TARGET_DIR/release/leaderproxy"
  PGCONF="$ROOT/config/patroni-tcp.yaml"
  pid="$(cat "$STATE/leaderproxy-pg.pid" 2>/dev/null || true)"
  if [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "leaderproxy run"; then
    echo "leaderproxy already running (pid $pid)"
  else
    "$BIN" check --config "$PGCONF"
    setsid nohup "$BIN" run --config "$PGCONF" >>"$STATE/leaderproxy-pg.log" 2>&1 </dev/null &
    echo $! >"$STATE/leaderproxy-pg.pid"
  fi
  ready=0
  for _ in $(seq 1 150); do
    if [[ "$(curl -s -m 1 -o /dev/null -w '%{http_code}' http://127.0.0.1:9902/readyz)" == 200 ]] &&
      curl -s -m 1 http://127.0.0.1:9902/admin/routing | grep -q '"leader":{'; then
      ready=1
      break
    fi
    sleep 0.2
  done
  if [[ $ready != 1 ]]; then
    echo "up.sh: leaderproxy found no leader within 30s; log: $STATE/leaderproxy-pg.log" >&2
    tail -n 20 "$STATE/leaderproxy-pg.log" >&2
    exit 1
  fi
  echo "Through leaderproxy (config/patroni-tcp.yaml; admin http://127.0.0.1:9902/admin/routing):"
  echo "  PGPASSWORD=postgres psql -h 127.0.0.1 -p 6000 -U postgres -c 'select inet_server_port(), pg_is_in_recovery()'   # writes: the leader"
  echo "  PGPASSWORD=postgres psql -h 127.0.0.1 -p 6001 -U postgres -c 'select inet_server_port(), pg_is_in_recovery()'   # reads: a replica"
  for port in 6000 6001; do
    echo "\$ psql -p $port: $(PGPASSWORD=postgres psql -h 127.0.0.1 -p $port -U postgres -Atc 'select inet_server_port(), pg_is_in_recovery()')"
  done
  echo
  echo "Stop everything with: bash deploy/local/down.sh"
  exit 0
fi
T="$STATE/tls"
if [[ $TLS == 1 ]]; then
  MODE=tls
  CONFIG="$STATE/etcd-tls.yaml" # generated below from config/etcd-tls.yaml
  PROXY="https://127.0.0.1:8443"
  SCHEME=https
  # what the user (and this script) pass to curl: trust our CA, present the user's certificate
  CURL_TLS=(--cacert "$T/ca.pem" --cert "$T/user.pem" --key "$T/user-key.pem")
else
  MODE=plain
  CONFIG="$ROOT/config/etcd.yaml"
  PROXY="http://127.0.0.1:8080"
  SCHEME=http
  CURL_TLS=()
fi
ADMIN="http://127.0.0.1:9901"

log() { echo "up.sh: $*"; }

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo -n "$@"; fi
}

# ---------------------------------------------------------------- packages
need=()
[[ -x /usr/bin/etcd ]] || need+=(etcd-server)
command -v curl >/dev/null 2>&1 || need+=(curl)
if [[ $TLS == 1 ]]; then
  command -v openssl >/dev/null 2>&1 || need+=(openssl)
  command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
fi
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

# One demo at a time: the plain and the TLS cluster use the same ports.
running=""
for f in n1 n2 n3; do alive "$STATE/$f.pid" "etcd --name $f" && running=1; done
alive "$STATE/leaderproxy.pid" "leaderproxy run" && running=1
if [[ -n "$running" ]]; then
  was="$(cat "$STATE/mode" 2>/dev/null || echo plain)"
  if [[ "$was" != "$MODE" ]]; then
    echo "up.sh: the $was demo is running; stop it first: bash deploy/local/down.sh" >&2
    exit 1
  fi
fi
echo "$MODE" >"$STATE/mode"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---------------------------------------------------------------- certificates (--tls)
# EC P-256 keys (PKCS#8). Made once; delete $STATE/tls (or down.sh --purge) for new ones.
make_certs() {
  mkdir -p "$T"
  local f missing=0
  for f in ca ca-key server server-key leaderproxy-client leaderproxy-client-key user user-key; do
    [[ -s "$T/$f.pem" ]] || missing=1
  done
  if [[ $missing == 0 ]]; then
    log "reusing the certificates in $T"
  else
    log "making a CA and certificates in $T (openssl)"
    cat >"$T/openssl.cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
# clientAuth too: the members use it for their peer connections
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
CNF
    local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    (
      umask 077
      openssl req -x509 "${ec[@]}" -config "$T/openssl.cnf" -extensions ca -days 365 \
        -subj "/O=leaderproxy local demo/CN=leaderproxy local demo CA" -keyout "$T/ca-key.pem" -out "$T/ca.pem"
      leaf() { # name extensions subject
        openssl req -new "${ec[@]}" -config "$T/openssl.cnf" -subj "$3" -keyout "$T/$1-key.pem" -out "$T/$1.csr"
        openssl x509 -req -in "$T/$1.csr" -CA "$T/ca.pem" -CAkey "$T/ca-key.pem" -CAcreateserial \
          -CAserial "$T/ca.srl" -days 365 -extfile "$T/openssl.cnf" -extensions "$2" -out "$T/$1.pem"
        rm -f "$T/$1.csr"
      }
      leaf server server "/O=leaderproxy local demo/CN=localhost"
      leaf leaderproxy-client client "/O=leaderproxy local demo/CN=leaderproxy"
      leaf user client "/O=ops/CN=demo-user"
    ) >"$T/openssl.log" 2>&1 || { cat "$T/openssl.log" >&2; echo "up.sh: openssl failed" >&2; exit 1; }
    chmod 644 "$T"/*.pem
    chmod 600 "$T"/*-key.pem
  fi
  # the file names config/etcd-tls.yaml uses (relative to the config: tls/...)
  cp "$T/server.pem" "$T/proxy.pem"
  cp "$T/server-key.pem" "$T/proxy-key.pem"
  cp "$T/ca.pem" "$T/client-ca.pem"
  cp "$T/ca.pem" "$T/etcd-ca.pem"
}
[[ $TLS == 1 ]] && make_certs

# ---------------------------------------------------------------- etcd
CLUSTER="n1=$SCHEME://127.0.0.1:2380,n2=$SCHEME://127.0.0.1:22380,n3=$SCHEME://127.0.0.1:32380"
ETCD_TLS=()
DATA_SUFFIX=""
if [[ $TLS == 1 ]]; then
  ETCD_TLS=(--cert-file "$T/server.pem" --key-file "$T/server-key.pem" --trusted-ca-file "$T/ca.pem"
    --client-cert-auth
    --peer-cert-file "$T/server.pem" --peer-key-file "$T/server-key.pem" --peer-trusted-ca-file "$T/ca.pem"
    --peer-client-cert-auth)
  DATA_SUFFIX="-tls" # a member's data dir remembers its peer URLs: one per mode
fi
for m in n1:2379:2380 n2:22379:22380 n3:32379:32380; do
  IFS=: read -r name client peer <<<"$m"
  if alive "$STATE/$name.pid" "etcd --name $name"; then
    log "etcd $name already running (pid $(cat "$STATE/$name.pid"))"
    continue
  fi
  if port_open "$client"; then
    echo "up.sh: port $client is taken by something this script did not start" >&2
    exit 1
  fi
  log "starting etcd $name on $SCHEME://127.0.0.1:$client"
  setsid nohup /usr/bin/etcd --name "$name" --data-dir "$STATE/$name$DATA_SUFFIX.etcd" \
    --listen-client-urls "$SCHEME://127.0.0.1:$client" --advertise-client-urls "$SCHEME://127.0.0.1:$client" \
    --listen-peer-urls "$SCHEME://127.0.0.1:$peer" --initial-advertise-peer-urls "$SCHEME://127.0.0.1:$peer" \
    --initial-cluster "$CLUSTER" --initial-cluster-state new --initial-cluster-token "leaderproxy-local$DATA_SUFFIX" \
    --enable-v2=true --heartbeat-interval 100 --election-timeout 1000 --pre-vote=true \
    "${ETCD_TLS[@]}" >>"$STATE/$name.log" 2>&1 </dev/null &
  echo $! >"$STATE/$name.pid"
done

log "waiting for an etcd leader"
leader=""
for _ in $(seq 1 150); do
  for m in n1:2379 n2:22379 n3:32379; do
    if [[ "$(curl -s -m 1 "${CURL_TLS[@]}" -o /dev/null -w '%{http_code}' "$SCHEME://127.0.0.1:${m#*:}/v2/stats/leader")" == 200 ]]; then
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
if [[ $TLS == 1 ]]; then
  # config/etcd-tls.yaml as it ships, next to the generated tls/ files it names, with
  # the listener on 127.0.0.1:8443 (2379 is n1's) and the local members as backends.
  src="$ROOT/config/etcd-tls.yaml"
  [[ -f "$src" ]] || { echo "up.sh: $src is missing" >&2; exit 1; }
  sed -e 's|^listen: .*|listen: 127.0.0.1:8443               # up.sh --tls: 2379 is etcd n1'"'"'s|' \
    -e '/^  - { name: etcd-[0-9], url: "https:/d' \
    -e 's|^backends:.*|debug_headers: true              # up.sh --tls demo: responses name the backend\
backends:                        # up.sh --tls: the three local members (certificate SAN 127.0.0.1)\
  - { name: n1, url: "https://127.0.0.1:2379" }\
  - { name: n2, url: "https://127.0.0.1:22379" }\
  - { name: n3, url: "https://127.0.0.1:32379" }|' \
    "$src" >"$CONFIG.tmp"
  if ! grep -q '^listen: 127.0.0.1:8443' "$CONFIG.tmp" || [[ "$(grep -c 'url: "https://127.0.0.1:' "$CONFIG.tmp")" != 3 ]] ||
    grep -q 'name: etcd-' "$CONFIG.tmp"; then
    echo "up.sh: $src no longer has the shape this script rewrites (listen, backends etcd-1..3); see $CONFIG.tmp" >&2
    exit 1
  fi
  mv "$CONFIG.tmp" "$CONFIG"
  log "config: $CONFIG (from config/etcd-tls.yaml)"
fi
if [[ ! -f "$CONFIG" ]]; then
  echo "up.sh: $CONFIG is missing" >&2
  exit 1
fi
log "cargo build --release"
(cd "$ROOT" && cargo build --release --bin leaderproxy)
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
[[ "$TARGET_DIR" == /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
BIN="$TARGET_DIR/release/leaderproxy"

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
show curl "${CURL_TLS[@]}" -X PUT "$PROXY/v2/keys/demo" -d value=hello
echo
echo "Reads are spread over the followers:"
for _ in 1 2 3 4; do
  show curl "${CURL_TLS[@]}" "$PROXY/v2/keys/demo"
done
if [[ $TLS == 1 ]]; then
  echo
  echo "A client without a certificate is refused at the handshake:"
  echo
  # (--http1.1: over h2 curl reports the refusal as "getpeername() failed")
  echo "\$ curl --http1.1 --cacert $T/ca.pem $PROXY/v2/keys/demo"
  curl -sS -m 5 --http1.1 --cacert "$T/ca.pem" "$PROXY/v2/keys/demo" 2>&1 | head -3 || true
fi
echo
echo "Routing table:"
echo "\$ curl -s $ADMIN/admin/routing"
curl -s "$ADMIN/admin/routing"
echo
if [[ $TLS == 1 ]]; then
  echo
  echo "Talk to it (TLS everywhere; your client certificate is $T/user.pem, O=ops,CN=demo-user):"
  echo "  curl --cacert $T/ca.pem --cert $T/user.pem --key $T/user-key.pem $PROXY/v2/keys/demo"
  echo "  etcdctl --cacert $T/ca.pem --cert $T/user.pem --key $T/user-key.pem --endpoints $PROXY put greeting hello"
  echo "  etcdctl --cacert $T/ca.pem --cert $T/user.pem --key $T/user-key.pem --endpoints $PROXY get greeting"
  echo "Config: $CONFIG; proxy log: $STATE/leaderproxy.log"
fi
echo
echo "Stop everything with: bash deploy/local/down.sh"
