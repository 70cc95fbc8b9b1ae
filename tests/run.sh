#!/usr/bin/env bash
# The project's single "run all tests" command.
#
#   bash tests/run.sh            # from anywhere
#
# 1. Installs the Debian packages the real-cluster tests and the benchmark
#    script need, if any of their binaries is missing (needs root; runs
#    `apt-get update` + `apt-get install -y`, non-interactive, and keeps the
#    packages' system services from starting).
# 2. Stops system services of those packages if they are running, so nothing
#    collides with the clusters the tests start (the tests use free ports, but
#    deploy/local uses the standard etcd ports).
# 3. Checks deploy/kubernetes and deploy/systemd offline (tests/k8s/validate.sh:
#    kubectl kustomize + kubernetes-validate from PyPI, in a virtualenv).
# 4. Runs `cargo test --all-targets --no-fail-fast` (every test binary runs
#    even after one fails), the native probe tests again with the cargo
#    feature `mysql` (MariaDB), then `cargo doc --no-deps` with every rustdoc
#    warning an error (a broken intra-doc link, an undocumented public item),
#    then `cargo bench --no-run`; exits non-zero if any of them fails.
#
# Environment: LEADERPROXY_SKIP_REAL=1 makes the real-cluster tests skip with a
# notice instead of failing when binaries are missing; extra arguments are
# passed to `cargo test` (e.g. `bash tests/run.sh -- --nocapture`).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# package -> a file it installs
declare -A PKG_BIN=(
  [etcd-server]=/usr/bin/etcd
  [etcd-client]=/usr/bin/etcdctl
  [redis-server]=/usr/bin/redis-server
  [redis-sentinel]=/usr/bin/redis-sentinel
  # redis-cli: tests/real_redis_resp.rs runs the stock client through the RESP listener
  [redis-tools]=/usr/bin/redis-cli
  [webdis]=/usr/bin/webdis
  [haproxy]=/usr/sbin/haproxy
  [nginx-light]=/usr/sbin/nginx
  [wrk]=/usr/bin/wrk
  [nghttp2-client]=/usr/bin/h2load
  [curl]=/usr/bin/curl
  # native probe tests (tests/native_probes.rs) and tests/real_patroni.rs
  # (tests/support/patroni.sh, pg_failover_load.py), tests/real_mariadb.rs
  [patroni]=/usr/bin/patroni
  [python3-etcd]=/usr/lib/python3/dist-packages/etcd/__init__.py
  [postgresql-15]=/usr/lib/postgresql/15/bin/postgres
  [postgresql-client-15]=/usr/lib/postgresql/15/bin/psql
  [python3-psycopg2]=/usr/lib/python3/dist-packages/psycopg2/__init__.py
  [python3-pymysql]=/usr/lib/python3/dist-packages/pymysql/__init__.py
  [jq]=/usr/bin/jq
  [mariadb-server]=/usr/sbin/mariadbd
  [mariadb-client]=/usr/bin/mariadb
)

missing=()
for pkg in "${!PKG_BIN[@]}"; do
  [[ -e "${PKG_BIN[$pkg]}" ]] || missing+=("$pkg")
done

as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n "$@"
  else
    echo "run.sh: need root to run: $*" >&2
    return 1
  fi
}

if ((${#missing[@]} > 0)); then
  echo "run.sh: installing missing packages: ${missing[*]}"
  # keep Debian's maintainer scripts from starting the services
  # (policy-rc.d exit 101 = "action forbidden"); removed afterwards.
  created_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
    created_policy=1
  fi
  trap '[[ $created_policy == 1 ]] && as_root rm -f /usr/sbin/policy-rc.d' EXIT
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${missing[@]}"
  if [[ $created_policy == 1 ]]; then
    as_root rm -f /usr/sbin/policy-rc.d
  fi
  trap - EXIT
fi

# Stop the packages' system services if something started them.
for svc in etcd redis-server redis-sentinel webdis haproxy nginx postgresql patroni mariadb; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    echo "run.sh: stopping system service $svc"
    as_root systemctl stop "$svc" || true
  elif [[ -x "/etc/init.d/$svc" ]] && "/etc/init.d/$svc" status >/dev/null 2>&1; then
    echo "run.sh: stopping system service $svc"
    as_root "/etc/init.d/$svc" stop || true
  fi
done

if ! command -v cargo >/dev/null 2>&1; then
  echo "run.sh: cargo not found; install Rust >= 1.80 (https://rustup.rs), Debian's rustc is too old" >&2
  exit 1
fi

# Kubernetes manifests and the systemd unit, checked offline (renders the
# kustomizations, validates them against the Kubernetes schemas, runs the
# config through `leaderproxy check` and the probe paths against the admin API).
k8s_rc=0
bash tests/k8s/validate.sh || k8s_rc=$?

rc=0
cargo test --all-targets --no-fail-fast "$@" || rc=$?
# the mysql probe kind and preset: mariadb are behind the cargo feature `mysql`
cargo test --features mysql --no-fail-fast --test native_probes --test real_mariadb "$@" || rc=$?
# The public API's rustdoc: lib.rs warns on missing_docs; -D makes it fail.
doc_rc=0
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps || doc_rc=$?
if [[ $rc -eq 0 ]]; then
  rc=$doc_rc
fi
bench_rc=0
cargo bench --no-run || bench_rc=$?
if [[ $rc -eq 0 ]]; then
  rc=$bench_rc
fi
if [[ $rc -eq 0 ]]; then
  rc=$k8s_rc
fi
exit "$rc"
