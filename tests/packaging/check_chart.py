"""Offline checks of charts/websockify and k8s/: lint, render with every values file in
charts/websockify/ci/, validate every object against the Kubernetes schemas (strict), and
assert on what the templates put where. Run by tests/packaging.rs in a venv with
helm-python-sdk and kubernetes-validate; exits non-zero with the reasons on failure."""

import json
import os
import subprocess
import sys
import tempfile

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = sys.argv[1]
CHART = os.path.join(ROOT, "charts", "websockify")
KUBE = "1.30.0"
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)


def objects(manifests):
    out = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                out.append((path, doc))
    return out


# Custom resources: their own schemas are not Kubernetes'; their fields are asserted below.
CRDS = {"Certificate", "ServiceMonitor", "PrometheusRule"}


def validate(source, obj):
    if obj.get("kind") in CRDS:
        return
    try:
        kubernetes_validate.validate(obj, KUBE, strict=True)
    except kubernetes_validate.ValidationError as e:
        failures.append(f"{source}: {obj.get('kind')} {obj['metadata'].get('name')}: {e.message} at {list(e.path)}")
    except Exception as e:  # an unknown version or kind is a failure too
        failures.append(f"{source}: {obj.get('kind')}: {e}")


def by_kind(objs, kind, name=None):
    found = [o for _, o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    return found


def env_of(deploy):
    return deploy["spec"]["template"]["spec"]["containers"][0]


report = helm.lint(CHART, strict=True, kube_version="v" + KUBE)
for m in report.get("messages", []):
    if m.get("severity", 0) >= 2:
        failures.append(f"lint: {m}")
check(not report.get("errors"), f"lint errors: {report.get('errors')}")

chart = helm.Chart.load(CHART)
rendered = {}
for values_file in sorted(os.listdir(os.path.join(CHART, "ci"))):
    with open(os.path.join(CHART, "ci", values_file)) as f:
        values = yaml.safe_load(f) or {}
    chart.validate_schema(values)
    manifests = chart.render(values, name="console", namespace="vdi", is_install=True)
    objs = objects(manifests)
    rendered[values_file] = objs
    for path, obj in objs:
        validate(f"{values_file}:{path}", obj)

# A wrong value fails at install, with the offending key named.
for bad, key in [({"port": 70000}, "port"), ({"logFormat": "xml"}, "logFormat"),
                 ({"tokens": {"plugin": "Nope"}}, "plugin"), ({"replicas": 2}, "replicas")]:
    try:
        chart.validate_schema(bad)
        failures.append(f"schema accepted {bad}")
    except helm.HelmError as e:
        check(key in str(e), f"schema error for {bad} does not name {key}: {e}")

# What the templates put where.
d = rendered["default-values.yaml"]
deploy = by_kind(d, "Deployment")[0]
c = env_of(deploy)
pod = deploy["spec"]["template"]["spec"]
check(c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}, f"readiness {c['readinessProbe']}")
check(c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}, f"liveness {c['livenessProbe']}")
check(pod["terminationGracePeriodSeconds"] == 45, f"grace {pod['terminationGracePeriodSeconds']}")
check(c["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}, f"preStop {c['lifecycle']}")
check(c["securityContext"]["readOnlyRootFilesystem"] is True, "read-only root")
check(c["securityContext"]["capabilities"]["drop"] == ["ALL"], "capabilities")
check(pod["securityContext"]["runAsNonRoot"] is True, "non-root")
check(pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", "seccomp")
ports = {p["name"]: p["containerPort"] for p in c["ports"]}
check(ports == {"websocket": 6080, "metrics": 9187}, f"ports {ports}")
cm = by_kind(d, "ConfigMap", "console-websockify")[0]["data"]
check(cm["WEBSOCKIFY_LISTEN"] == "0.0.0.0:6080", f"listen {cm}")
check(cm["WEBSOCKIFY_TARGET"] == "vnc.example.internal:5900", f"target {cm}")
check(cm["WEBSOCKIFY_METRICS_LISTEN"] == "0.0.0.0:9187", f"metrics {cm}")
check(cm["WEBSOCKIFY_SHUTDOWN_GRACE"] == "30", f"grace {cm}")
svc = by_kind(d, "Service")[0]
check({p["name"]: p["port"] for p in svc["spec"]["ports"]} == {"websocket": 6080, "metrics": 9187}, "service ports")
check(by_kind(d, "PodDisruptionBudget"), "PDB by default")
check(not by_kind(d, "Ingress") and not by_kind(d, "HorizontalPodAutoscaler"), "optional objects off by default")
check(any(p.endswith("tests/test-connection.yaml") for p, _ in d), "helm test pod")

t = rendered["tls-values.yaml"]
c = env_of(by_kind(t, "Deployment")[0])
mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
check(mounts.get("tls") == "/etc/websockify/tls", f"tls mount {mounts}")
vols = {v["name"]: v for v in by_kind(t, "Deployment")[0]["spec"]["template"]["spec"]["volumes"]}
check(vols["tls"]["secret"]["secretName"] == "console-tls", f"tls secret {vols}")
cm = by_kind(t, "ConfigMap")[0]["data"]
check(cm["WEBSOCKIFY_CERT"] == "/etc/websockify/tls/tls.crt" and cm["WEBSOCKIFY_SSL_ONLY"] == "true", f"{cm}")
ing = by_kind(t, "Ingress")[0]
check(ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600", "nginx timeouts")
check(ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"]["number"] == 6080, "ingress backend")

k = rendered["tokens-values.yaml"]
cm = by_kind(k, "ConfigMap", "console-websockify")[0]["data"]
check("WEBSOCKIFY_TARGET" not in cm, "no static target with tokens")
check(cm["WEBSOCKIFY_TOKEN_PLUGIN"] == "TokenFile", f"{cm}")
check(cm["WEBSOCKIFY_TOKEN_SOURCE"] == "/etc/websockify/tokens/tokens.cfg", f"{cm}")
tokens = by_kind(k, "ConfigMap", "console-websockify-tokens")[0]["data"]["tokens.cfg"]
check("vm1: 10.0.0.11:5900" in tokens and "vm2: vnc2.internal:5901" in tokens, f"tokens {tokens!r}")

e = rendered["everything-values.yaml"]
c = env_of(by_kind(e, "Deployment")[0])
check(c["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "websockify-redis", "key": "source"}, f"redis env {c.get('env')}")
cm = by_kind(e, "ConfigMap")[0]["data"]
check(cm["WEBSOCKIFY_HEARTBEAT"] == "30" and cm["WEBSOCKIFY_IDLE_TIMEOUT"] == "0", f"settings {cm}")
check("replicas" not in by_kind(e, "Deployment")[0]["spec"], "replicas left to the HPA")
check(cm["WEBSOCKIFY_CONFIG"] == "/etc/websockify/config/websockify.toml", f"config file {cm}")
toml_cm = by_kind(e, "ConfigMap", "console-websockify-file")[0]["data"]["websockify.toml"]
check("file_only = true" in toml_cm, f"toml {toml_cm!r}")
mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
check(mounts.get("config") == "/etc/websockify/config", f"config mount {mounts}")
# The admin API's token from its Secret, as a file the proxy reads at start.
env = {v["name"]: v for v in c["env"]}
check(env.get("WEBSOCKIFY_ADMIN_TOKEN_FILE", {}).get("value") == "/etc/websockify/admin/token", f"admin env {env}")
check(mounts.get("admin") == "/etc/websockify/admin", f"admin mount {mounts}")
vols = {v["name"]: v for v in by_kind(e, "Deployment")[0]["spec"]["template"]["spec"]["volumes"]}
check(vols["admin"]["secret"]["secretName"] == "websockify-admin", f"admin volume {vols.get('admin')}")
check("WEBSOCKIFY_ADMIN_TOKEN_FILE" not in str(env_of(by_kind(d, "Deployment")[0]).get("env")), "admin API off by default")
cert = by_kind(e, "Certificate")[0]
check(cert["spec"]["secretName"] == "console-websockify-tls" and cert["spec"]["dnsNames"] == ["console.example.com"], f"{cert}")
sm = by_kind(e, "ServiceMonitor")[0]
check(sm["spec"]["endpoints"][0]["port"] == "metrics" and sm["metadata"]["labels"]["release"] == "prometheus", f"{sm}")
rule = by_kind(e, "PrometheusRule")[0]
with open(os.path.join(ROOT, "docs", "observability", "alerts.yml")) as f:
    check(rule["spec"] == yaml.safe_load(f), "PrometheusRule differs from docs/observability/alerts.yml")
ing = by_kind(e, "Ingress")[0]
check(ing["metadata"]["annotations"].get("haproxy.org/timeout-tunnel") == "3600s", "haproxy tunnel timeout")
np = by_kind(e, "NetworkPolicy")[0]
check(any(p.get("port") == 6379 for r in np["spec"]["egress"] for p in r.get("ports", [])), "redis egress")
check(by_kind(e, "HorizontalPodAutoscaler"), "HPA")
# The Grafana dashboard: the file itself, labelled for the sidecar; off by default.
dash_cm = by_kind(e, "ConfigMap", "console-websockify-dashboard")[0]
check(dash_cm["metadata"]["labels"].get("grafana_dashboard") == "1", f"dashboard label {dash_cm['metadata']}")
check(dash_cm["metadata"].get("annotations", {}).get("grafana_folder") == "Consoles", "dashboard folder")
with open(os.path.join(ROOT, "charts", "websockify", "dashboards", "websockify.json")) as f:
    check(json.loads(dash_cm["data"]["websockify.json"]) == json.load(f), "dashboard ConfigMap differs from the file")
check(not by_kind(d, "ConfigMap", "console-websockify-dashboard"), "dashboard off by default")

h = rendered["h2c-values.yaml"]
svc = by_kind(h, "Service")[0]
ws_port = [p for p in svc["spec"]["ports"] if p["name"] == "websocket"][0]
check(ws_port.get("appProtocol") == "kubernetes.io/h2c", f"appProtocol {ws_port}")
check("appProtocol" not in by_kind(d, "Service")[0]["spec"]["ports"][0], "no appProtocol by default")
ann = by_kind(h, "Ingress")[0]["metadata"]["annotations"]
check(ann.get("haproxy.org/server-proto") == "h2", f"haproxy h2 backend {ann}")
check("haproxy.org/server-proto" not in by_kind(e, "Ingress")[0]["metadata"]["annotations"], "h2 backend off by default")
for bad, says in [
    ({"ingress": {"enabled": True, "className": "nginx", "http2Backend": True}}, "speaks HTTP/1.1 to backends"),
    ({"ingress": {"enabled": True, "className": "haproxy", "http2Backend": True}, "settings": {"http2": "off"}}, "settings.http2 is off"),
    ({"metrics": {"enabled": False, "admin": {"existingSecret": "a"}}}, "needs metrics.enabled"),
]:
    try:
        chart.render(bad, name="console", namespace="vdi", is_install=True)
        failures.append(f"rendered {bad}")
    except helm.HelmError as err:
        check(says in str(err), f"error for {bad} does not say {says!r}: {err}")

# The chart's copy of the alert rules is the documented one.
with open(os.path.join(CHART, "files", "alerts.yml")) as a, open(os.path.join(ROOT, "docs", "observability", "alerts.yml")) as b:
    check(a.read() == b.read(), "charts/websockify/files/alerts.yml differs from docs/observability/alerts.yml")

# kustomize: every overlay builds and validates.
overlays = os.path.join(ROOT, "k8s", "overlays")
for overlay in sorted(os.listdir(overlays)):
    out = subprocess.run(["kubectl", "kustomize", os.path.join(overlays, overlay)], capture_output=True, text=True)
    if out.returncode != 0:
        failures.append(f"kustomize {overlay}: {out.stderr}")
        continue
    objs = [o for o in yaml.safe_load_all(out.stdout) if o]
    check(objs, f"kustomize {overlay}: nothing rendered")
    for obj in objs:
        validate(f"k8s/overlays/{overlay}", obj)
    deploys = [o for o in objs if o["kind"] == "Deployment"]
    check(len(deploys) == 1, f"{overlay}: one Deployment")
    if deploys:
        c = env_of(deploys[0])
        check(c["readinessProbe"]["httpGet"]["path"] == "/readyz", f"{overlay}: readiness")
    if overlay == "tls-tokens":
        cm = [o for o in objs if o["kind"] == "ConfigMap" and "WEBSOCKIFY_TOKEN_PLUGIN" in o.get("data", {})]
        check(cm, f"{overlay}: token settings")
        check(any(v.get("secret", {}).get("secretName") == "websockify-tls"
                  for v in deploys[0]["spec"]["template"]["spec"]["volumes"]), f"{overlay}: TLS secret")

if failures:
    print("\n".join(failures))
    sys.exit(1)
print(f"chart: {len(rendered)} values files, k8s: {len(os.listdir(overlays))} overlays, all valid")
