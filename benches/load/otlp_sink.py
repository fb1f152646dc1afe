"""A minimal OTLP/HTTP protobuf receiver for the overhead benchmark: decodes each export with
the official schema (PyPI opentelemetry-proto) and counts what arrived.

    .tools/venv/bin/python benches/load/otlp_sink.py PORT
"""

import gzip
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

KINDS = {"/v1/metrics": ExportMetricsServiceRequest, "/v1/traces": ExportTraceServiceRequest,
         "/v1/logs": ExportLogsServiceRequest}
counts = {path: 0 for path in KINDS}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        KINDS[self.path]().ParseFromString(body)
        counts[self.path] += 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
try:
    server.serve_forever()
finally:
    print("exports received:", counts, file=sys.stderr)
