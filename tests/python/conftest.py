"""Fixtures for the real-client compatibility tests: a spate broker in a subprocess.

`spate dev --data-dir DIR --kafka-addr 127.0.0.1:PORT --controller-addr 127.0.0.1:0
--admin-addr 127.0.0.1:0`
runs a single-node cluster. It prints a line containing "ready" on stdout once it serves
Kafka; we also wait until the port accepts TCP connections. The binary is $SPATE_BIN, or
target/debug/spate under the repository root.

Fixtures:
  broker        one broker per test module (tests use unique topic names)
  fresh_broker  one broker per test (tests that kill, restart or attack it)
  topic         a unique, valid topic name for the current test
The broker's log (stdout + stderr) is attached to the report of every failing test.
"""
from __future__ import annotations

import ctypes
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = float(os.environ.get("SPATE_START_TIMEOUT", "30"))
BIND_ATTEMPTS = 5
STOP_TIMEOUT_S = 20.0
LOG_TAIL_BYTES = 40_000


def spate_binary() -> Path:
    env = os.environ.get("SPATE_BIN")
    path = Path(env) if env else REPO_ROOT / "target" / "debug" / "spate"
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


try:  # resolved up front: the child of fork() must not load libraries
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _prctl = None


def _die_with_parent():
    """preexec_fn: the broker gets SIGKILL if the test process dies (no orphans)."""
    if _prctl is not None:
        _prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG


class BrokerStartError(RuntimeError):
    pass


class SpateBroker:
    """One `spate dev` process with a fixed data dir and Kafka port across restarts."""

    def __init__(self, binary: Path, data_dir: Path, log_path: Path, port: int | None = None,
                 extra_args: list[str] | None = None):
        self.binary = Path(binary)
        self.extra_args = list(extra_args or [])
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path)
        self.port = port or free_port()
        # A port we chose can be taken by someone else between free_port() and spate's
        # bind; then the first start moves to another one. A port the caller fixed stays.
        self._port_is_ours = port is None
        self.host = "127.0.0.1"
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self._log = None
        self._reader: threading.Thread | None = None
        self._ready = threading.Event()

    # --- public API -------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def controller(self) -> str:
        """The controller address of the running process, from its ready line."""
        found = re.findall(rb"ready: .*controller=(\S+)", self.log_path.read_bytes())
        if not found:
            raise RuntimeError(f"no ready line with a controller address in {self.log_path}")
        return found[-1].decode()

    def command(self) -> list[str]:
        return [str(self.binary), "dev",
                "--data-dir", str(self.data_dir),
                "--kafka-addr", self.bootstrap,
                "--controller-addr", "127.0.0.1:0",
                "--admin-addr", "127.0.0.1:0",
                # Compaction tests wait for the cleaner; Kafka's 15 s backoff is for production.
                "--log-cleaner-backoff-ms", "200", *self.extra_args]

    def start(self, timeout: float = START_TIMEOUT_S) -> "SpateBroker":
        attempts = BIND_ATTEMPTS if self._port_is_ours and self.starts == 0 else 1
        for attempt in range(1, attempts + 1):
            try:
                return self._start_once(timeout)
            except BrokerStartError as e:
                if attempt == attempts or "Address already in use" not in str(e):
                    raise
                self._note(f"port {self.port} was taken before spate bound it; trying another")
                self._close_log()
                self.port = free_port()
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> "SpateBroker":
        if self.alive():
            raise RuntimeError("broker already running")
        if not self.binary.exists():
            raise BrokerStartError(
                f"spate binary not found at {self.binary}: build it with "
                f"`cargo build --bin spate` or point SPATE_BIN at it")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        self._ready = threading.Event()
        self._log = open(self.log_path, "ab", buffering=0)
        cmd = self.command()
        self._log.write(f"\n===== start #{self.starts}: {' '.join(cmd)} =====\n".encode())
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._log,
            cwd=str(self.data_dir.parent), env=env, start_new_session=True,
            preexec_fn=_die_with_parent if _prctl is not None else None)
        self._reader = threading.Thread(target=self._pump_stdout,
                                        args=(self.proc, self._log, self._ready), daemon=True)
        self._reader.start()
        self._wait_ready(timeout)
        return self

    def kill(self) -> None:
        """SIGKILL: the crash test. Waits until the process is gone."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._note(f"killed with SIGKILL (exit status {self.proc.returncode})")
        self._close_log()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """Graceful stop. Returns the exit status; falls back to SIGKILL after timeout
        (and then returns None so callers can tell the clean stop failed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            self._close_log()
            return self.proc.returncode
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._note(f"did not exit within {timeout}s of {signal.Signals(sig).name}; SIGKILL")
            self.proc.kill()
            self.proc.wait(timeout=30)
            self._close_log()
            return None
        self._note(f"stopped by {signal.Signals(sig).name}, exit status {rc}")
        self._close_log()
        return rc

    def restart(self, timeout: float = START_TIMEOUT_S) -> "SpateBroker":
        """Start again on the same data dir and port (stopping it first if running)."""
        if self.alive():
            self.stop()
        return self.start(timeout)

    def log_text(self, tail: int = LOG_TAIL_BYTES) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - tail))
                data = f.read()
        except OSError as e:
            return f"<no log: {e}>"
        prefix = f"[... {size - tail} earlier bytes in {self.log_path}]\n" if size > tail else ""
        return prefix + data.decode(errors="replace")

    def proc_status(self, field: str) -> int | None:
        """A kB field of /proc/PID/status (VmPeak, VmRSS, ...), or None if unavailable."""
        if not self.alive():
            return None
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    # --- internals --------------------------------------------------------------------

    @staticmethod
    def _pump_stdout(proc, log, ready):
        for line in iter(proc.stdout.readline, b""):
            try:
                log.write(line)
            except (ValueError, OSError):
                pass
            if b"ready" in line:
                ready.set()
        proc.stdout.close()

    def _tcp_ok(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1):
                return True
        except OSError:
            return False

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._reader.join(timeout=2)
                raise BrokerStartError(
                    f"spate exited with status {self.proc.returncode} before it was ready.\n"
                    f"command: {' '.join(self.command())}\n--- log ---\n{self.log_text()}")
            if self._ready.is_set() and self._tcp_ok():
                return
            time.sleep(0.05)
        said_ready = self._ready.is_set()
        tcp = self._tcp_ok()
        self.stop(timeout=5)
        raise BrokerStartError(
            f"spate not ready within {timeout}s (printed 'ready': {said_ready}, "
            f"port {self.port} accepts TCP: {tcp}).\n--- log ---\n{self.log_text()}")

    def _note(self, msg: str) -> None:
        if self._log is not None:
            try:
                self._log.write(f"===== {msg} =====\n".encode())
            except (ValueError, OSError):
                pass

    def _close_log(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None


def _new_broker(tmp_path_factory, name: str, extra_args: list[str] | None = None) -> SpateBroker:
    base = tmp_path_factory.mktemp(re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:60])
    return SpateBroker(spate_binary(), base / "data", base / "spate.log", extra_args=extra_args)


@pytest.fixture(scope="module")
def broker(tmp_path_factory, request):
    b = _new_broker(tmp_path_factory, request.module.__name__)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def fresh_broker(tmp_path_factory, request):
    b = _new_broker(tmp_path_factory, request.node.name)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def topic(request) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]", "-", request.node.name).strip("-.")[:80]
    return f"{base}-{uuid.uuid4().hex[:8]}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    funcargs = getattr(item, "funcargs", {}) or {}
    for name, value in funcargs.items():
        if isinstance(value, SpateBroker):
            state = "running" if value.alive() else (
                f"exited with {value.proc.returncode}" if value.proc else "never started")
            report.sections.append(
                (f"spate broker log ({name}, {state}, {value.log_path})", value.log_text()))
