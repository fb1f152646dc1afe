"""An OTLP/HTTP receiver: a plain HTTP server that decodes every request body with the official
OTLP protobuf schema (PyPI `opentelemetry-proto`, generated from
github.com/open-telemetry/opentelemetry-proto), the same messages a Collector decodes.

Used by the tests beside it (tests/otlp/test_otlp.py) and by the printer that shows a learner
what atomserve sends (tools/otlp_print.py).
"""

from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

MESSAGES = {
    "/v1/metrics": (ExportMetricsServiceRequest, ExportMetricsServiceResponse),
    "/v1/traces": (ExportTraceServiceRequest, ExportTraceServiceResponse),
    "/v1/logs": (ExportLogsServiceRequest, ExportLogsServiceResponse),
}


class Receiver:
    """An OTLP/HTTP protobuf receiver on a loopback port (0: an ephemeral one). `on_message`, if
    given, is called with (path, decoded message) for every export, on the server's thread."""

    def __init__(self, port: int = 0, on_message: Callable[[str, object], None] | None = None) -> None:
        self.lock = threading.Lock()
        self.received: dict[str, list] = {path: [] for path in MESSAGES}
        self.errors: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                kinds = MESSAGES.get(self.path)
                ctype = self.headers.get("Content-Type", "")
                if kinds is None or ctype != "application/x-protobuf":
                    receiver.errors.append(f"unexpected {self.path} {ctype}")
                    self.send_response(404)
                    self.end_headers()
                    return
                request_type, response_type = kinds
                message = request_type()
                try:
                    message.ParseFromString(body)  # raises on anything that is not the schema
                    if on_message is not None:
                        on_message(self.path, message)
                except Exception as e:  # noqa: BLE001 (reported through `errors`, not lost)
                    receiver.errors.append(f"{self.path}: {type(e).__name__}: {e}")
                    self.send_response(400)
                    self.end_headers()
                    return
                with receiver.lock:
                    receiver.received[self.path].append(message)
                reply = response_type().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def spans(self) -> list:
        with self.lock:
            return [
                span
                for req in self.received["/v1/traces"]
                for rs in req.resource_spans
                for ss in rs.scope_spans
                for span in ss.spans
            ]

    def logs(self) -> list:
        with self.lock:
            return [
                rec
                for req in self.received["/v1/logs"]
                for rl in req.resource_logs
                for sl in rl.scope_logs
                for rec in sl.log_records
            ]

    def last_metrics(self) -> dict:
        """Name → metric from the latest metrics export."""
        with self.lock:
            if not self.received["/v1/metrics"]:
                return {}
            req = self.received["/v1/metrics"][-1]
        return {m.name: m for rm in req.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}

    def resources(self, path: str) -> list[dict]:
        with self.lock:
            requests = list(self.received[path])
        out = []
        for req in requests:
            for r in getattr(req, RESOURCES[path]):
                out.append({kv.key: any_value(kv.value) for kv in r.resource.attributes})
        return out


RESOURCES = {"/v1/metrics": "resource_metrics", "/v1/traces": "resource_spans", "/v1/logs": "resource_logs"}


def any_value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def attrs(item) -> dict:
    return {kv.key: any_value(kv.value) for kv in item.attributes}
