"""Chaos workload worker: an idempotent acks=all librdkafka producer (confluent-kafka).

Started by the chaos runner with: BOOTSTRAP TOPIC PARTITIONS IN_FLIGHT PACE_MS. Writes one
JSON history event per line on stdout (the runner's schema: invoke, then ok with the
offset or info with the error); stops producing when stdin closes, then flushes.
"""
import json
import sys
import threading
import time

from confluent_kafka import Producer

bootstrap, topic = sys.argv[1], sys.argv[2]
partitions, in_flight, pace_ms = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
started = time.monotonic()
lock = threading.Lock()
stop = threading.Event()
outstanding = threading.Semaphore(in_flight)


def emit(event):
    line = json.dumps(event)
    with lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def now_ms():
    return int((time.monotonic() - started) * 1000)


def watch_stdin():
    sys.stdin.read()
    stop.set()


threading.Thread(target=watch_stdin, daemon=True).start()
producer = Producer({
    "bootstrap.servers": bootstrap,
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 1,
    "message.timeout.ms": 30000,
    "topic.metadata.refresh.interval.ms": 2000,
    "client.id": "chaos-rdkafka",
})


def on_delivery(base, invoked):
    def done(err, msg):
        event = dict(base)
        event["time_ms"] = now_ms()
        event["latency_ms"] = (time.monotonic() - invoked) * 1000.0
        if err is None:
            event["kind"] = "ok"
            event["offset"] = msg.offset()
        else:
            event["kind"] = "info"
            event["error"] = str(err)
        emit(event)
        outstanding.release()
    return done


n = 0
while not stop.is_set():
    if not outstanding.acquire(timeout=0.05):
        producer.poll(0.01)
        continue
    value = f"rdk-{n}"
    base = {"process": f"rdk.{n}", "op": "send", "partition": n % partitions, "value": value,
            "acks": -1, "idempotent": True}
    invoke = dict(base, kind="invoke", time_ms=now_ms())
    emit(invoke)
    while True:
        try:
            producer.produce(topic, value.encode(), partition=n % partitions,
                             on_delivery=on_delivery(base, time.monotonic()))
            break
        except BufferError:
            producer.poll(0.05)
    n += 1
    producer.poll(0)
    if pace_ms:
        time.sleep(pace_ms / 1000.0)
producer.flush(60)
