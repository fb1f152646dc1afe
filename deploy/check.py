"""Consistency checks that schema validation cannot make (run by `make deploy-check`).

- The Collector's configuration: every component a pipeline names is defined, and the OTLP/HTTP
  receiver listens on the port the Service forwards.
- atomserve's Deployment: OTEL_EXPORTER_OTLP_ENDPOINT names the Collector's Service and OTLP/HTTP
  port; terminationGracePeriodSeconds leaves room for the preStop sleep plus
  ATOMSERVE_SHUTDOWN_GRACE; the probes use the admin port.
"""

import sys
from pathlib import Path

import yaml

K8S = Path(__file__).parent / "k8s"


def docs(name):
    return {d["kind"]: d for d in yaml.safe_load_all((K8S / name).read_text()) if d}


def seconds(text):
    text = str(text).strip()
    for unit, scale in (("ms", 0.001), ("s", 1), ("m", 60)):
        if text.endswith(unit) and text[: -len(unit)].replace(".", "").isdigit():
            return float(text[: -len(unit)]) * scale
    return float(text)


def main():
    errors = []
    collector = docs("otel-collector.yaml")
    config = yaml.safe_load(collector["ConfigMap"]["data"]["config.yaml"])
    for name, pipeline in config["service"]["pipelines"].items():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                if component not in config.get(kind, {}):
                    errors.append(f"pipeline {name}: {kind[:-1]} {component} is not defined")
    http_port = int(config["receivers"]["otlp"]["protocols"]["http"]["endpoint"].rsplit(":", 1)[1])
    service = collector["Service"]
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}

    atomserve = docs("atomserve.yaml")["Deployment"]["spec"]["template"]["spec"]
    container = atomserve["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    want = f"http://{service['metadata']['name']}:{ports['otlp-http']}"
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") != want or ports["otlp-http"] != http_port:
        errors.append(f"OTEL_EXPORTER_OTLP_ENDPOINT should be {want} (receiver on {http_port})")
    if "service.instance.id=$(POD_NAME)" not in env.get("OTEL_RESOURCE_ATTRIBUTES", ""):
        errors.append("OTEL_RESOURCE_ATTRIBUTES lacks service.instance.id=$(POD_NAME)")
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = seconds(env["ATOMSERVE_SHUTDOWN_GRACE"])
    total = atomserve["terminationGracePeriodSeconds"]
    if total < pre_stop + grace + 1:
        errors.append(f"terminationGracePeriodSeconds {total} < preStop {pre_stop} + grace {grace} + 1")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        if (get["path"], get["port"]) != ("/healthz", "admin"):
            errors.append(f"{probe} should GET /healthz on the admin port")

    for e in errors:
        print(f"deploy/check.py: {e}", file=sys.stderr)
    if not errors:
        print("deploy/check.py: collector pipelines, OTLP endpoint, drain timing and probes agree")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
