"""The Kubernetes manifests of deploy/k8s: `kubectl kustomize` renders them, every object
is valid against the Kubernetes OpenAPI schema (strict: unknown fields fail), and the
facts the cluster depends on hold — three voters named after the StatefulSet ordinals,
peer DNS before readiness, probes on the admin port, a drain before shutdown, only
SPATE_* keys the server knows.

Needs `kubectl` (for its built-in kustomize; skipped without it) and the Python packages
kubernetes-validate and PyYAML from requirements.txt. No cluster, no broker.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = REPO_ROOT / "deploy" / "k8s"

# The schema version objects are validated against; kubernetes-validate ships schemas for
# this one (kubernetes_validate.utils.all_versions()). An old-ish release on purpose: the
# manifests should apply to clusters that are not on the newest Kubernetes.
K8S_VERSION = "1.30.0"

# Every SPATE_* variable `spate server` knows. It only warns about any other and runs on
# without it, so a key outside this list would silently have no effect.
ALLOWED_SPATE_KEYS = {
    "SPATE_NODE_ID",
    "SPATE_PROCESS_ROLES",
    "SPATE_LISTENERS",
    "SPATE_ADVERTISED_LISTENERS",
    "SPATE_CONTROLLER_LISTENER",
    "SPATE_REPLICATION_LISTENER",
    "SPATE_ADMIN_LISTENER",
    "SPATE_CONTROLLER_QUORUM_VOTERS",
    "SPATE_LOG_DIRS",
    "SPATE_DEFAULT_REPLICATION_FACTOR",
    "SPATE_NUM_PARTITIONS",
    "SPATE_BROKER_SESSION_TIMEOUT_MS",
    "SPATE_BROKER_HEARTBEAT_INTERVAL_MS",
    "SPATE_REPLICA_LAG_TIME_MAX_MS",
    "SPATE_OFFSETS_TOPIC_NUM_PARTITIONS",
    "SPATE_AUTO_CREATE_TOPICS_ENABLE",
    "SPATE_SOCKET_REQUEST_MAX_BYTES",
    "SPATE_CONTROLLED_SHUTDOWN_TIMEOUT_MS",
    "SPATE_LEADER_IMBALANCE_CHECK_INTERVAL_SECONDS",
    "SPATE_CLUSTER_ID",
    "SPATE_INTER_BROKER_LISTENER_NAME",
}

ADMIN_PORT = 9095


@pytest.fixture(scope="module")
def objects() -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not found on PATH: it renders deploy/k8s (kubectl kustomize)")
    proc = subprocess.run(
        [kubectl, "kustomize", str(K8S_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"kubectl kustomize failed:\n{proc.stderr}"
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d is not None]
    assert docs, "kubectl kustomize rendered nothing"
    return docs


def one(objects: list[dict], kind: str, name: str | None = None) -> dict:
    found = [
        o
        for o in objects
        if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def statefulset(objects) -> dict:
    return one(objects, "StatefulSet")


@pytest.fixture(scope="module")
def container(statefulset) -> dict:
    containers = statefulset["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


@pytest.fixture(scope="module")
def config(objects, container) -> dict:
    refs = [e["configMapRef"]["name"] for e in container.get("envFrom", []) if "configMapRef" in e]
    assert refs == ["spate-config"], refs
    return one(objects, "ConfigMap", "spate-config")["data"]


def test_schema_version_is_shipped():
    assert kubernetes_validate.utils.major_minor(K8S_VERSION) in {
        kubernetes_validate.utils.major_minor(v) for v in kubernetes_validate.utils.all_versions()
    }


def test_renders_expected_objects(objects):
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in objects)
    assert kinds == [
        ("ConfigMap", "spate-config"),
        ("PodDisruptionBudget", "spate"),
        ("Service", "spate"),
        ("Service", "spate-headless"),
        ("StatefulSet", "spate"),
    ]
    for o in objects:
        assert o["metadata"]["labels"]["app.kubernetes.io/name"] == "spate", o["kind"]
        # Namespace-agnostic: `kubectl apply -k deploy/k8s -n NS` must work.
        assert "namespace" not in o["metadata"], o["kind"]


def test_objects_are_schema_valid(objects):
    errors = []
    for o in objects:
        where = f"{o['kind']}/{o['metadata']['name']}"
        try:
            kubernetes_validate.validate(o, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            errors.append(f"{where}: {path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            errors.append(f"{where}: {e.message}")
    assert not errors, "\n".join(errors)


def test_strict_validation_rejects_unknown_fields(statefulset):
    # Guards the test above: strict mode really is on and really checks nested fields.
    import copy

    bad = copy.deepcopy(statefulset)
    bad["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_statefulset_shape(objects, statefulset):
    spec = statefulset["spec"]
    assert spec["replicas"] == 3
    headless = one(objects, "Service", spec["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    # Peers resolve each other before they are Ready (a quorum forms before readiness).
    assert headless["spec"]["publishNotReadyAddresses"] is True
    # OrderedReady would deadlock: spate-0 cannot be Ready without a controller majority.
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["updateStrategy"]["type"] == "RollingUpdate"

    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    for svc in (headless, one(objects, "Service", "spate")):
        assert svc["spec"]["selector"].items() <= labels.items(), svc["metadata"]["name"]

    pod = spec["template"]["spec"]
    # A Service named `spate` would otherwise inject SPATE_PORT etc., which the server
    # ignores but warns about at every start.
    assert pod["enableServiceLinks"] is False
    assert pod["terminationGracePeriodSeconds"] >= 60

    (vct,) = spec["volumeClaimTemplates"]
    assert vct["metadata"]["name"] == "data"
    assert vct["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert vct["spec"]["resources"]["requests"]["storage"] == "10Gi"


def test_client_service(objects):
    svc = one(objects, "Service", "spate")
    assert svc["spec"].get("clusterIP") != "None"
    assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(9092, "kafka")]


def test_container_ports_and_probes(container):
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"kafka": 9092, "controller": 9093, "replication": 9094, "admin": ADMIN_PORT}

    def http(probe: str) -> tuple[str, int]:
        get = container[probe]["httpGet"]
        port = get["port"]
        return get["path"], ports[port] if isinstance(port, str) else port

    assert http("readinessProbe") == ("/readyz", ADMIN_PORT)
    assert http("livenessProbe") == ("/healthz", ADMIN_PORT)
    assert http("startupProbe") == ("/healthz", ADMIN_PORT)
    startup = container["startupProbe"]
    budget = startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3)
    assert 90 <= budget <= 180, f"startupProbe allows {budget} s, expected about 2 minutes"


def test_prestop_drains_within_grace_period(statefulset, container, config):
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert Path(command[0]).name == "spate" and command[1] == "drain", command
    assert f"127.0.0.1:{ADMIN_PORT}" in command
    assert "--timeout" not in command, "spate drain takes --timeout-ms MS"
    timeout_ms = command[command.index("--timeout-ms") + 1]
    assert re.fullmatch(r"\d+", timeout_ms), timeout_ms
    # preStop, then controlled shutdown on SIGTERM (SPATE_CONTROLLED_SHUTDOWN_TIMEOUT_MS,
    # default 30 s), must fit in the grace period.
    shutdown_ms = int(config.get("SPATE_CONTROLLED_SHUTDOWN_TIMEOUT_MS", "30000"))
    grace = statefulset["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert (int(timeout_ms) + shutdown_ms) / 1000 < grace


def test_security_context(statefulset, container):
    pod_sc = statefulset["spec"]["template"]["spec"]["securityContext"]
    sc = {**pod_sc, **container.get("securityContext", {})}
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 65532 and sc["runAsGroup"] == 65532
    assert pod_sc["fsGroup"] == 65532
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"data": "/var/lib/spate"}


def test_pdb(objects, statefulset):
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_voters_are_the_statefulset_ordinals(statefulset, config):
    replicas = statefulset["spec"]["replicas"]
    name = statefulset["metadata"]["name"]
    headless = statefulset["spec"]["serviceName"]
    expected = [f"{n}@{name}-{n}.{headless}:9093" for n in range(replicas)]
    assert config["SPATE_CONTROLLER_QUORUM_VOTERS"].split(",") == expected
    # node.id comes from the ordinal (trailing -N of the host name), so the voter ids
    # above are the pods' ids.
    assert config["SPATE_NODE_ID"] == "hostname"
    assert config["SPATE_CONTROLLER_LISTENER"].endswith(":9093")
    assert config["SPATE_ADMIN_LISTENER"].endswith(f":{ADMIN_PORT}")
    assert config["SPATE_LOG_DIRS"].startswith("/var/lib/spate/")


def test_only_known_spate_keys(container, config):
    env_names = [e["name"] for e in container.get("env", [])]
    used = {k for k in [*config, *env_names] if k.startswith("SPATE_")}
    assert used, "no SPATE_ keys found"
    assert not used - ALLOWED_SPATE_KEYS, f"unknown to the server: {sorted(used - ALLOWED_SPATE_KEYS)}"
    # Keys are set in one place only, so nobody edits the ConfigMap to no effect.
    assert not set(config) & set(env_names)
    # ConfigMap values must be strings to Kubernetes; YAML would turn true/3 into bool/int.
    assert all(isinstance(v, str) for v in config.values())


def test_advertised_listener_per_pod(container, config):
    env = container["env"]
    names = [e["name"] for e in env]
    for var in ("POD_NAME", "POD_NAMESPACE"):
        assert var in names
    by_name = {e["name"]: e for e in env}
    assert by_name["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert by_name["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    advertised = by_name["SPATE_ADVERTISED_LISTENERS"]["value"]
    # $(VAR) only expands variables defined earlier in the list.
    for var in re.findall(r"\$\((\w+)\)", advertised):
        assert names.index(var) < names.index("SPATE_ADVERTISED_LISTENERS"), var
    assert advertised.endswith(
        "://$(POD_NAME).spate-headless.$(POD_NAMESPACE).svc.cluster.local:9092"
    )
    # Every advertised listener names a listener the pod binds, and the inter-broker one
    # (explicit, else the first) is the per-pod address on the kafka port.
    bound = dict(lst.split("://", 1) for lst in config["SPATE_LISTENERS"].split(","))
    adv = dict(lst.split("://", 1) for lst in advertised.split(","))
    assert set(adv) <= set(bound), (adv, bound)
    inter_broker = config.get("SPATE_INTER_BROKER_LISTENER_NAME", next(iter(bound)))
    assert inter_broker in adv, (inter_broker, adv)
    assert bound[inter_broker] == "0.0.0.0:9092"
    assert adv[inter_broker].endswith(".spate-headless.$(POD_NAMESPACE).svc.cluster.local:9092")
