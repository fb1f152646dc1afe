#!/usr/bin/env python3
"""Prints what an OpenTelemetry SDK sends: a stand-in for a Collector, for seeing atomserve's
spans, logs and metrics one line each (docs/observability.md, "See it").

It listens for OTLP/HTTP with protobuf (the receiver of tests/otlp, which decodes with the
official schema) and prints every exported item as it arrives:

    span    trace=<32 hex> span=<16 hex> parent=<16 hex or -> <kind> <name> <status> <ms> <attributes>
    log     <severity> trace=… span=… <event name> <body>
    metric  <name> <type> <temporality>[ monotonic] <points>
    resource <signal> <attributes>          (once per distinct resource and signal)

Run with the test tools' Python (make test installs it; or `make deps-test`):

    .tools/venv/bin/python tools/otlp_print.py [--port 4318] [--seconds N]
    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 OTEL_TRACES_SAMPLER=always_on atomserve
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests" / "otlp"))
from receiver import RESOURCES, Receiver, any_value, attrs  # noqa: E402

TEMPORALITY = {0: "unspecified", 1: "delta", 2: "cumulative"}
SPAN_KIND = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
STATUS = {0: "unset", 1: "ok", 2: "error"}


def fields(d: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in d.items())


def point_value(p) -> str:
    return str(p.as_int) if p.WhichOneof("value") == "as_int" else f"{p.as_double:g}"


def metric_line(m) -> str:
    kind = m.WhichOneof("data")
    data = getattr(m, kind)
    temporality = TEMPORALITY.get(getattr(data, "aggregation_temporality", 0), "?")
    if kind == "gauge":
        head = f"{m.name} gauge"
    elif kind == "sum":
        head = f"{m.name} sum {temporality}{' monotonic' if data.is_monotonic else ''}"
    else:
        head = f"{m.name} {kind} {temporality}"
    points = []
    for p in data.data_points:
        labels = fields(attrs(p))
        where = f"{{{labels}}}=" if labels else ""
        if kind in ("histogram", "exponential_histogram", "summary"):
            points.append(f"{where}count={p.count} sum={p.sum:g}")
        else:
            points.append(f"{where}{point_value(p)}")
    return f"{head} {m.unit or '-'}: {', '.join(points) or '(no points)'}"


class Printer:
    def __init__(self, out=sys.stdout) -> None:
        self.out = out
        self.lock = threading.Lock()
        self.resources_seen: set[tuple] = set()

    def say(self, kind: str, text: str) -> None:
        with self.lock:
            print(f"{kind:<8} {text}", file=self.out, flush=True)

    def resource(self, path: str, resource) -> None:
        d = {kv.key: any_value(kv.value) for kv in resource.attributes}
        key = (path, tuple(sorted(d.items())))
        if key not in self.resources_seen:
            self.resources_seen.add(key)
            self.say("resource", f"{path.rsplit('/', 1)[1]} {fields(d)}")

    def message(self, path: str, message) -> None:
        for r in getattr(message, RESOURCES[path]):
            self.resource(path, r.resource)
            if path == "/v1/traces":
                for s in (span for ss in r.scope_spans for span in ss.spans):
                    ms = (s.end_time_unix_nano - s.start_time_unix_nano) / 1e6
                    parent = s.parent_span_id.hex() or "-"
                    self.say("span", f"trace={s.trace_id.hex()} span={s.span_id.hex()} parent={parent} "
                                     f"{SPAN_KIND.get(s.kind, s.kind)} {s.name} {STATUS.get(s.status.code)} "
                                     f"{ms:.3f}ms {fields(attrs(s))}")
            elif path == "/v1/logs":
                for rec in (rec for sl in r.scope_logs for rec in sl.log_records):
                    body = any_value(rec.body)
                    self.say("log", f"{rec.severity_text or rec.severity_number} trace={rec.trace_id.hex() or '-'} "
                                    f"span={rec.span_id.hex() or '-'} {rec.event_name or '-'} {body!r}")
            else:
                for m in (m for sm in r.scope_metrics for m in sm.metrics):
                    self.say("metric", metric_line(m))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=4318, help="loopback port to listen on (OTLP/HTTP's default: 4318)")
    ap.add_argument("--seconds", type=float, default=None, help="exit after this long (default: until Ctrl-C)")
    args = ap.parse_args()
    printer = Printer()
    receiver = Receiver(args.port, printer.message)
    print(f"otlp-print: listening on http://127.0.0.1:{receiver.port} "
          f"(OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:{receiver.port})", flush=True)
    try:
        if args.seconds is None:
            threading.Event().wait()
        else:
            time.sleep(args.seconds)
    except KeyboardInterrupt:
        pass
    receiver.close()
    for e in receiver.errors:
        print(f"otlp-print: {e}", file=sys.stderr)
    return 1 if receiver.errors else 0


if __name__ == "__main__":
    sys.exit(main())
