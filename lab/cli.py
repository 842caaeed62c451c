"""`coredns-anomaly lab`: record a labelled dataset from real CoreDNS, or plot one.

Heavy imports (pandas, matplotlib) stay in the handlers.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    lab = sub.add_parser("lab", help="run the CoreDNS lab: real servers, traffic, labelled faults")
    lab_sub = lab.add_subparsers(dest="lab_command", required=True, metavar="LAB_COMMAND")

    rec = lab_sub.add_parser("record", help="play a seeded fault schedule and write a dataset")
    rec.add_argument(
        "--preset", default="demo",
        help="named run: shipped (data/lab-v1), demo, or an environment env-* (data/envs/)",
    )  # fmt: skip
    rec.add_argument("--out", type=Path, required=True, help="dataset directory to write")
    rec.add_argument("--instances", type=int, help="override the preset's fleet size")
    rec.add_argument("--step", type=float, help="override the sampling step, seconds")
    rec.add_argument("--seed", type=int, help="override the preset's seed")
    rec.add_argument("--episodes-per-class", type=int, help="override episodes per class")
    rec.add_argument("--classes", help="comma-separated fault classes (default: the preset's)")
    rec.add_argument("--plot", type=Path, help="also write a timeline PNG here")
    rec.add_argument("--workdir", type=Path, help="keep CoreDNS configs and logs here")
    rec.add_argument(
        "--coredns", type=Path,
        help="CoreDNS binary of the fronts (default: the preset's release, "
        ".tools/coredns-VERSION/coredns from scripts/build-coredns.sh, or the pinned one)",
    )  # fmt: skip
    rec.set_defaults(handler=_lab_record)

    plot = lab_sub.add_parser("plot", help="PNG timeline of a dataset with its episodes shaded")
    plot.add_argument("dataset", type=Path)
    plot.add_argument("--out", type=Path, help="PNG path (default: DATASET/timeline.png)")
    plot.add_argument("--instance", help="only this instance")
    plot.set_defaults(handler=_lab_plot)


def _lab_record(args: argparse.Namespace) -> int:
    from dataclasses import asdict, replace

    from coredns_anomaly.cli import UsageError
    from coredns_anomaly.training import dataset as ds_mod

    from . import faults, processes
    from .lab import Lab, LabSettings
    from .presets import PRESETS, environment_card

    if args.preset not in PRESETS:
        raise UsageError(f"unknown preset {args.preset!r}; known: {', '.join(PRESETS)}")
    p = PRESETS[args.preset]
    overrides = {
        k: v
        for k, v in {
            "instances": args.instances, "step": args.step, "seed": args.seed,
            "episodes_per_class": args.episodes_per_class,
        }.items()
        if v is not None
    }  # fmt: skip
    if args.classes:
        unknown = set(args.classes.split(",")) - set(faults.FAULT_CLASSES)
        if unknown:
            raise UsageError(
                f"unknown classes {sorted(unknown)}; known: {', '.join(faults.FAULT_CLASSES)}"
            )
        overrides["classes"] = tuple(args.classes.split(","))
    p = replace(p, **overrides)
    schedule = p.schedule()
    end = max(it.at for it in schedule)
    log.info(
        "%s: %d instances, %d items, %.1f min", args.preset, p.instances, len(schedule), end / 60
    )
    coredns_bin = args.coredns
    if coredns_bin is None and p.release:
        root = Path(__file__).resolve().parent.parent
        coredns_bin = root / ".tools" / f"coredns-{p.release}" / "coredns"
        if not coredns_bin.exists():
            raise UsageError(
                f"preset {args.preset} runs CoreDNS {p.release}: build it first with "
                f"scripts/build-coredns.sh {p.release} (or pass --coredns PATH)"
            )
    processes.install_signal_handlers()
    settings = LabSettings(
        p.instances, p.step, p.seed, p.base_rates, args.workdir, cache=p.cache,
        rewrite=p.rewrite, autopath=p.autopath, mix=p.mix,
        coredns_bin=str(coredns_bin) if coredns_bin else None,
    )  # fmt: skip
    env = environment_card(args.preset, p, schedule)
    try:
        with Lab(settings) as lab:
            ds = lab.record(
                schedule,
                {"preset": args.preset, "preset_settings": asdict(p), "environment": env},
            )
            env["release"] = ds.meta.get("coredns_version", p.release)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from exc
    ds_mod.write(ds, args.out)
    log.info("wrote %s: %d samples, %d labels", args.out, len(ds.samples), len(ds.labels))
    if args.plot:
        from coredns_anomaly.training.plots import timeline

        timeline(ds, args.plot)
        print(f"plot: {args.plot}")
    print(f"dataset: {args.out}")
    return 0


def _lab_plot(args: argparse.Namespace) -> int:
    from coredns_anomaly.training.dataset import load
    from coredns_anomaly.training.plots import timeline

    out = args.out or args.dataset / "timeline.png"
    timeline(load(args.dataset), out, instance=args.instance)
    print(f"plot: {out}")
    return 0
