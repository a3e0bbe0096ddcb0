"""Operator RSS when it starts among many Deployments: a watch's initial listing in pages
(the operator's default, ``WATCH_LIST_CHUNK``) or as one response (Kopf's default).

``--pairs`` blue (4 pods) and green (0) Deployments are created and left to become available;
then the operator is started with each page size in turn, ``--rounds`` times, and its RSS read
``--settle`` seconds after it runs and again after a heap trim interval.

    .venv/bin/python bench/listing.py --pairs 1000 --rounds 2
    .venv/bin/python bench/listing.py --pairs 1000 --rounds 2 --admission   # a default install
    .venv/bin/python bench/listing.py --smoke
"""

from __future__ import annotations

from typing import Any

from _common import Bench, add_admission_option, bench_parser, rss_then_later, save

from cutover.heap import TRIM_INTERVAL
from cutover.kopfsettings import WATCH_LIST_CHUNK


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, qps=1000, burst=2000, smoke="20 pairs, 1 round, short waits")
    parser.add_argument("--pairs", type=int, default=1000, help="blue/green pairs (1000)")
    parser.add_argument("--rounds", type=int, default=2, help="starts per page size (2)")
    parser.add_argument("--settle", type=float, default=10, help="first reading after (10)")
    add_admission_option(parser)
    args = parser.parse_args(argv)
    later = TRIM_INTERVAL + 5
    if args.smoke:
        args.pairs, args.rounds, args.settle, later = 20, 1, 2, 1
    chunks = {"pages": str(WATCH_LIST_CHUNK), "one_response": "0"}
    readings: dict[str, list[dict[str, float]]] = {k: [] for k in chunks}
    with Bench(args.cluster_dir) as bench:
        names = [f"m{i}" for i in range(args.pairs)]
        bench.create_deployments(
            [(f"{n}-blue", 4) for n in names] + [(f"{n}-green", 0) for n in names]
        )
        available = bench.wait_available(timeout=600 + args.pairs)
        print(f"{2 * args.pairs} Deployments available after {available:.1f}s", flush=True)
        for _ in range(args.rounds):
            for label, chunk in chunks.items():
                proc = bench.start_operator(
                    args.qps, args.burst, admission=args.admission, CUTOVER_WATCH_LIST_CHUNK=chunk
                )
                first, second = rss_then_later(proc, args.settle, later)
                readings[label].append({"rss_mib": first, "rss_later_mib": second})
                print(f"{label}: RSS {first:.1f} MiB, {second:.1f} MiB {later:.0f}s later")
        denied = bench.denied()
    report: dict[str, Any] = {
        "settings": vars(args) | {"output": str(args.output), "page": WATCH_LIST_CHUNK},
        "deployments": 2 * args.pairs,
        "readings": readings,
        "later_by_seconds": later,
        "rbac_denied": denied,
    }
    save("listing", report, args.output, args.smoke)
    return 1 if denied else 0


if __name__ == "__main__":
    raise SystemExit(main())
