#!/usr/bin/env python3
"""`make bench-reload`: the cold path — start-up, reloads and background compression — measured.

    benches/load/reload.py [--rounds N] [--base OLD_BINARY]

On a deterministic Vite-like root of ~10 MB (index.html, 20 hashed JS chunks of 100-700 KB,
their source maps, CSS, SVGs; generated here) and on the bundled front end (frontend/dist):

1. start -> first 200: from spawning the release binary to the first `200` of /index.html
   (a client polling every 0.5 ms), median of N runs; with --base, the old binary interleaved.
2. a Vite-style rebuild under --watch (every file rewritten by write+rename, one chunk's content
   changed under a new hashed name, index.html pointing at it): from the last rename to the
   first 200 of the new chunk; and the CPU the reload took (process utime+stime from before the
   rebuild to its "variants complete" line) against the CPU of the full cold load (start to the
   first "variants complete").
3. wrk -t1 -c64 on /index.html while phase 2 compresses the whole root, against the same with
   every variant built; interleaved A/B rounds, medians.
4. how long the background compression of the whole root takes, against --base's full load.

Loopback only, bounded runs. Prints one table; the figures go into docs/benchmarks.md.
"""
import argparse
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import vite_root  # noqa: E402  (the harness's JS generator)

TICK = os.sysconf("SC_CLK_TCK")


def js_chunk(rng: random.Random, size: int) -> bytes:
    vite_root.JS_SIZE = size
    return vite_root.bundle(rng)


def write_root(root: str, changed: int | None = None) -> dict:
    """Writes the ~10 MB root (every file through write+rename, as a build does); `changed`
    gives chunk number `changed` new content (and so a new hashed name). Returns the URL paths."""
    rng = random.Random(13)
    os.makedirs(os.path.join(root, "assets"), exist_ok=True)
    sizes = [100_000 + (i * 600_000) // 19 for i in range(20)]
    names = []
    files = {}
    for i, size in enumerate(sizes):
        chunk = js_chunk(random.Random(1000 + i + (7919 if i == changed else 0)), size)
        name = vite_root.hashed(f"chunk{i}", chunk, "js")
        names.append(name)
        files[f"assets/{name}"] = chunk
        files[f"assets/{name}.map"] = ('{"version":3,"sources":["src/chunk%d.tsx"],"mappings":"%s"}' % (
            i, "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/;,")
                       for _ in range(size // 8)))).encode()
    for i in range(3):
        files[f"assets/style{i}-{i:08d}.css"] = (".c%d{color:#%06x;padding:%dpx}\n" % (i, i * 99, i) * 800).encode()
    for i in range(6):
        files[f"icons/icon{i}.svg"] = ('<svg xmlns="http://www.w3.org/2000/svg"><path d="M%d 0h%dv%dz"/></svg>\n'
                                      % (i, i + 1, i + 2) * 30).encode()
    scripts = "".join(f'<script type="module" src="/assets/{n}"></script>\n' for n in names)
    files["index.html"] = f"<!doctype html>\n<html><head><title>bench</title>\n{scripts}</head><body><div id=root></div></body></html>\n".encode()
    live = set(files)
    for rel, data in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp~", "wb") as f:
            f.write(data)
        os.replace(path + ".tmp~", path)
    # A build empties what it no longer produces.
    for dirpath, _, filenames in os.walk(root):
        for fn in filenames:
            rel = os.path.relpath(os.path.join(dirpath, fn), root)
            if rel not in live:
                os.remove(os.path.join(dirpath, fn))
    return {"index": "/index.html", "changed": f"/assets/{names[changed if changed is not None else 0]}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_of(port: int, path: str) -> int | None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n".encode())
            head = s.recv(64)
            return int(head[9:12]) if head.startswith(b"HTTP/1.1 ") else None
    except OSError:
        return None


class Server:
    def __init__(self, binary: str, root: str, *args: str):
        self.port = free_port()
        self.log: list[str] = []
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [binary, "--root", root, "--listen", f"127.0.0.1:{self.port}", "--admin-listen", "none", *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stderr:
            self.log.append(line)

    def first_200(self, path: str, timeout: float = 120) -> float:
        """Seconds from spawn to the first 200 of `path`."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if status_of(self.port, path) == 200:
                return time.monotonic() - self.t0
            if self.proc.poll() is not None:
                break
            time.sleep(0.0005)
        raise RuntimeError("no 200:\n" + "".join(self.log))

    def wait_log(self, pattern: str, n: int = 1, timeout: float = 300) -> None:
        end = time.monotonic() + timeout
        while sum(1 for l in self.log if re.search(pattern, l)) < n:
            if time.monotonic() > end or self.proc.poll() is not None:
                raise RuntimeError(f"no {pattern!r}:\n" + "".join(self.log))
            time.sleep(0.002)

    def cpu(self) -> float:
        """Process CPU seconds (all threads), from /proc/PID/stat."""
        fields = open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def wrk(port: int, seconds: int = 5) -> float:
    out = subprocess.run(["taskset", "-c", "0", "wrk", "-t1", "-c64", f"-d{seconds}s", f"http://127.0.0.1:{port}/index.html"],
                         capture_output=True, text=True, check=True).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--base", help="an older atomserve binary to interleave with")
    ap.add_argument("--binary", default=os.path.join(TOP, "target/release/atomserve"))
    a = ap.parse_args()
    if not shutil.which("wrk"):
        subprocess.run("apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends wrk",
                       shell=True, check=True)
    work = tempfile.mkdtemp(prefix="atomserve-bench-reload-")
    big = os.path.join(work, "dist")
    write_root(big)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(big) for f in fs)
    front = os.path.join(TOP, "frontend/dist")
    print(f"root: {big}, {size / 1e6:.1f} MB in {sum(len(fs) for _, _, fs in os.walk(big))} files; rounds {a.rounds}")
    binaries = [("new", a.binary)] + ([("base", a.base)] if a.base else [])
    rows = []

    # 1. start -> first 200, interleaved.
    for label, root in (("10 MB root", big), ("frontend/dist", front)):
        times = {name: [] for name, _ in binaries}
        for _ in range(a.rounds):
            for name, binary in binaries:
                s = Server(binary, root)
                try:
                    times[name].append(s.first_200("/index.html"))
                finally:
                    s.stop()
        for name, _ in binaries:
            rows.append((f"start -> first 200, {label} ({name})", f"{statistics.median(times[name]) * 1e3:.1f} ms",
                         " ".join(f"{t * 1e3:.0f}" for t in times[name])))

    # 2 and 4. Cold load CPU and background time; a Vite rebuild under --watch.
    served, reload_cpu, cold_cpu, phase2 = [], [], [], []
    for r in range(a.rounds):
        write_root(big)
        s = Server(a.binary, big, "--watch")
        try:
            s.first_200("/index.html")
            serving = time.monotonic()
            s.wait_log("variants complete")
            phase2.append(time.monotonic() - serving)
            cold_cpu.append(s.cpu())
            time.sleep(0.3)
            before = s.cpu()
            paths = write_root(big, changed=r % 20)
            renamed = time.monotonic()
            while status_of(s.port, paths["changed"]) != 200:
                if time.monotonic() - renamed > 10:
                    raise RuntimeError("the rebuild was not served:\n" + "".join(s.log))
                time.sleep(0.0005)
            served.append(time.monotonic() - renamed)
            s.wait_log("variants complete", 2)
            reload_cpu.append(s.cpu() - before)
        finally:
            s.stop()
    rows.append(("rebuild under --watch: last rename -> new chunk served", f"{statistics.median(served) * 1e3:.0f} ms",
                 " ".join(f"{t * 1e3:.0f}" for t in served)))
    ratio = [rc / cc for rc, cc in zip(reload_cpu, cold_cpu)]
    rows.append(("rebuild: reload CPU / full cold load CPU", f"{statistics.median(ratio) * 100:.1f}%",
                 " ".join(f"{rc:.2f}s/{cc:.2f}s" for rc, cc in zip(reload_cpu, cold_cpu))))
    rows.append(("phase 2 (all variants, background) after serving", f"{statistics.median(phase2):.1f} s",
                 " ".join(f"{t:.1f}" for t in phase2)))
    if a.base:
        base_load = []
        for _ in range(min(a.rounds, 3)):
            write_root(big)
            s = Server(a.base, big)
            try:
                s.first_200("/index.html", timeout=300)
                m = re.search(r"loaded in (\d+) ms", "".join(s.log))
                base_load.append(int(m.group(1)) / 1e3)
            finally:
                s.stop()
        rows.append(("base: full load (all variants before serving)", f"{statistics.median(base_load):.1f} s",
                     " ".join(f"{t:.1f}" for t in base_load)))
        rows.append(("phase 2 / base full load", f"{statistics.median(phase2) / statistics.median(base_load):.2f}x", ""))

    # 3. wrk during phase 2 vs after, interleaved.
    during, after = [], []
    for _ in range(a.rounds):
        write_root(big)
        s = Server(a.binary, big)
        try:
            s.first_200("/index.html")
            during.append(wrk(s.port))
            if any("variants complete" in l for l in s.log):
                print("warning: phase 2 ended before wrk did; the 'during' figure is mixed", file=sys.stderr)
            s.wait_log("variants complete")
            after.append(wrk(s.port))
        finally:
            s.stop()
    rows.append(("wrk -c64 /index.html during phase 2 / after", f"{statistics.median([d / f for d, f in zip(during, after)]):.3f}",
                 " ".join(f"{d:.0f}/{f:.0f}" for d, f in zip(during, after))))

    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure'.ljust(width)}  median     runs")
    for name, median, runs in rows:
        print(f"{name.ljust(width)}  {median:<10} {runs}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
