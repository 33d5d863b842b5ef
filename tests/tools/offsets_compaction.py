#!/usr/bin/env python3
"""How big `__consumer_offsets` stays and how fast a restarted coordinator serves
OffsetFetch after many commits (the compaction issue's offsets test). Outside CI: it
takes minutes.

Starts `spate dev` on a fresh data directory (ephemeral ports), creates a topic of
PARTITIONS partitions, then has GROUPS groups commit every partition ROUNDS times
(GROUPS * PARTITIONS * ROUNDS commits; 100 * 100 * 100 = 1,000,000 by default) with
confluent-kafka. `__consumer_offsets` gets a small `segment.bytes` first so the cleaner
has sealed segments to work on (Kafka's default is 100 MiB; the point is the cleaner,
not the roll). Then it waits for the cleaner, SIGKILLs the node, restarts it on the same
data directory, and times the first OffsetFetch that returns every group's last commit.
Prints one JSON line.

    .venv/bin/python tests/tools/offsets_compaction.py [--groups 100] [--partitions 100]
        [--rounds 100] [--bin target/release/spate]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary: str, data: Path, port: int, log: Path) -> tuple[subprocess.Popen, str]:
    out = open(log, "ab")
    proc = subprocess.Popen([binary, "dev", "--data-dir", str(data), "--kafka-addr",
                             f"127.0.0.1:{port}", "--controller-addr", "127.0.0.1:0",
                             "--admin-addr", "127.0.0.1:0", "--log-cleaner-backoff-ms", "500"],
                            stdout=subprocess.PIPE, stderr=out)
    deadline = time.monotonic() + 60
    admin_addr = None
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        out.write(line)
        m = re.search(rb"ready: .*admin=(\S+)", line)
        if m:
            admin_addr = m.group(1).decode()
            break
    if admin_addr is None:
        proc.kill()
        sys.exit(f"spate dev did not start; see {log}")
    return proc, admin_addr


def metric(admin_addr: str, name: str) -> float:
    import urllib.request
    body = urllib.request.urlopen(f"http://{admin_addr}/metrics", timeout=10).read().decode()
    total = 0.0
    for line in body.splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


def offsets_log_bytes(data: Path) -> int:
    return sum(f.stat().st_size for d in (data / "logs").glob("__consumer_offsets-*")
               for f in d.glob("*.log"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--groups", type=int, default=100)
    ap.add_argument("--partitions", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--segment-bytes", type=int, default=1 << 20)
    ap.add_argument("--bin", default="target/release/spate")
    args = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="offsets-compaction-"))
    port = free_port()
    log = data.parent / (data.name + ".log")
    proc, admin_addr = start(args.bin, data, port, log)
    bootstrap = f"127.0.0.1:{port}"
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("t", args.partitions, 1)])["t"].result(30)
        consumers = [Consumer({"bootstrap.servers": bootstrap, "group.id": f"g{g}",
                               "enable.auto.commit": False}) for g in range(args.groups)]
        # The first commit creates __consumer_offsets; then shrink its segments.
        parts = [TopicPartition("t", p, 0) for p in range(args.partitions)]
        deadline = time.monotonic() + 60
        while True:
            try:
                consumers[0].commit(offsets=parts, asynchronous=False)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        res = ConfigResource(ConfigResource.Type.TOPIC, "__consumer_offsets",
                             set_config={"segment.bytes": str(args.segment_bytes),
                                         "cleanup.policy": "compact"})
        for f in admin.alter_configs([res]).values():  # the legacy API on purpose
            f.result(30)
        started = time.monotonic()
        commits = 0
        for r in range(1, args.rounds + 1):
            offsets = [TopicPartition("t", p, r) for p in range(args.partitions)]
            for c in consumers:
                c.commit(offsets=offsets, asynchronous=False)
                commits += args.partitions
        commit_secs = time.monotonic() - started
        before_clean = offsets_log_bytes(data)
        # Wait (bounded) for the cleaner to have removed most superseded commits.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            removed = metric(admin_addr, "spate_log_cleaner_records_removed_total")
            if removed >= 0.8 * commits:
                break
            time.sleep(1)
        removed = metric(admin_addr, "spate_log_cleaner_records_removed_total")
        after_clean = offsets_log_bytes(data)
        for c in consumers:
            c.close()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        restarted = time.monotonic()
        proc, admin_addr = start(args.bin, data, port, log)
        # A SIGKILLed broker re-registers once its old session expires
        # (broker.session.timeout.ms, 9 s), as Kafka's; its groups load after that.
        ready_secs = time.monotonic() - restarted
        probe = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g{args.groups - 1}",
                          "enable.auto.commit": False})
        while True:
            try:
                got = probe.committed(parts, timeout=5)
                if all(tp.offset == args.rounds for tp in got):
                    break
            except Exception:
                pass
            if time.monotonic() - restarted > 120:
                sys.exit("the restarted coordinator did not serve the last commits in 120 s")
            time.sleep(0.05)
        serve_secs = time.monotonic() - restarted
        probe.close()
        print(json.dumps({
            "commits": commits, "groups": args.groups, "partitions": args.partitions,
            "commit_seconds": round(commit_secs, 1),
            "offsets_log_bytes_before_cleaning": before_clean,
            "offsets_log_bytes_after_cleaning": after_clean,
            "records_removed": int(removed),
            "restart_to_ready_seconds": round(ready_secs, 2),
            "restart_to_offset_fetch_seconds": round(serve_secs, 2),
        }))
    finally:
        proc.kill()
        proc.wait()
        subprocess.run(["rm", "-rf", str(data)], check=False)
        os.remove(log) if log.exists() else None


if __name__ == "__main__":
    main()
