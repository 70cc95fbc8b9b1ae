"""Checks one rendered kustomization (a multi-document YAML file) the way
the schemas cannot: the Deployment's probes, ports, grace period, mounts and
hardening against the leaderproxy config in its ConfigMap; the config
through `leaderproxy check`; and the probe and scrape paths against the
admin API of a running leaderproxy started with that config.

    python check.py RENDERED.yaml PATH/TO/leaderproxy

Exits non-zero with every problem found.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import yaml

problems = []


def need(cond, what):
    if not cond:
        problems.append(what)
    return cond


def seconds(d):
    m = re.fullmatch(r"(\d+)(ms|s|m)", str(d).strip())
    if not m:
        raise SystemExit(f"cannot read duration {d!r}")
    n, unit = int(m.group(1)), m.group(2)
    return n / 1000 if unit == "ms" else n * 60 if unit == "m" else n


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def main(rendered, binary):
    docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
    by = {}
    for d in docs:
        by.setdefault(d["kind"], []).append(d)

    def one(kind):
        v = by.get(kind, [])
        need(len(v) == 1, f"one {kind}, found {len(v)}")
        return v[0] if v else {}

    cm, dep, secret = one("ConfigMap"), one("Deployment"), one("Secret")
    pdb, hpa, sm, np_ = (
        one("PodDisruptionBudget"),
        one("HorizontalPodAutoscaler"),
        one("ServiceMonitor"),
        one("NetworkPolicy"),
    )
    services = {s["metadata"]["name"]: s for s in by.get("Service", [])}
    cfg_text = cm["data"]["config.yaml"]
    cfg = yaml.safe_load(cfg_text)
    admin_port = int(cfg["admin"].rsplit(":", 1)[1])
    listen_port = int(str(cfg["listen"]).rsplit(":", 1)[1])

    # --- Deployment
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    need(spec.get("replicas", 1) >= 2, "Deployment: 2+ replicas")
    need(
        spec["selector"]["matchLabels"].items() <= labels.items(),
        "Deployment selector matches its pods",
    )
    anti = pod.get("affinity", {}).get("podAntiAffinity", {})
    need(bool(anti), "Deployment: pod anti-affinity")
    (c,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    need(ports.get("admin") == admin_port, f"container port admin = admin: {admin_port}")
    need(ports.get("http") == listen_port, f"container port http = listen: {listen_port}")

    def probe_port(p):
        port = p["httpGet"]["port"]
        return ports.get(port) if isinstance(port, str) else port

    rp, lp = c["readinessProbe"], c["livenessProbe"]
    need(rp["httpGet"]["path"] == "/readyz", "readiness probe is /readyz")
    need(lp["httpGet"]["path"] == "/healthz", "liveness probe is /healthz")
    need(probe_port(rp) == admin_port, "readiness probe on the admin port")
    need(probe_port(lp) == admin_port, "liveness probe on the admin port")
    for k in ("requests", "limits"):
        for r in ("cpu", "memory"):
            need(r in c.get("resources", {}).get(k, {}), f"resources.{k}.{r}")
    sc, psc = c.get("securityContext", {}), pod.get("securityContext", {})
    need(sc.get("runAsNonRoot") or psc.get("runAsNonRoot"), "runAsNonRoot")
    need(psc.get("runAsUser", 0) != 0, "a non-root runAsUser")
    need(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem")
    need(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation: false")
    need(sc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities drop ALL")
    pre = c["lifecycle"]["preStop"]["exec"]["command"]
    need(pre[0].endswith("sleep"), "preStop sleeps")
    pre_s = float(pre[1])
    grace = seconds(cfg.get("shutdown_grace", "30s"))
    tgps = pod.get("terminationGracePeriodSeconds", 30)
    need(
        tgps >= pre_s + grace + 1,
        f"terminationGracePeriodSeconds {tgps} >= preStop {pre_s}s + shutdown_grace {grace}s + 1s",
    )
    args = c["args"]
    conf_path = args[args.index("--config") + 1]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in pod["volumes"]}
    cm_vol = [n for n, v in vols.items() if v.get("configMap", {}).get("name") == cm["metadata"]["name"]]
    need(
        len(cm_vol) == 1 and mounts.get(cm_vol[0]) == os.path.dirname(conf_path)
        and os.path.basename(conf_path) in cm["data"],
        f"--config {conf_path} is the mounted ConfigMap",
    )
    token = cfg.get("admin_token_file")
    need(token is not None, "admin_token_file is set (the admin port is not loopback)")
    sec_vol = [n for n, v in vols.items() if v.get("secret", {}).get("secretName") == secret["metadata"]["name"]]
    need(
        len(sec_vol) == 1 and mounts.get(sec_vol[0]) == os.path.dirname(token)
        and os.path.basename(token) in secret.get("stringData", secret.get("data", {})),
        f"admin_token_file {token} is the mounted Secret",
    )

    # --- Services, PDB, HPA, ServiceMonitor, NetworkPolicy
    for name, svc in services.items():
        need(svc["spec"]["selector"].items() <= labels.items(), f"Service {name} selects the pods")
        for p in svc["spec"]["ports"]:
            need(p["targetPort"] in ports, f"Service {name} targets a named container port")
    admin_svc = [s for s in services.values() if any(p["targetPort"] == "admin" for p in s["spec"]["ports"])]
    need(len(admin_svc) == 1, "one Service for the admin port")
    need(any(p["targetPort"] == "http" for s in services.values() for p in s["spec"]["ports"]), "a Service for clients")
    need(pdb["spec"]["selector"]["matchLabels"].items() <= labels.items(), "PDB selects the pods")
    need(1 <= pdb["spec"].get("minAvailable", 0) < spec["replicas"], "PDB: minAvailable 1..replicas-1")
    t = hpa["spec"]["scaleTargetRef"]
    need(t["kind"] == "Deployment" and t["name"] == dep["metadata"]["name"], "HPA scales the Deployment")
    need(hpa["spec"]["minReplicas"] >= 2, "HPA keeps 2+ replicas")
    need(any(m["resource"]["name"] == "cpu" for m in hpa["spec"]["metrics"]), "HPA on CPU")
    if admin_svc:
        a = admin_svc[0]
        need(sm["spec"]["selector"]["matchLabels"].items() <= a["metadata"]["labels"].items(), "ServiceMonitor selects the admin Service")
        names = {p["name"] for p in a["spec"]["ports"]}
        for e in sm["spec"]["endpoints"]:
            need(e["port"] in names, f"ServiceMonitor port {e['port']} is on the admin Service")
    need(np_["spec"]["podSelector"]["matchLabels"].items() <= labels.items(), "NetworkPolicy selects the pods")
    rules = np_["spec"]["ingress"]
    admin_rules = [r for r in rules if any(p["port"] == "admin" for p in r["ports"])]
    need(len(admin_rules) == 1 and len(admin_rules[0].get("from", [])) >= 1, "NetworkPolicy restricts the admin port")

    # --- The config through `leaderproxy check`, and the paths on a running proxy
    with tempfile.TemporaryDirectory() as tmp:
        tok = os.path.join(tmp, "token")
        with open(tok, "w") as f:
            f.write("k8s-check-token\n")
        text = re.sub(r"^admin_token_file:.*$", f"admin_token_file: {tok}", cfg_text, flags=re.M)
        path = os.path.join(tmp, "config.yaml")
        with open(path, "w") as f:
            f.write(text)
        r = subprocess.run([binary, "check", "--config", path], capture_output=True, text=True)
        need(r.returncode == 0, f"leaderproxy check: {r.stdout}{r.stderr}")
        admin = f"127.0.0.1:{free_port()}"
        text = re.sub(r"^listen:.*$", f"listen: 127.0.0.1:{free_port()}", text, flags=re.M)
        text = re.sub(r"^admin:.*$", f"admin: {admin}", text, flags=re.M)
        with open(path, "w") as f:
            f.write(text)
        log = open(os.path.join(tmp, "log"), "w+")
        p = subprocess.Popen([binary, "run", "--config", path], stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 10
            while True:
                try:
                    status, _ = get(f"http://{admin}/healthz")
                    break
                except OSError:
                    if time.time() > deadline or p.poll() is not None:
                        log.seek(0)
                        raise SystemExit(f"leaderproxy did not start:\n{log.read()}")
                    time.sleep(0.05)
            need(status == 200, f"GET {lp['httpGet']['path']} on the admin port: {status}")
            status, body = get(f"http://{admin}{rp['httpGet']['path']}")
            # No cluster here: not ready, but the endpoint is the admin API's.
            need(status in (200, 503) and '"ready"' in body, f"GET {rp['httpGet']['path']}: {status} {body}")
            for e in sm["spec"]["endpoints"]:
                status, body = get(f"http://{admin}{e.get('path', '/metrics')}")
                need(status == 200 and "leaderproxy_build_info" in body, f"GET {e.get('path')}: {status}")
            status, _ = get(f"http://{admin}/no-such-path")
            need(status == 404, f"the admin API answers 404 to unknown paths (got {status})")
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)

    if problems:
        print(f"{rendered}: {len(problems)} problem(s):")
        for x in problems:
            print(f"  - {x}")
        sys.exit(1)
    print(f"{rendered}: deployment checks ok ({len(docs)} documents)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
