"""The chaos suite's CI smoke subset (the full matrix is documented in docs/chaos.md).

Each test runs the chaos binary (`target/debug/chaos`, built by `cargo build --workspace`)
against the spate binary under test, and checks its exit code and `summary.json`:
kill-leader, pause-leader, isolate-leader and isolate-controller on the process backend,
a real network
partition on the docker backend, librdkafka as the judged client once, and the self-test:
a deliberately unsafe broker build (acks=all answered before the high watermark) under
isolate-leader must be reported as losing acknowledged writes.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, spate_binary
from docker_support import build_image, require_docker

DURATION = os.environ.get("SPATE_CHAOS_SMOKE_DURATION", "40")
# Recovery is judged per partition, within the runner's default bound (30 s).
RECOVERY_BOUND_MS = os.environ.get("SPATE_CHAOS_SMOKE_RECOVERY_MS", "30000")


def chaos_binary() -> Path:
    return Path(os.environ.get("SPATE_CHAOS_BIN", REPO_ROOT / "target" / "debug" / "chaos"))


def run_chaos(args: list[str], out: Path, timeout: float = 600) -> tuple[int, dict, str]:
    env = dict(os.environ, SPATE_BIN=str(spate_binary()), RUST_LOG="info,spate_client=warn")
    r = subprocess.run([str(chaos_binary()), *args, "--out", str(out)], capture_output=True, text=True,
                       timeout=timeout, env=env)
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return r.returncode, summary, r.stdout + r.stderr[-6000:]


def assert_passed(rc: int, summary: dict, output: str):
    failed = [c for c in summary.get("checks", []) if c.get("judged") and not c.get("pass")]
    assert rc == 0 and summary.get("verdict") == "pass", f"rc={rc} failed checks={failed}\n{output}"
    assert summary["acked"] > 100, f"too few acknowledged writes to judge anything: {summary['acked']}"
    assert summary["lost"] == 0 and summary["duplicates"] == 0
    # Faults were really injected (nemesis windows in the report).
    return summary


@pytest.mark.timeout(600)
@pytest.mark.parametrize("scenario", ["kill-leader", "pause-leader", "isolate-leader",
                                      "isolate-controller"])
def test_process_scenario_loses_nothing(scenario, tmp_path):
    rc, summary, output = run_chaos(["run", "--backend", "process", "--scenario", scenario,
                                     "--duration", DURATION, "--seed", "7",
                                     "--recovery-bound-ms", RECOVERY_BOUND_MS], tmp_path / scenario)
    assert_passed(rc, summary, output)
    assert summary["faults"], f"no fault was injected\n{output}"
    assert (tmp_path / scenario / "report.html").read_text().count("<svg") >= 1


@pytest.mark.timeout(600)
def test_rdkafka_client_under_kill_leader(tmp_path):
    rc, summary, output = run_chaos(["run", "--backend", "process", "--scenario", "kill-leader",
                                     "--duration", DURATION, "--seed", "3", "--client", "rdkafka",
                                     "--python", sys.executable], tmp_path / "rdkafka")
    assert_passed(rc, summary, output)


@pytest.mark.timeout(900)
def test_docker_partition_loses_nothing(tmp_path):
    require_docker()
    image = build_image()
    rc, summary, output = run_chaos(["run", "--backend", "docker", "--scenario", "isolate-leader",
                                     "--duration", DURATION, "--seed", "5", "--image", image],
                                    tmp_path / "docker")
    assert_passed(rc, summary, output)
    assert any(f["fault"].startswith("isolate") for f in summary["faults"]), output


@pytest.mark.timeout(1500)
def test_selftest_catches_an_unsafe_broker(tmp_path):
    """Builds spate with --features unsafe-ack-before-hw (own target dir) and runs
    isolate-leader: the checker must report lost acknowledged writes."""
    rc, summary, output = run_chaos(["selftest", "--duration", DURATION, "--seed", "1"],
                                    tmp_path / "selftest", timeout=1400)
    assert rc == 0, output
    assert summary["verdict"] == "fail" and summary["lost"] > 0, output
    lost = next(c for c in summary["checks"] if c["name"] == "lost")
    assert not lost["pass"] and lost["counterexamples"], lost


@pytest.mark.timeout(180)
def test_spate_verify_checks_a_running_cluster(broker, tmp_path):
    """`spate verify` runs the same workload and checks against a cluster it does not
    control (here a single `spate dev` node: replication factor 1)."""
    out = tmp_path / "verify"
    r = subprocess.run([str(spate_binary()), "verify", "--bootstrap", broker.bootstrap, "--duration", "8",
                        "--out", str(out)], capture_output=True, text=True, timeout=150)
    assert r.returncode == 0, r.stdout + r.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == "pass" and summary["backend"] == "external"
    assert summary["acked"] > 100 and summary["lost"] == 0
    assert "PASS" in r.stdout
