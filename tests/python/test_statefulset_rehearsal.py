"""A dress rehearsal of deploy/k8s on Docker, for machines without Kubernetes.

`kubectl kustomize deploy/k8s` is rendered and its StatefulSet is played out as three
containers, with exactly the rendered configuration: the ConfigMap (envFrom) and the
container's env (downward-API fields and `$(VAR)` references resolved as the kubelet
would, for pods spate-0..2 in namespace `default`), the container's command/args (or the
image's), its securityContext (user, read-only root, no capabilities, no privilege
escalation) and memory limit. Each container gets the pod's host name (`spate-N`, from
which the server takes its node id), a named volume at the volumeMount, and the DNS names
the headless Service gives the pod (`spate-N.spate-headless[.default.svc.cluster.local]`)
as network aliases; every pod also answers to the client Service's names
(`spate[.default.svc[.cluster.local]]`, round-robin DNS like a ClusterIP in front of all
pods). The three are started together (podManagementPolicy: Parallel).

Only the image differs: the rendered `spate:latest` is replaced by an image built from
the binary under test (deploy/docker/build-image.sh, via docker_support.build_image).

The test then checks what the manifests promise: all pods become Ready, the node ids are
the ordinals, every broker is registered and unfenced at its advertised per-pod name,
clients bootstrapping from the Service produce and consume through a replicated topic,
and the rendered preStop hook drains a pod (not Ready any more, no partition led by it)
before `docker stop` (SIGTERM) makes it exit cleanly.

Needs Docker (skipped without it, failed under CI=true) and kubectl (for kustomize).
"""
from __future__ import annotations

import io
import re
import shutil
import subprocess
import tarfile
import time

import pytest
import yaml

from conftest import REPO_ROOT
from docker_support import build_image, container_logs, require_docker, run, unique

K8S_DIR = REPO_ROOT / "deploy" / "k8s"
NAMESPACE = "default"
READY_TIMEOUT_S = 120
# A rehearsal of the whole StatefulSet: image build, start, checks, drain and stop.
pytestmark = pytest.mark.timeout(240)


# --- the rendered manifests ---------------------------------------------------------------


def render() -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not found on PATH: it renders deploy/k8s (kubectl kustomize)")
    r = run(kubectl, "kustomize", str(K8S_DIR), timeout=60)
    return [d for d in yaml.safe_load_all(r.stdout) if d is not None]


def one(objects: list[dict], kind: str, name: str | None = None) -> dict:
    found = [o for o in objects
             if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: defined variables are substituted, `$$` escapes a
    `$`, and a reference to an undefined variable stays as it is."""
    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return _REF.sub(sub, value)


def pod_env(objects: list[dict], container: dict, pod_name: str) -> dict[str, str]:
    """The container's environment as the kubelet builds it for `pod_name`: envFrom first,
    then env in order (later entries override, `$(VAR)` sees only what came before)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert set(source) <= {"configMapRef", "prefix"}, f"unsupported envFrom: {source}"
        data = one(objects, "ConfigMap", source["configMapRef"]["name"]).get("data", {})
        for key, value in data.items():
            env[source.get("prefix", "") + key] = value
    fields = {"metadata.name": pod_name, "metadata.namespace": NAMESPACE}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = expand(var["value"], env)
        elif "fieldRef" in var.get("valueFrom", {}):
            path = var["valueFrom"]["fieldRef"]["fieldPath"]
            assert path in fields, f"{var['name']}: fieldRef {path} not rehearsed here"
            env[var["name"]] = fields[path]
        elif "configMapKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["configMapKeyRef"]
            env[var["name"]] = one(objects, "ConfigMap", ref["name"])["data"][ref["key"]]
        else:
            pytest.fail(f"env {var['name']}: source not rehearsed here: {var}")
    return env


def memory_bytes(quantity: str) -> int:
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?", quantity)
    assert m, quantity
    scale = {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
             "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}[m.group(2)]
    return int(m.group(1)) * scale


# --- the rehearsal cluster ----------------------------------------------------------------


class Rehearsal:
    """Docker network, volumes and one container per StatefulSet ordinal."""

    def __init__(self, objects: list[dict], image: str):
        self.objects = objects
        self.image = image
        self.sts = one(objects, "StatefulSet")
        self.pod_spec = self.sts["spec"]["template"]["spec"]
        (self.container,) = self.pod_spec["containers"]
        self.name = self.sts["metadata"]["name"]
        self.headless = self.sts["spec"]["serviceName"]
        self.replicas = self.sts["spec"]["replicas"]
        self.prefix = unique("rehearsal-")
        self.label = f"spate.rehearsal={self.prefix}"
        self.network = f"{self.prefix}-net"
        self.pods = [f"{self.name}-{n}" for n in range(self.replicas)]
        self.containers = [f"{self.prefix}-{pod}" for pod in self.pods]
        self.volumes: list[str] = []
        self.client_service = one(objects, "Service", self.name)

    # DNS names as Kubernetes gives them, on the docker network.
    def pod_fqdn(self, pod: str) -> str:
        return f"{pod}.{self.headless}.{NAMESPACE}.svc.cluster.local"

    def pod_aliases(self, pod: str) -> list[str]:
        return [f"{pod}.{self.headless}", f"{pod}.{self.headless}.{NAMESPACE}",
                f"{pod}.{self.headless}.{NAMESPACE}.svc", self.pod_fqdn(pod)]

    def service_aliases(self) -> list[str]:
        svc = self.client_service["metadata"]["name"]
        return [svc, f"{svc}.{NAMESPACE}", f"{svc}.{NAMESPACE}.svc",
                f"{svc}.{NAMESPACE}.svc.cluster.local"]

    @property
    def bootstrap(self) -> str:
        """The client Service, as a client in another namespace would name it."""
        svc = self.client_service["metadata"]["name"]
        (port,) = [p["port"] for p in self.client_service["spec"]["ports"]]
        return f"{svc}.{NAMESPACE}.svc:{port}"

    def create(self) -> None:
        run("docker", "network", "create", "--label", self.label, self.network)
        c = self.container
        sc = {**self.pod_spec.get("securityContext", {}), **c.get("securityContext", {})}
        (mount,) = c["volumeMounts"]
        image_args: list[str] = []
        docker_opts: list[str] = []
        if "command" in c:
            # command replaces the image's ENTRYPOINT (and drops its CMD).
            docker_opts += ["--entrypoint", c["command"][0]]
            image_args += c["command"][1:]
        if sc.get("runAsUser") is not None:
            docker_opts += ["--user", f"{sc['runAsUser']}:{sc.get('runAsGroup', sc['runAsUser'])}"]
        if sc.get("readOnlyRootFilesystem"):
            docker_opts.append("--read-only")
        for cap in sc.get("capabilities", {}).get("drop", []):
            docker_opts += ["--cap-drop", cap]
        if sc.get("allowPrivilegeEscalation") is False:
            docker_opts += ["--security-opt", "no-new-privileges"]
        limit = c.get("resources", {}).get("limits", {}).get("memory")
        if limit:
            docker_opts += ["--memory", str(memory_bytes(limit))]
        for pod, container in zip(self.pods, self.containers):
            env = pod_env(self.objects, c, pod)
            args = [expand(a, env) for a in image_args] + [expand(a, env) for a in c.get("args", [])]
            volume = f"{container}-{mount['name']}"
            run("docker", "volume", "create", "--label", self.label, volume)
            self.volumes.append(volume)
            cmd = ["docker", "create", "--name", container, "--label", self.label,
                   "--hostname", pod, "--network", self.network,
                   "-v", f"{volume}:{mount['mountPath']}", *docker_opts]
            for alias in self.pod_aliases(pod) + self.service_aliases():
                cmd += ["--network-alias", alias]
            for key, value in env.items():
                cmd += ["-e", f"{key}={value}"]
            run(*cmd, self.image, *args)
        # podManagementPolicy: Parallel — every pod is created at once.
        run("docker", "start", *self.containers)

    def destroy(self) -> None:
        ids = run("docker", "ps", "-aq", "--filter", f"label={self.label}", check=False)
        if ids.stdout.split():
            run("docker", "rm", "-f", "-v", *ids.stdout.split(), check=False, timeout=120)
        for volume in self.volumes:
            run("docker", "volume", "rm", "-f", volume, check=False)
        run("docker", "network", "rm", self.network, check=False)

    def client(self, *args: str, input: str | None = None, timeout: float = 90,
               check: bool = True) -> subprocess.CompletedProcess:
        """`spate ARGS` in a throwaway container on the cluster network (a client pod)."""
        name = f"{self.prefix}-client-{unique('')}"
        stdin = ["-i"] if input is not None else []
        return run("docker", "run", "--rm", *stdin, "--name", name, "--label", self.label,
                   "--network", self.network, self.image, *args, input=input,
                   timeout=timeout, check=check)

    def exec(self, container: str, *args: str, timeout: float = 60,
             check: bool = True) -> subprocess.CompletedProcess:
        return run("docker", "exec", container, *args, timeout=timeout, check=check)

    def ready(self, container: str) -> bool:
        """The readiness probe: /readyz on the admin port, from inside the pod."""
        r = self.exec(container, "/spate", "health", "--quiet", "--timeout-ms", "2000",
                      timeout=30, check=False)
        return r.returncode == 0

    def logs(self) -> str:
        # The server colours its log even when it is not writing to a terminal.
        return re.sub(r"\x1b\[[0-9;]*m", "", container_logs(self.containers, tail=120))


@pytest.fixture
def rehearsal():
    require_docker()
    objects = render()
    image = build_image()
    r = Rehearsal(objects, image)
    try:
        r.create()
        yield r
    finally:
        r.destroy()


# --- the test -----------------------------------------------------------------------------


def leaders(describe: str) -> dict[int, int | None]:
    """Partition -> leader id from `spate topic describe`."""
    out = {}
    for m in re.finditer(r"Partition: (\d+)\tLeader: (\w+)", describe):
        out[int(m.group(1))] = None if m.group(2) == "none" else int(m.group(2))
    return out


def test_statefulset_rehearsal(rehearsal: Rehearsal):
    r = rehearsal
    try:
        rehearse(r)
    except (AssertionError, subprocess.TimeoutExpired) as e:
        raise AssertionError(f"{e}\n\n===== container logs =====\n{r.logs()}") from e


def rehearse(r: Rehearsal) -> None:
    started = time.monotonic()
    assert r.sts["spec"]["podManagementPolicy"] == "Parallel"

    # 1. Every pod becomes Ready (what `kubectl rollout status` waits for).
    deadline = started + READY_TIMEOUT_S
    pending = set(r.containers)
    while pending and time.monotonic() < deadline:
        for container in sorted(pending):
            state = run("docker", "inspect", "-f", "{{.State.Status}}", container).stdout.strip()
            assert state == "running", f"{container} is {state}, not running"
            if r.ready(container):
                pending.discard(container)
        if pending:
            time.sleep(1)
    assert not pending, f"not Ready within {READY_TIMEOUT_S} s: {sorted(pending)}"
    ready_s = time.monotonic() - started
    # As the kubelet probes: /readyz at the readinessProbe's port on the pod's address, not
    # on loopback (the admin listener must not be bound to 127.0.0.1 only).
    probe = r.container["readinessProbe"]["httpGet"]
    assert probe["path"] == "/readyz", probe
    ports = {p["name"]: p["containerPort"] for p in r.container["ports"]}
    admin_port = ports[probe["port"]] if isinstance(probe["port"], str) else probe["port"]
    for pod in r.pods:
        r.client("health", "--quiet", "--admin", f"{r.pod_fqdn(pod)}:{admin_port}")

    # 2. node.id = ordinal, all registered and unfenced at their advertised per-pod names.
    voters = pod_env(r.objects, r.container, r.pods[0])["SPATE_CONTROLLER_QUORUM_VOTERS"]
    first_voter = voters.split(",")[0].split("@", 1)[1]
    assert first_voter == f"{r.pods[0]}.{r.headless}:9093", voters
    info = r.client("cluster", "info", "--controllers", first_voter).stdout
    for n, pod in enumerate(r.pods):
        assert re.search(rf"^  voter {n} at {re.escape(pod)}\.{r.headless}:9093\b", info, re.M), info
        assert re.search(rf"^  broker {n} epoch \d+ unfenced at {re.escape(r.pod_fqdn(pod))}:9092$",
                         info, re.M), info
    assert len(re.findall(r"^  broker ", info, re.M)) == r.replicas, info
    assert re.search(r"^  leader: \d+ ", info, re.M), info
    r.client("cluster", "wait", "--bootstrap", f"{r.pod_fqdn(r.pods[0])}:9092",
             "--brokers", str(r.replicas), "--timeout-ms", "30000")

    # The volume holds the server's data, written by the non-root user of the pod.
    uid = r.pod_spec["securityContext"]["runAsUser"]
    mount = r.container["volumeMounts"][0]["mountPath"]
    tar = subprocess.run(["docker", "cp", f"{r.containers[0]}:{mount}", "-"],
                         capture_output=True, timeout=60)
    assert tar.returncode == 0, tar.stderr.decode(errors="replace")
    with tarfile.open(fileobj=io.BytesIO(tar.stdout)) as t:
        written = [m for m in t.getmembers() if m.isfile() and "/data/" in m.name
                   and not m.name.endswith(".keep")]
    assert written, "nothing written under the log dir on the volume"
    assert {m.uid for m in written} == {uid}, sorted({(m.name, m.uid) for m in written})

    # 3. Clients bootstrap from the Service, then dial the advertised per-pod names.
    topic = unique("rehearsal-")
    r.client("topic", "create", topic, "--partitions", "3", "--replication-factor", "3",
             "--bootstrap", r.bootstrap)
    lines = [f"record-{i}" for i in range(10)]
    r.client("produce", "--bootstrap", r.bootstrap, "--topic", topic, "--acks", "all",
             input="\n".join(lines) + "\n")
    consumed = r.client("consume", "--bootstrap", r.bootstrap, "--topic", topic,
                        "--from", "beginning", "--count", str(len(lines)),
                        "--timeout-ms", "30000").stdout.split()
    assert sorted(consumed) == sorted(lines), consumed

    # 4. The preStop hook, exactly as rendered, on spate-1: it drains the broker.
    victim_n = 1
    victim = r.containers[victim_n]
    r.client("cluster", "wait", "--bootstrap", r.bootstrap, "--brokers", str(r.replicas),
             "--in-sync", "--timeout-ms", "30000")
    before = leaders(r.client("topic", "describe", topic, "--bootstrap", r.bootstrap).stdout)
    prestop = r.container["lifecycle"]["preStop"]["exec"]["command"]
    t0 = time.monotonic()
    hook = r.exec(victim, *prestop, timeout=60, check=False)
    drain_s = time.monotonic() - t0
    assert hook.returncode == 0, (
        f"preStop {prestop} exited {hook.returncode}\n{hook.stdout}\n{hook.stderr}")
    assert '"drained":true' in hook.stdout.replace(" ", ""), hook.stdout
    # Out of the Service at once: the readiness probe fails from the end of the hook on.
    assert not r.ready(victim), "still Ready (/readyz) after the preStop drain:\n" + r.exec(
        victim, "/spate", "health", check=False).stdout
    # The drain returns once the drained broker's own metadata shows it leading nothing;
    # the broker that answers the client may apply that image a moment later.
    deadline = time.monotonic() + 10
    while True:
        describe = r.client("topic", "describe", topic, "--bootstrap", r.bootstrap).stdout
        after = leaders(describe)
        if victim_n not in after.values() or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(after) == 3, describe
    assert victim_n not in after.values(), f"broker {victim_n} still leads:\n{describe}"
    assert None not in after.values(), f"a partition lost its leader:\n{describe}"

    # 5. The kubelet's SIGTERM after the hook: a clean, prompt exit.
    grace = r.pod_spec["terminationGracePeriodSeconds"]
    t0 = time.monotonic()
    run("docker", "stop", "-t", str(min(grace, 60)), victim, timeout=grace + 30)
    stop_s = time.monotonic() - t0
    code = run("docker", "inspect", "-f", "{{.State.ExitCode}}", victim).stdout.strip()
    assert code == "0", f"{victim} exited {code} after SIGTERM"
    assert stop_s < min(grace, 60) - 5, f"docker stop took {stop_s:.1f} s: SIGKILLed?"

    # The rest of the cluster still serves the topic (leaders moved, not lost).
    consumed = r.client("consume", "--bootstrap", r.bootstrap, "--topic", topic,
                        "--from", "beginning", "--count", str(len(lines)),
                        "--timeout-ms", "30000").stdout.split()
    assert sorted(consumed) == sorted(lines), consumed
    print(f"Ready after {ready_s:.1f} s, leadership before drain {before}, after {after}, "
          f"drain {drain_s:.1f} s, stop {stop_s:.1f} s, total {time.monotonic() - started:.1f} s")
