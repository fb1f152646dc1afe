"""OpenTelemetry export, checked by a real OTLP/HTTP receiver.

The receiver (tests/otlp/receiver.py, shared with tools/otlp_print.py) is a plain HTTP server
that decodes every request body with the official OTLP protobuf schema (PyPI
`opentelemetry-proto`), the same messages a Collector decodes. atomserve
runs as a real process configured only by the standard OTEL_* variables; clients talk to it
over loopback. The counts of metrics, spans and log records must equal the requests sent
exactly.

Run: ATOMSERVE_BIN=target/debug/atomserve .tools/venv/bin/pytest -q tests/otlp
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from receiver import MESSAGES, Receiver, attrs  # tests/otlp/receiver.py: the decoding receiver

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("ATOMSERVE_BIN", REPO / "target" / "debug" / "atomserve"))
LISTENING = re.compile(r"^atomserve: listening on http://([0-9.]+):(\d+)\s*$")
ADMIN = re.compile(r"^atomserve: admin on http://([0-9.]+):(\d+)/healthz")


def counter_sum(metric, **match) -> int:
    points = metric.sum.data_points
    return sum(p.as_int for p in points if all(attrs(p).get(k) == v for k, v in match.items()))


class Atomserve:
    """atomserve as a child process, with the given extra environment."""

    def __init__(self, root: Path, env: dict[str, str], *args: str, stdout_closed: bool = False,
                 stdout_stuck: bool = False) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        full_env.update(env)
        pipe = os.pipe() if stdout_closed or stdout_stuck else None
        self.proc = subprocess.Popen(
            [str(BIN), "--root", str(root), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
             "--workers", "2", *args],
            env=full_env, stdout=pipe[1] if pipe else subprocess.PIPE, stderr=subprocess.PIPE,
        )
        if stdout_closed:
            # Standard output is a pipe nobody will ever read: writes fail with EPIPE.
            os.close(pipe[0])
            os.close(pipe[1])
        if stdout_stuck:
            # A pipe kept open but never read: once its 64 KiB fill up, write(2) blocks.
            self.stuck = pipe[0]
            os.close(pipe[1])
        self.stderr: list[str] = []
        self.stdout: list[str] = []
        self.port = self.admin_port = None
        ready = threading.Event()

        def pump_stderr() -> None:
            for raw in self.proc.stderr:
                line = raw.decode(errors="replace")
                self.stderr.append(line)
                if m := LISTENING.match(line):
                    self.port = int(m.group(2))
                if m := ADMIN.match(line):
                    self.admin_port = int(m.group(2))
                if self.port and self.admin_port:
                    ready.set()
            ready.set()

        def pump_stdout() -> None:
            for raw in self.proc.stdout or []:
                self.stdout.append(raw.decode(errors="replace"))

        threading.Thread(target=pump_stderr, daemon=True).start()
        threading.Thread(target=pump_stdout, daemon=True).start()
        if not ready.wait(30) or not self.port:
            self.proc.kill()
            raise AssertionError("atomserve did not start: " + "".join(self.stderr))

    def threads(self) -> list[str]:
        task = Path(f"/proc/{self.proc.pid}/task")
        return [(t / "comm").read_text().strip() for t in task.iterdir()]

    def stop(self, timeout: float = 30.0) -> float:
        """SIGTERM; returns how long the exit took."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("atomserve did not exit after SIGTERM: " + "".join(self.stderr))
        assert code == 0, "".join(self.stderr)
        return time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "index.html").write_text("<!doctype html><title>otlp</title><p>hello</p>\n")
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "app-1a2b3c4d.js").write_text("console.log('x');\n" * 50)
    return tmp_path


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def get(conn: http.client.HTTPConnection, method: str, path: str, headers: dict | None = None) -> int:
    conn.request(method, path, headers=headers or {})
    response = conn.getresponse()
    response.read()
    return response.status


def wait_for(predicate, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


def test_metrics_traces_and_logs_arrive_with_exact_counts(root: Path, receiver: Receiver) -> None:
    server = Atomserve(root, {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_SERVICE_NAME": "atomserve-under-test",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=test,team=web",
        "OTEL_METRIC_EXPORT_INTERVAL": "300",
        "OTEL_TRACES_SAMPLER": "always_on",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_BLRP_SCHEDULE_DELAY": "200",
    }, "--access-log", "stdout")
    try:
        sent = {"200": 0, "404": 0, "405": 0}
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        for i in range(60):
            sent[str(get(conn, "GET", "/" if i % 2 else "/assets/app-1a2b3c4d.js"))] += 1
        for _ in range(25):
            sent[str(get(conn, "GET", "/missing.png"))] += 1
        for _ in range(10):
            sent[str(get(conn, "HEAD", "/index.html"))] += 1
        for _ in range(4):
            sent[str(get(conn, "POST", "/index.html"))] += 1
        traced = get(conn, "GET", "/index.html?from=upstream",
                     {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "User-Agent": "otlp-test/1"})
        sent[str(traced)] += 1
        conn.close()
        total = sum(sent.values())
        assert sent == {"200": 71, "404": 25, "405": 4}, sent

        # The admin listener's own traffic is not counted.
        admin = http.client.HTTPConnection("127.0.0.1", server.admin_port, timeout=5)
        assert get(admin, "GET", "/metrics") == 200
        admin.close()

        def metrics_caught_up():
            m = receiver.last_metrics()
            return "atomserve.http.requests" in m and sum(
                p.as_int for p in m["atomserve.http.requests"].sum.data_points) == total
        wait_for(metrics_caught_up, what="metrics with every request")
        assert "atomserve-otlp" in server.threads()
        elapsed = server.stop()
        assert elapsed < 8, f"shutdown took {elapsed:.1f} s"
    finally:
        server.kill()

    # Metrics: exact per code, histogram count equal to the requests.
    m = receiver.last_metrics()
    requests = m["atomserve.http.requests"]
    assert requests.sum.is_monotonic
    assert requests.sum.aggregation_temporality == 2  # cumulative
    for code, n in sent.items():
        assert counter_sum(requests, **{"http.response.status_code": int(code)}) == n, code
    hist = m["http.server.request.duration"]
    (point,) = hist.histogram.data_points
    assert point.count == total
    assert sum(point.bucket_counts) == total
    assert len(point.bucket_counts) == len(point.explicit_bounds) + 1
    assert list(point.explicit_bounds)[:4] == [0.000005, 0.00001, 0.000025, 0.00005] and point.explicit_bounds[-1] == 10.0
    assert point.sum > 0
    assert counter_sum(m["atomserve.cache.hits"]) == 71  # 60 GET + 10 HEAD + 1 traced GET
    # A part of the hits: the 60 GETs of two paths on one connection, all but the first of each
    # answered from the worker's rendered responses (fewer if a snapshot is published between).
    assert 50 <= counter_sum(m["atomserve.cache.rendered_hits"]) <= 58
    assert counter_sum(m["atomserve.cache.misses"]) == 25
    assert counter_sum(m["atomserve.connections.accepted"]) == 1
    assert sum(p.as_int for p in m["atomserve.worker.requests"].sum.data_points) == total
    assert m["atomserve.cache.files"].gauge.data_points[0].as_int == 2
    # A level, not a count: a gauge with a point per worker, 0 at rest (every receive buffer back).
    held = m["atomserve.uring.recv_buffers.held"].gauge.data_points
    assert held and all(p.as_int == 0 for p in held), held
    assert counter_sum(m["atomserve.telemetry.records.dropped"]) == 0
    assert "process.cpu.time" in m and "process.memory.usage" in m

    # Traces: one server span per request, with the HTTP attributes.
    spans = receiver.spans()
    assert len(spans) == total
    assert all(s.kind == 2 for s in spans)  # SPAN_KIND_SERVER
    by_code: dict[int, int] = {}
    for s in spans:
        a = attrs(s)
        by_code[a["http.response.status_code"]] = by_code.get(a["http.response.status_code"], 0) + 1
        assert s.name == a["http.request.method"]
        assert a["client.address"] == "127.0.0.1" and a["url.scheme"] == "http"
        assert s.end_time_unix_nano >= s.start_time_unix_nano > 0
    assert by_code == {200: 71, 404: 25, 405: 4}
    (child,) = [s for s in spans if s.trace_id.hex() == TRACE_ID]
    assert child.parent_span_id.hex() == PARENT_ID
    ca = attrs(child)
    assert ca["url.path"] == "/index.html" and ca["url.query"] == "from=upstream"
    assert ca["user_agent.original"] == "otlp-test/1"
    assert ca["server.address"] == "127.0.0.1" and ca["server.port"] == server.port
    assert ca["network.protocol.version"] == "1.1"

    # Logs: one access record per request, correlated with its span.
    logs = receiver.logs()
    assert len(logs) == total
    (child_log,) = [r for r in logs if r.trace_id.hex() == TRACE_ID]
    assert child_log.span_id == child.span_id
    assert child_log.event_name == "http.server.access"
    assert 'GET /index.html?from=upstream HTTP/1.1" 200' in child_log.body.string_value
    severities = {r.severity_text for r in logs}
    assert severities == {"INFO", "WARN"}

    # Resource: the standard attributes, from the environment and from the process.
    for path in MESSAGES:
        for res in receiver.resources(path):
            assert res["service.name"] == "atomserve-under-test"
            assert res["deployment.environment.name"] == "test" and res["team"] == "web"
            assert res["process.pid"] == server.proc.pid
            assert res["host.name"] == socket.gethostname()
            assert res["service.version"] and res["service.instance.id"]

    # The text access log saw the same requests, in the Combined Log Format.
    lines = [line for line in server.stdout if line.strip()]
    assert len(lines) == total
    clf = re.compile(r'^127\.0\.0\.1 - - \[\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] '
                     r'"(GET|HEAD|POST) \S+ HTTP/1\.1" (200|404|405) \d+ "-" "[^"]*"$')
    assert all(clf.match(line.rstrip("\n")) for line in lines), lines[:3]
    assert receiver.errors == []


def test_no_endpoint_means_no_exporter_threads(root: Path) -> None:
    server = Atomserve(root, {"OTEL_TRACES_SAMPLER": "always_on", "OTEL_SERVICE_NAME": "x"})
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        assert get(conn, "GET", "/") == 200
        conn.close()
        # main, reload, its compression threads and two workers: nothing of OpenTelemetry, no HTTP
        # client runtime. The reload thread starts its compression threads once the server
        # serves (phase 2 of the load): wait for them rather than race them (this failed on a
        # fresh clone whose first request was answered before they existed).
        # A new thread is named by itself once it first runs, so under load a worker can still
        # show the process's name for a moment (seen once: 'atomserve' in place of
        # 'atomserve-w1'): wait for the workers' names too.
        deadline = time.monotonic() + 10
        workers = {"atomserve-w0", "atomserve-w1"}
        names = server.threads()
        while (
            not any(n.startswith("atomserve-zip") for n in names) or not workers <= set(names)
        ) and time.monotonic() < deadline:
            time.sleep(0.02)
            names = server.threads()
        zip_threads = [n for n in names if n.startswith("atomserve-zip")]
        assert 1 <= len(zip_threads) <= 4, names
        assert sorted(set(names) - set(zip_threads)) == sorted(["atomserve", "atomserve-reloa", "atomserve-w0", "atomserve-w1"]), names
        server.stop()
    finally:
        server.kill()


def blackhole() -> socket.socket:
    """A listener nobody accepts from: connections complete, requests are never answered."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    return s


@pytest.mark.parametrize("collector", ["refused", "blackhole"])
def test_an_unreachable_collector_does_not_slow_serving(root: Path, collector: str) -> None:
    hole = None
    if collector == "refused":
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nothing listens there now: connection refused
    else:
        hole = blackhole()
        port = hole.getsockname()[1]
    server = Atomserve(root, {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_METRIC_EXPORT_INTERVAL": "200",
        "OTEL_TRACES_SAMPLER": "always_on",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_BLRP_SCHEDULE_DELAY": "100",
    }, "--shutdown-grace", "2s")
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        times = []
        for _ in range(400):
            t = time.monotonic()
            assert get(conn, "GET", "/") == 200
            times.append(time.monotonic() - t)
        conn.close()
        times.sort()
        p99 = times[int(len(times) * 0.99)]
        assert p99 < 0.05, f"p99 {p99 * 1000:.1f} ms with the collector {collector}"
        # The grace bounds the final flush, even when the collector never answers.
        elapsed = server.stop()
        assert elapsed < 6, f"shutdown took {elapsed:.1f} s with the collector {collector}"
    finally:
        server.kill()
        if hole:
            hole.close()


def test_access_log_to_a_closed_pipe_loses_lines_not_requests(root: Path) -> None:
    """The reader of standard output went away (EPIPE): lines are dropped and counted, serving
    goes on, and no SIGPIPE kills the process."""
    server = Atomserve(root, {}, "--access-log", "stdout", stdout_closed=True)
    try:
        for _ in range(3):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
            for _ in range(50):
                assert get(conn, "GET", "/") == 200
            conn.close()
            time.sleep(1.2)  # the once-a-second flush
        admin = http.client.HTTPConnection("127.0.0.1", server.admin_port, timeout=5)
        admin.request("GET", "/metrics")
        text = admin.getresponse().read().decode()
        admin.close()
        dropped = re.search(r"^atomserve_access_log_dropped_total (\d+)$", text, re.M)
        assert dropped and int(dropped.group(1)) == 150, text
        assert server.proc.poll() is None
        server.stop()
    finally:
        server.kill()


def test_a_stuck_stdout_never_blocks_a_worker(root: Path) -> None:
    """Standard output is a pipe nobody reads: the writer thread blocks once it is full, the
    workers go on serving (and drop lines once the writer's backlog is full), and SIGTERM still
    exits promptly."""
    server = Atomserve(root, {}, "--access-log", "stdout", stdout_stuck=True)
    try:
        started = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        for _ in range(5000):  # about 500 KB of log lines: far more than the pipe holds
            assert get(conn, "GET", "/") == 200
        conn.close()
        assert time.monotonic() - started < 30
        elapsed = server.stop()
        assert elapsed < 5, f"shutdown took {elapsed:.1f} s with a stuck stdout"
    finally:
        server.kill()
        os.close(server.stuck)
