"""The compose cluster (deploy/docker/compose.yaml) as a user runs it: the image built by
deploy/docker/build-image.sh, `up -d`, `spate cluster wait` from the host.

- three containers turn healthy (the image's HEALTHCHECK is `spate health`);
- kcat on the host lists 3 brokers at their published EXTERNAL addresses, and produces
  and consumes through them;
- a client container on the compose network reaches the same cluster through the
  INTERNAL listener (it could not use the host's 127.0.0.1 addresses);
- `deploy/docker/roll.sh` restarts the nodes one by one under a continuous idempotent
  acks=all producer on the host: nothing fails, nothing acknowledged is lost.

Host ports are free ports chosen per run (SPATE_EXTERNAL_PORT_1..3), not 29092-29094,
so the test does not collide with a cluster a developer runs.
"""
from __future__ import annotations

import os
import re
import subprocess

import pytest

from conftest import REPO_ROOT, free_port, spate_binary
from docker_support import (COMPOSE_FILE, build_image, compose_command, container_logs, health,
                            require_docker, run, unique)
from test_local_cluster import wait_until
from test_replication import read_partition
from test_rolling_restart import PARTITIONS, ContinuousProducer

pytestmark = pytest.mark.timeout(600)


class Compose:
    def __init__(self, image: str):
        self.project = unique("spatetest")
        self.ports = [free_port() for _ in range(3)]
        self.env = dict(os.environ, SPATE_IMAGE=image,
                        **{f"SPATE_EXTERNAL_PORT_{n}": str(p) for n, p in zip((1, 2, 3), self.ports)})
        self.base = compose_command() + ["-f", str(COMPOSE_FILE), "-p", self.project]
        self.bootstrap = ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def __call__(self, *args: str, timeout: float = 180) -> str:
        return run(*self.base, *args, timeout=timeout, env=self.env).stdout

    def containers(self) -> list[str]:
        out = run("docker", "ps", "-a", "--filter", f"label=com.docker.compose.project={self.project}",
                  "--format", "{{.Names}}").stdout.split()
        return sorted(out)

    @property
    def network(self) -> str:
        return f"{self.project}_spate"

    def logs(self) -> str:
        return container_logs(self.containers())


@pytest.fixture(scope="module")
def compose():
    require_docker()
    image = build_image()
    c = Compose(image)
    try:
        c("up", "-d")
        r = subprocess.run([str(spate_binary()), "cluster", "wait", "--bootstrap", c.bootstrap,
                            "--brokers", "3", "--timeout-ms", "120000"],
                           capture_output=True, text=True, timeout=150)
        assert r.returncode == 0, f"{r.stdout}{r.stderr}\n{c.logs()}"
        yield c
    finally:
        subprocess.run(c.base + ["down", "-v", "-t", "30"], env=c.env, capture_output=True, timeout=300)


def client(compose: Compose, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
    """The spate CLI in a container on the compose network."""
    cmd = ["docker", "run", "--rm", "-i", "--network", compose.network, compose.env["SPATE_IMAGE"], *args]
    return run(*cmd, input=stdin, timeout=timeout).stdout


def test_three_healthy_nodes_reachable_from_the_host_and_from_the_network(compose):
    names = compose.containers()
    assert len(names) == 3, names
    wait_until(lambda: all(health(n) == "healthy" for n in names), 120,
               f"3 healthy containers ({[health(n) for n in names]})")

    # kcat on the host: 3 brokers, each at its published EXTERNAL address.
    listing = run("kcat", "-L", "-b", f"127.0.0.1:{compose.ports[0]}").stdout
    assert " 3 brokers:" in listing, listing
    for n, port in zip((1, 2, 3), compose.ports):
        assert re.search(rf"broker {n} at 127\.0\.0\.1:{port}\b", listing), listing

    topic = unique("compose-")
    run(str(spate_binary()), "topic", "create", topic, "--partitions", "3", "--replication-factor", "3",
        "--bootstrap", compose.bootstrap)
    host_values = [f"host-{i}" for i in range(20)]
    run("kcat", "-P", "-b", compose.bootstrap, "-t", topic, "-X", "acks=all",
        input="\n".join(host_values) + "\n")

    # A client container uses the INTERNAL listener: Metadata gives it spate-N:9092.
    inside_values = [f"inside-{i}" for i in range(20)]
    client(compose, "produce", "--bootstrap", "spate-2:9092", "--topic", topic,
           stdin="\n".join(inside_values) + "\n")
    seen_inside = client(compose, "consume", "--bootstrap", "spate-3:9092", "--topic", topic,
                         "--from", "beginning", "--count", "40", "--timeout-ms", "20000").split()
    assert sorted(seen_inside) == sorted(host_values + inside_values)

    # And the host reads all of it through EXTERNAL.
    seen_host = run("kcat", "-C", "-b", compose.bootstrap, "-t", topic, "-o", "beginning", "-e", "-q",
                    timeout=60).stdout.split()
    assert sorted(seen_host) == sorted(host_values + inside_values)


def test_rolling_restart_under_acks_all_load_fails_and_loses_nothing(compose):
    topic = unique("compose-roll-")
    run(str(spate_binary()), "topic", "create", topic, "--partitions", str(PARTITIONS),
        "--replication-factor", "3", "--config", "min.insync.replicas=2", "--bootstrap", compose.bootstrap)
    producer = ContinuousProducer(compose.bootstrap, topic)
    producer.thread.start()
    try:
        wait_until(lambda: producer.count() >= 1000, 60, "1000 acknowledged sends")
        roll = run("bash", str(REPO_ROOT / "deploy/docker/roll.sh"), "-p", compose.project,
                   timeout=400, env=compose.env)
        for n in (1, 2, 3):
            assert f"spate-{n} restarted; all brokers up and every partition in sync" in roll.stdout, \
                roll.stdout + roll.stderr
        before = producer.count()
        wait_until(lambda: producer.count() >= before + 1000, 60, "writes after the roll")
    finally:
        producer.stop.set()
        producer.thread.join(150)

    assert producer.failed == 0, f"{producer.failed} sends failed: {producer.errors}"
    for partition in range(PARTITIONS):
        records = read_partition(compose.bootstrap, topic, partition)
        by_offset = dict(records)
        values = [v for _, v in records]
        assert len(set(values)) == len(values), f"partition {partition}: a value appears twice"
        lost = [(o, v) for p, o, v in producer.acked if p == partition and by_offset.get(o) != v]
        assert not lost, f"partition {partition}: {len(lost)} acknowledged records lost, e.g. {lost[:5]}"
    print(f"acked={producer.count()} failed={producer.failed}")
