#!/usr/bin/env python3
"""`make docs-check`, part two: the docs' "try it" blocks, run against a freshly started server.

A block fenced as ```` ```sh try ```` is a lesson's command: this script starts
`target/debug/atomserve` on `frontend/dist` (listening on 127.0.0.1:8080, admin on
127.0.0.1:9464, two workers — what the docs assume), exports `P` (its pid), runs the block with
bash, and checks each `# expect: REGEX` line of the block against the block's output (stdout and
stderr together). A block that cannot run here is fenced ```` ```sh no-try: why ```` and is
listed with its reason; plain ```` ```sh ```` blocks are examples, counted but not run.

    python3 tools/docs_try.py              # every try block of docs/*.md and README.md
    python3 tools/docs_try.py --self-test  # a wrong expectation must fail
"""
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```sh(?:\s+(?P<kind>try|no-try)(?::\s*(?P<why>.*))?)?\s*$")
EXPECT = re.compile(r"#\s*expect:\s*(?P<re>.+?)\s*$")
TOOLS = {"ss": "iproute2", "taskset": "util-linux", "strace": "strace", "pmap": "procps", "ps": "procps"}


def blocks(md):
    """(line, kind, why, body) of every sh block in `md`."""
    out, current = [], None
    for n, line in enumerate(md.read_text().splitlines(), 1):
        if current is None:
            m = FENCE.match(line)
            if m:
                current = (n, m.group("kind") or "example", m.group("why") or "", [])
        elif line.startswith("```"):
            out.append((current[0], current[1], current[2], "\n".join(current[3])))
            current = None
        else:
            current[3].append(line)
    return out


def install_tools(bodies):
    missing = sorted({pkg for word, pkg in TOOLS.items() for b in bodies
                      if re.search(rf"(^|[\s|;&(]){word}\s", b) and not shutil.which(word)})
    if missing:
        subprocess.run("apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
                       "--no-install-recommends " + " ".join(missing), shell=True, check=True)


def free(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def healthz():
    try:
        with socket.create_connection(("127.0.0.1", 9464), timeout=1) as c:
            c.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            head = c.recv(64)
            return int(head[9:12]) if head.startswith(b"HTTP/1.1 ") else None
    except OSError:
        return None


def start_server():
    binary = ROOT / "target" / "debug" / "atomserve"
    for port in (8080, 9464):
        if not free(port):
            sys.exit(f"docs-try: port {port} is taken; the lessons assume it (stop what uses it)")
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([binary, "--root", ROOT / "frontend" / "dist", "--listen", "127.0.0.1:8080",
                             "--admin-listen", "127.0.0.1:9464", "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=log)
    # Ready when the workers answer /healthz (the listener accepts before they run) and the
    # background compression has finished (its threads exist, its log line is out). The
    # compression threads run SCHED_IDLE, so on a busy machine that takes a while: 120 s.
    for _ in range(2400):
        log.seek(0)
        if b"variants complete" in log.read() and healthz() == 200:
            return proc
        time.sleep(0.05)
    proc.kill()
    log.seek(0)
    sys.exit("docs-try: atomserve did not start:\n" + log.read().decode(errors="replace"))


def run_block(body, pid):
    env = dict(os.environ, P=str(pid))
    done = subprocess.run(["bash", "-c", body], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    return done.stdout + done.stderr


def check(files, quiet=False):
    all_blocks = [(f, *b) for f in files for b in blocks(f)]
    tries = [b for b in all_blocks if b[2] == "try"]
    install_tools([b[4] for b in tries])
    proc = start_server()
    failures = []
    try:
        for f, line, _, _, body in tries:
            expects = [m.group("re") for m in map(EXPECT.search, body.splitlines()) if m]
            where = f"{f.relative_to(ROOT)}:{line}"
            if not expects:
                failures.append(f"{where}: a try block with no `# expect:` line checks nothing")
                continue
            output = run_block(body, proc.pid)
            for e in expects:
                if not re.search(e, output, re.M):
                    failures.append(f"{where}: no match for /{e}/ in:\n{output.rstrip()}")
    finally:
        proc.terminate()
        proc.wait(10)
    if quiet:
        return 1 if failures else 0
    for f, line, kind, why, _ in all_blocks:
        if kind == "no-try":
            print(f"not run: {f.relative_to(ROOT)}:{line}: {why}")
    for x in failures:
        print("FAILED " + x)
    examples = sum(1 for b in all_blocks if b[2] == "example")
    print(f"docs-try: {len(tries)} try blocks run, {len(failures)} failed; "
          f"{sum(1 for b in all_blocks if b[2] == 'no-try')} listed as not runnable, {examples} plain examples")
    return 1 if failures else 0


def self_test():
    with tempfile.TemporaryDirectory(dir=ROOT / "docs") as d:
        good = pathlib.Path(d) / "good.md"
        good.write_text("```sh try\ncat /proc/$P/comm   # expect: ^atomserve$\n```\n")
        bad = pathlib.Path(d) / "bad.md"
        bad.write_text("```sh try\ncat /proc/$P/comm   # expect: ^nginx$\n```\n")
        assert check([good], quiet=True) == 0, "a right expectation failed"
        assert check([bad], quiet=True) == 1, "a wrong expectation passed"
    print("docs-try: the runner fails on a wrong expectation and passes a right one")
    return 0


if __name__ == "__main__":
    if "--self-test" in sys.argv:
        sys.exit(self_test())
    sys.exit(check(sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]))
