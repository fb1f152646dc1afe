#!/usr/bin/env python3
"""Medians of per-round ratios from interleave.sh's output, with how far they can be trusted.

    benches/load/ratios.py OUT [OUT …] -- A/B [A/B …]

Each OUT is what `benches/load/interleave.sh` printed (one line per server per round). For each
pair A/B it divides A's figure by B's round by round (the two ran seconds apart, so the
machine's mood mostly cancels), and prints the median ratio of server CPU per request, of both
CPUs' busy time per request, of req/s, of wrk's 99th percentile latency and (in output that has
them) of its 99.9th percentile and largest latency, each with a 90%
interval for the median: the 5th and 95th percentiles of the medians of 2,000 resamples of the
rounds (a bootstrap). Rounds from several OUT files are pooled; a round counts when both servers
ran in it.

On this shared 2-core VM single rounds of one pair swing by ±20%: a median of 5 rounds moves by
several percent from run to run. The interval says which differences a run can resolve: when it
straddles a target, the run has not shown the target met or missed.

Runs differ by more than their rounds do: each starts its servers afresh, and a process's memory
layout stays with it for the whole run (on 2026-11-29 the same pair of builds gave run medians
from 0.86 to 1.07). So with several runs (several OUT files, or one made with interleave.sh's
RUNS) each pair gets a second line: the server CPU
ratio's median in each run, sorted, and a 90% interval from resampling whole runs rather than
rounds, which is the one to read for a difference between builds. A resample of a handful of
runs repeats the same few: with fewer than about eight runs, read the run medians, not it.
"""
import random
import re
import statistics
import sys

LINE = re.compile(
    r"(?:run (\d+)\s+)?round (\d+)\s+(\S+)\s+([\d.]+) req/s\s+server\s+([\d.]+) µs/req\s+wrk\s+([\d.]+) µs/req"
    r"\s+p99\s+([\d.]+) ms\s+cpus\s+([\d.]+)(?: µs/req\s+p99\.9\s+([\d.]+) ms\s+max\s+([\d.]+) ms)?"
)


def rounds(paths):
    """{name: {((file, run), round): (req/s, server µs/req, cpus µs/req, p99, p99.9, max ms)}}

    A run is one start of the servers: a whole OUT file, or each `run K` of one made with RUNS.
    """
    table = {}
    for f, path in enumerate(paths):
        with open(path, encoding="utf-8") as out:
            for line in out:
                m = LINE.search(line)
                if m:
                    run, r, name = int(m.group(1) or 0), int(m.group(2)), m.group(3)
                    if r == 0:  # the warm-up round
                        continue
                    tail = tuple(float(g) if g else 0.0 for g in m.group(9, 10))
                    table.setdefault(name, {})[((f, run), r)] = (
                        float(m.group(4)), float(m.group(5)), float(m.group(8)), float(m.group(7))
                    ) + tail
    return table


def interval(xs, rng, draws=2000):
    """The 5th and 95th percentiles of the median over bootstrap resamples of `xs`."""
    meds = sorted(statistics.median(rng.choices(xs, k=len(xs))) for _ in range(draws))
    return meds[int(0.05 * draws)], meds[int(0.95 * draws) - 1]


def by_run(xs_by_file, rng, draws=2000):
    """The 5th and 95th percentiles of the pooled median over resamples of whole runs."""
    runs = list(xs_by_file.values())
    meds = sorted(
        statistics.median([x for run in rng.choices(runs, k=len(runs)) for x in run]) for _ in range(draws)
    )
    return meds[int(0.05 * draws)], meds[int(0.95 * draws) - 1]


def main(argv):
    if "--" not in argv:
        sys.exit(__doc__)
    cut = argv.index("--")
    paths, pairs = argv[:cut], argv[cut + 1 :]
    table = rounds(paths)
    rng = random.Random(1)  # the same intervals for the same input
    for name, got in sorted(table.items()):
        vals = list(got.values())
        print(
            f"{name:14s} {len(vals):3d} rounds  median req/s {statistics.median(v[0] for v in vals):10.0f}"
            f"  server {statistics.median(v[1] for v in vals):8.3f} µs/req"
            f"  cpus {statistics.median(v[2] for v in vals):8.3f} µs/req"
        )
    for pair in pairs:
        a, b = pair.split("/")
        common = sorted(set(table.get(a, {})) & set(table.get(b, {})))
        if not common:
            print(f"{pair}: no round with both")
            continue
        cells = []
        figures = ((1, "server CPU"), (2, "both CPUs"), (0, "req/s"), (3, "p99"), (4, "p99.9"), (5, "max"))
        for i, what in figures:
            # wrk prints a p99 of 0 when it recorded too few latencies: no ratio for that round
            # (nor for the tail figures of output from before interleave.sh printed them).
            xs = [table[a][k][i] / table[b][k][i] for k in common if table[b][k][i] and table[a][k][i]]
            if not xs:
                continue
            lo, hi = interval(xs, rng)
            cells.append(f"{what} {statistics.median(xs):.3f} [{lo:.3f}–{hi:.3f}]")
        print(f"{pair:22s} {len(common):3d} rounds  " + "  ".join(cells))
        xs_by_file = {}
        for k in common:
            if table[b][k][1] and table[a][k][1]:
                xs_by_file.setdefault(k[0], []).append(table[a][k][1] / table[b][k][1])
        if len(xs_by_file) > 1:
            medians = sorted(statistics.median(xs) for xs in xs_by_file.values())
            lo, hi = by_run(xs_by_file, rng)
            print(
                f"{'':22s} {len(medians):3d} runs    server CPU by run [{lo:.3f}–{hi:.3f}], run medians "
                + " ".join(f"{m:.3f}" for m in medians)
            )


if __name__ == "__main__":
    main(sys.argv[1:])
