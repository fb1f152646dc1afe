#!/usr/bin/env python3
"""Tables from the load harness's raw rows (benches/load/peers.sh writes them).

    summarize.py RESULTS.tsv

Each row: case, round, server, req/s, p99 in ms, server CPU µs per request, requests, errors.
Per case: the median of each figure over the rounds, the errors summed, then atomserve's ratios
taken round by round (each round's atomserve figure over each peer's, over that round's best
peer, or over the floor) and their median — ratios of runs seconds apart cancel most of a shared
machine's drift. Each median comes with a 90% bootstrap interval (`ratios.py`'s): when the
interval straddles a target, the run has not shown the target met or missed. "Best peer" takes
the better of the peers in each round, so its noise only ever counts against atomserve: a claim
against "every peer" is read from the per-peer ratios, the best peer's is the stricter figure.
Peers are nginx, lighttpd and h2o; a server whose name starts with `floor` is a syscall floor.
`atomserve-uring` (the io_uring backend) is read against `atomserve` (epoll) and `floor-uring`.
"""
import os
import random
import statistics
import sys
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ratios import interval  # noqa: E402  (the same bootstrap as interleave.sh's reader)

PEERS = ("nginx", "lighttpd", "h2o")


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=1):
    if v is None:
        return "—"
    return f"{v:,.0f}" if digits == 0 else f"{v:,.{digits}f}"


def ratio_cells(ratios, rng):
    """`name **median** [90% interval] (each round)` for each list of per-round ratios."""
    cells = []
    for name, v in ratios.items():
        lo, hi = interval(v, rng)
        cells.append(f"{name} **{med(v):.2f}** [{lo:.2f}–{hi:.2f}] ({', '.join(f'{x:.2f}' for x in v)})")
    return cells


def main() -> None:
    rng = random.Random(1)  # the same intervals for the same input
    rows = defaultdict(lambda: defaultdict(dict))  # case → server → round → figures
    order, servers_of = [], defaultdict(list)
    for line in open(sys.argv[1]):
        case, rnd, server, rps, p99, cpu, reqs, errs = line.rstrip("\n").split("\t")
        if case not in rows:
            order.append(case)
        if server not in servers_of[case]:
            servers_of[case].append(server)
        # wrk reports a p99 of 0 when it recorded too few latencies (pipelining records one per
        # batch): no figure rather than a zero.
        rows[case][server][int(rnd)] = dict(rps=float(rps), p99=float(p99) or None,
                                            cpu=float(cpu) if cpu != "-" else None,
                                            reqs=int(reqs), errs=int(errs))
    for case in order:
        by = rows[case]
        print(f"\n### {case}\n")
        print("| server | req/s | p99 ms | CPU µs/req | errors |")
        print("|---|---|---|---|---|")
        for s in servers_of[case]:
            r = by[s].values()
            print(f"| {s} | {fmt(med(x['rps'] for x in r), 0)} | {fmt(med(x['p99'] for x in r), 2)} | "
                  f"{fmt(med(x['cpu'] for x in r), 2)} | {sum(x['errs'] for x in r)} |")
        if "atomserve" not in by:
            continue
        ratios = defaultdict(list)
        for rnd, a in by["atomserve"].items():
            by_peer = {p: by[p][rnd] for p in PEERS if rnd in by.get(p, {})}
            for p, figures in by_peer.items():
                ratios[f"req/s ÷ {p}'s"].append(a["rps"] / figures["rps"])
            peers = list(by_peer.values())
            if peers:
                ratios["req/s ÷ best peer's"].append(a["rps"] / max(p["rps"] for p in peers))
                p99s = [p["p99"] for p in peers if p["p99"]]
                if a["p99"] and p99s:
                    ratios["p99 ÷ best peer's"].append(a["p99"] / min(p99s))
                cpus = [p["cpu"] for p in peers if p["cpu"]]
                if a["cpu"] and cpus:
                    ratios["CPU/req ÷ best peer's"].append(a["cpu"] / min(cpus))
            for f in (s for s in servers_of[case] if s.startswith("floor")):
                if rnd in by[f] and a["cpu"] and by[f][rnd]["cpu"]:
                    ratios[f"CPU/req ÷ {f}'s"].append(a["cpu"] / by[f][rnd]["cpu"])
                    ratios[f"req/s ÷ {f}'s"].append(a["rps"] / by[f][rnd]["rps"])
        parts = ratio_cells(ratios, rng)
        print("\natomserve, median of per-round ratios [90% interval] (rounds): " + "; ".join(parts))
        if "atomserve-uring" in by:
            uring = defaultdict(list)
            for rnd, u in by["atomserve-uring"].items():
                for base in ("atomserve", "floor-uring"):
                    b = by.get(base, {}).get(rnd)
                    if not b:
                        continue
                    if u["cpu"] and b["cpu"]:
                        uring[f"CPU/req ÷ {base}'s"].append(u["cpu"] / b["cpu"])
                    uring[f"req/s ÷ {base}'s"].append(u["rps"] / b["rps"])
                    if base == "atomserve" and u["p99"] and b["p99"]:
                        uring["p99 ÷ atomserve's"].append(u["p99"] / b["p99"])
            parts = ratio_cells(uring, rng)
            print("\natomserve --io uring, median of per-round ratios [90% interval] (rounds): " + "; ".join(parts))


if __name__ == "__main__":
    main()
