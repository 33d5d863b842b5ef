"""Shared pieces of the container tests: is Docker usable, build the image once per
session, run docker / compose commands.

Without a usable Docker engine the container tests are skipped, except under CI=true,
where they fail: CI has Docker and must run them.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import REPO_ROOT, spate_binary

IMAGE = os.environ.get("SPATE_TEST_IMAGE", "spate:test")
_built: dict[str, str] = {}


def docker_usable() -> str | None:
    """None when `docker info` works, else why not."""
    if shutil.which("docker") is None:
        return "docker not found on PATH"
    r = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    return None if r.returncode == 0 else f"docker info failed: {r.stderr.strip()[:200]}"


def require_docker() -> None:
    why = docker_usable()
    if why is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"container tests need Docker in CI: {why}")
    pytest.skip(why)


def run(*args: str, timeout: float = 120, check: bool = True, input: str | None = None,
        env: dict | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, input=input,
                       env=env)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {r.returncode}\nstdout: {r.stdout[-3000:]}\n"
                             f"stderr: {r.stderr[-3000:]}")
    return r


def build_image() -> str:
    """deploy/docker/build-image.sh with the binary under test, once per session."""
    if IMAGE not in _built:
        env = dict(os.environ, SPATE_BIN=str(spate_binary()), SPATE_IMAGE=IMAGE)
        r = run("bash", str(REPO_ROOT / "deploy/docker/build-image.sh"), timeout=600, env=env)
        _built[IMAGE] = r.stdout.strip()
    return IMAGE


def compose_command() -> list[str]:
    """`docker compose` (v2) when present, else `docker-compose` (v1)."""
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("neither `docker compose` nor `docker-compose` is installed")


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def container_logs(names: list[str], tail: int = 80) -> str:
    out = []
    for name in names:
        r = subprocess.run(["docker", "logs", "--tail", str(tail), name], capture_output=True,
                           text=True, timeout=30)
        out.append(f"--- {name} ---\n{r.stdout}{r.stderr}")
    return "\n".join(out)


def health(container: str) -> str:
    r = subprocess.run(["docker", "inspect", "-f", "{{.State.Health.Status}}", container],
                       capture_output=True, text=True, timeout=30)
    return r.stdout.strip()


COMPOSE_FILE = Path(REPO_ROOT) / "deploy/docker/compose.yaml"
