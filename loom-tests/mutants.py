#!/usr/bin/env python3
"""Weakens each non-Relaxed atomic ordering in src/ one site at a time and runs the loom models.

A site is *caught* when some model fails with it weakened: the ordering is shown necessary.
Loads, stores and read-modify-writes are weakened to Relaxed; a SeqCst fence to AcqRel (a Relaxed
fence is not allowed at all, so it would be "caught" by a panic, which proves nothing).
src/sync/loom_queue.rs is skipped: it is loom's stand-in for crossbeam's queue, not production code.

Usage: make loom-mutants   (or: python3 loom-tests/mutants.py [--list])
"""
import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SKIP = {"src/sync/loom_queue.rs"}
SITE = re.compile(r"Ordering::(Acquire|Release|AcqRel|SeqCst)")


def sites():
    for path in sorted((ROOT / "src").rglob("*.rs")):
        rel = str(path.relative_to(ROOT))
        if rel in SKIP:
            continue
        text = path.read_text()
        for m in SITE.finditer(text):
            line_start = text.rfind("\n", 0, m.start()) + 1
            line_end = text.find("\n", m.end())
            line = text[line_start:line_end]
            if line.lstrip().startswith("//"):
                continue
            is_fence = "fence(" in text[max(line_start, m.start() - 7):m.start()]
            weaker = "AcqRel" if is_fence else "Relaxed"
            if is_fence and m.group(1) != "SeqCst":
                continue
            yield path, rel, m.start(), m.end(), text.count("\n", 0, m.start()) + 1, m.group(1), weaker, line.strip()


def run_models():
    env = dict(os.environ, RUSTFLAGS="--cfg atomserve_loom")
    env.setdefault("LOOM_MAX_PREEMPTIONS", "3")
    cmd = ["cargo", "test", "--release", "-q", "-p", "loom-tests", "--target-dir", "target/loom"]
    return subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode


def main():
    found = list(sites())
    if "--list" in sys.argv:
        for _, rel, _, _, line, old, new, src in found:
            print(f"{rel}:{line}: {old} -> {new}: {src}")
        return 0
    if run_models() != 0:
        print("the unmutated models fail: fix them first")
        return 1
    caught = 0
    rows = []
    for path, rel, start, end, line, old, new, src in found:
        original = path.read_text()
        try:
            path.write_text(original[:start] + "Ordering::" + new + original[end:])
            failed = run_models() != 0
        finally:
            path.write_text(original)
        caught += failed
        verdict = "caught" if failed else "SURVIVED"
        rows.append(f"| `{rel}:{line}` | {old} → {new} | {verdict} | `{src}` |")
        print(rows[-1], flush=True)
    print()
    print(f"{caught} of {len(found)} ordering sites caught ({100 * caught // max(len(found), 1)}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
