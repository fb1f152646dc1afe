#!/usr/bin/env python3
"""Weakens each non-Relaxed atomic ordering in src/ one site at a time and runs the loom models.

A site is *caught* when some model fails with it weakened in the way a model reports a bug (a
failed assertion, a causality violation or data race, a deadlock): the ordering is shown
necessary. A run that fails for another reason — the mutant does not compile, or loom gives up
(branch or preemption limits, an exhausted thread or object table) — proves nothing: it is
reported as *invalid* and makes the script fail, as does a ratio of caught below 90% of the
valid ones.
Loads, stores and read-modify-writes are weakened to Relaxed; a SeqCst fence to AcqRel (a Relaxed
fence is not allowed at all, so it would be "caught" by a panic, which proves nothing).
src/sync/loom_queue.rs is skipped: it is loom's stand-in for crossbeam's queue, not production code.

Usage: make loom-mutants   (or: python3 loom-tests/mutants.py [--list] [--bound N])

--bound N runs the models with LOOM_MAX_PREEMPTIONS=N, also below the models' floor of 3
(LOOM_BELOW_FLOOR=1), to measure which mutants a lower bound misses; only the run at the floor
is held to the 90% line.
"""
import os
import pathlib
import re
import signal
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SKIP = {"src/sync/loom_queue.rs"}
BOUND = int(sys.argv[sys.argv.index("--bound") + 1]) if "--bound" in sys.argv else None
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
    """Runs the models; returns (exit code, combined output)."""
    env = dict(os.environ, RUSTFLAGS="--cfg atomserve_loom")
    env.setdefault("LOOM_MAX_PREEMPTIONS", "3")
    if BOUND is not None:
        env["LOOM_MAX_PREEMPTIONS"] = str(BOUND)
        env["LOOM_BELOW_FLOOR"] = "1"
    cmd = ["cargo", "test", "--release", "-q", "-p", "loom-tests", "--target-dir", "target/loom"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return done.returncode, done.stdout


# What loom (or a model's own assert!) prints when it finds a bug.
BUG = re.compile(r"Causality violation|data race|deadlock|panicked at (loom-tests/tests/|src/)")
# What says the run proves nothing.
INVALID = re.compile(r"error(\[E\d+\])?: |could not compile|exceeded maximum number of branches"
                     r"|max_branches|MAX_THREADS|max_threads|too many|exhausted|refusing to report a pass")


def classify(code, output):
    """'caught', 'survived' or 'invalid: why'."""
    if code == 0:
        return "survived"
    invalid = INVALID.search(output)
    if invalid and not BUG.search(output):
        return f"invalid: {invalid.group(0)}"
    if invalid:
        # Both: a limit hit in one model and a bug in another; the bug decides only if it is
        # not the limit's own panic message.
        return "caught" if BUG.search(output.replace(invalid.group(0), "")) else f"invalid: {invalid.group(0)}"
    return "caught" if BUG.search(output) else "invalid: failed without a loom report"


def self_test():
    """The classification on the outputs each kind of run produces (make loom runs it)."""
    cases = [
        (0, "test result: ok. 8 passed", "survived"),
        (101, "thread 'm' panicked at loom-tests/tests/handoff.rs:70:9:\nassertion failed", "caught"),
        (101, "thread 'm' panicked at src/cache/swap.rs:350:13:\nread a freed snapshot", "caught"),
        (101, "Causality violation: Concurrent load and mut accesses.", "caught"),
        (101, "deadlock; threads = [...]", "caught"),
        (101, "error[E0308]: mismatched types\nerror: could not compile `atomserve`", "invalid"),
        (101, "thread 'm' panicked at /root/.cargo/registry/src/loom-0.7.2/src/rt/path.rs:1:1:\n"
              "Model exceeded maximum number of branches.", "invalid"),
        (101, "panicked at loom-tests/src/lib.rs:23:9:\nLOOM_MAX_PREEMPTIONS=2 is below 3 ... refusing to report a pass",
         "invalid"),
        (101, "some test failed without saying why", "invalid"),
    ]
    for code, output, want in cases:
        got = classify(code, output).split(":")[0]
        assert got == want, f"{output!r}: {got}, want {want}"
    print(f"mutants.py: {len(cases)} classification cases pass")
    return 0


def restore_on_signals():
    """SIGTERM/SIGINT/SIGHUP end the script through `finally`, which puts the mutated source
    back: a killed run once left a weakened fence in src/ that was then committed."""
    def stop(signo, _frame):
        raise SystemExit(128 + signo)
    for signo in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signo, stop)


def main():
    restore_on_signals()
    if "--self-test" in sys.argv:
        return self_test()
    found = list(sites())
    if "--list" in sys.argv:
        for _, rel, _, _, line, old, new, src in found:
            print(f"{rel}:{line}: {old} -> {new}: {src}")
        return 0
    code, output = run_models()
    if code != 0:
        print("the unmutated models fail: fix them first\n" + output[-4000:])
        return 1
    counts = {"caught": 0, "survived": 0, "invalid": 0}
    for path, rel, start, end, line, old, new, src in found:
        original = path.read_text()
        try:
            path.write_text(original[:start] + "Ordering::" + new + original[end:])
            code, output = run_models()
        finally:
            path.write_text(original)
        verdict = classify(code, output)
        counts[verdict.split(":")[0]] += 1
        shown = verdict if verdict != "survived" else "SURVIVED"
        print(f"| `{rel}:{line}` | {old} → {new} | {shown} | `{src}` |", flush=True)
    valid = counts["caught"] + counts["survived"]
    print()
    print(f"{counts['caught']} caught, {counts['survived']} survived, {counts['invalid']} invalid of "
          f"{len(found)} ordering sites; {100 * counts['caught'] // max(valid, 1)}% of the valid ones caught")
    if counts["invalid"]:
        print("invalid mutants prove nothing: fix what made them invalid")
        return 1
    if counts["caught"] * 10 < valid * 9 and BOUND is None:
        print("fewer than 90% of the valid mutants are caught")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
