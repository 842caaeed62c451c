"""`coredns-anomaly demo`: the closed loop with real components on loopback."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole loop (lab CoreDNS, exporter, Prometheus, Alertmanager, webhook) with faults",
        description="Starts everything on loopback, injects faults, prints the timeline, writes a report.",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs/demo"),
        help="work dir and report (default runs/demo)",
    )
    p.add_argument("--model", type=Path, default=Path("models/default"), help="model bundle")
    p.add_argument("--duration", type=float, default=30.0, help="seconds per fault")
    p.add_argument("--gap", type=float, default=90.0, help="calm seconds after each fault")
    p.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    import shutil

    from coredns_anomaly.cli import UsageError

    from .demo import DemoSettings, run_demo

    if not (args.model / "model.json").is_file():
        raise UsageError(
            f"--model {args.model}: no model.json there (the shipped bundle is models/default)"
        )
    if args.out.exists():
        shutil.rmtree(args.out)
    from .stack import StackError

    try:
        report = run_demo(
            DemoSettings(
                args.out.resolve(), args.model.resolve(), duration=args.duration, gap=args.gap
            )
        )
    except StackError as exc:
        print(f"coredns-anomaly demo: a component failed: {exc}", file=sys.stderr)
        print(f"logs are in {args.out}/*.log", file=sys.stderr)
        return 1
    print(
        f"\nreport: {args.out / 'report.md'} (plot: {args.out / 'timeline.png'}), {report['run_seconds']:.0f}s in all"
    )
    print(f"the alerts are stored in {args.out / 'webhook.db'}; browse and label them with:\n"
          f"  coredns-anomaly webhook serve --dev --db {args.out / 'webhook.db'} --allow-unauthenticated --listen 127.0.0.1:9095")  # fmt: skip
    return 0
