"""Subcommands of the training role: lab, collect, dataset. Heavy imports stay in handlers."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    lab = sub.add_parser("lab", help="run the CoreDNS lab: real servers, traffic, labelled faults")
    lab_sub = lab.add_subparsers(dest="lab_command", required=True, metavar="LAB_COMMAND")

    rec = lab_sub.add_parser("record", help="play a seeded fault schedule and write a dataset")
    rec.add_argument("--preset", default="demo", help="named run: shipped (data/lab-v1) or demo")
    rec.add_argument("--out", type=Path, required=True, help="dataset directory to write")
    rec.add_argument("--instances", type=int, help="override the preset's fleet size")
    rec.add_argument("--step", type=float, help="override the sampling step, seconds")
    rec.add_argument("--seed", type=int, help="override the preset's seed")
    rec.add_argument("--episodes-per-class", type=int, help="override episodes per class")
    rec.add_argument("--classes", help="comma-separated fault classes (default: the preset's)")
    rec.add_argument("--plot", type=Path, help="also write a timeline PNG here")
    rec.add_argument("--workdir", type=Path, help="keep CoreDNS configs and logs here")
    rec.set_defaults(handler=_lab_record)

    plot = lab_sub.add_parser("plot", help="PNG timeline of a dataset with its episodes shaded")
    plot.add_argument("dataset", type=Path)
    plot.add_argument("--out", type=Path, help="PNG path (default: DATASET/timeline.png)")
    plot.add_argument("--instance", help="only this instance")
    plot.set_defaults(handler=_lab_plot)

    col = sub.add_parser("collect", help="write a dataset from a Prometheus HTTP API (query_range)")
    col.add_argument("--prometheus", required=True, help="base URL, e.g. http://prometheus:9090")
    col.add_argument("--start", required=True, help="RFC 3339 time or unix seconds")
    col.add_argument("--end", required=True, help="RFC 3339 time or unix seconds")
    col.add_argument("--step", type=float, required=True, help="seconds between samples")
    col.add_argument("--out", type=Path, required=True)
    col.add_argument(
        "--selector",
        default='{job=~".*coredns.*"}',
        help="series selector (matchers) of the CoreDNS targets",
    )
    col.add_argument("--labels", type=Path, help="label file (CSV) to attach")
    col.add_argument("--bearer-token-file", type=Path)
    col.add_argument("--basic-auth-user")
    col.add_argument("--basic-auth-password-file", type=Path)
    col.add_argument("--ca-file", type=Path, help="CA bundle to verify the server")
    col.add_argument("--insecure-skip-verify", action="store_true")
    col.add_argument("--cert-file", type=Path, help="client certificate (mTLS)")
    col.add_argument("--key-file", type=Path)
    col.set_defaults(handler=_collect)

    tr = sub.add_parser("train", help="train the three models, evaluate, export the best bundle")
    tr.add_argument(
        "--dataset",
        type=Path,
        action="append",
        help="dataset directory (repeatable; default: data/lab-v1 and data/lab-v2)",
    )
    tr.add_argument(
        "--labels",
        type=Path,
        action="append",
        default=[],
        help="label file from the webhook (repeatable)",
    )
    tr.add_argument(
        "--no-weak-labels",
        action="store_true",
        help="ignore weak labels (alerts of existing rules) in the label files",
    )
    tr.add_argument(
        "--out", type=Path, default=Path("models/default"), help="bundle directory to write"
    )
    tr.add_argument(
        "--report", type=Path, default=Path("docs"), help="where results.md and results/*.png go"
    )
    tr.add_argument(
        "--held-out",
        default="cache_thrash,tcp_fallback",
        help="classes kept out of train/validation",
    )
    tr.add_argument(
        "--val-novel",
        default="misconfig_refused",
        help="classes kept out of training but in validation",
    )
    tr.add_argument("--epochs", type=int, default=40)
    tr.add_argument("--batch-size", type=int, default=64)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument(
        "--mixin-rules",
        type=Path,
        default=Path("rules/coredns_mixin.yml"),
        help="baseline rule file",
    )
    tr.add_argument("--quick", action="store_true", help="one configuration per model (smoke runs)")
    tr.set_defaults(handler=_train)

    dset = sub.add_parser("dataset", help="inspect or export a dataset")
    dset_sub = dset.add_subparsers(dest="dataset_command", required=True, metavar="DATASET_COMMAND")
    info = dset_sub.add_parser("info", help="summary: duration, instances, episodes per class")
    info.add_argument("dataset", type=Path)
    info.set_defaults(handler=_dataset_info)
    om = dset_sub.add_parser(
        "openmetrics",
        help="export OpenMetrics text for promtool tsdb create-blocks-from openmetrics",
    )
    om.add_argument("dataset", type=Path)
    om.add_argument("--out", type=Path, required=True)
    om.add_argument("--job", default="coredns-lab", help="job label to give every series")
    om.set_defaults(handler=_dataset_openmetrics)


def _lab_record(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from coredns_anomaly.cli import UsageError

    from . import dataset as ds_mod
    from .lab import faults, processes
    from .lab.lab import Lab, LabSettings
    from .lab.presets import PRESETS

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
    schedule = faults.build_schedule(
        p.instances, p.classes, p.episodes_per_class, p.seed, p.warmup, p.gap, p.duration,
        p.benign_probability,
    )  # fmt: skip
    end = max(it.at for it in schedule)
    log.info(
        "%s: %d instances, %d items, %.1f min", args.preset, p.instances, len(schedule), end / 60
    )
    processes.install_signal_handlers()
    settings = LabSettings(p.instances, p.step, p.seed, p.base_rates, args.workdir)
    try:
        with Lab(settings) as lab:
            ds = lab.record(schedule, {"preset": args.preset, "preset_settings": p.__dict__})
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from exc
    ds_mod.write(ds, args.out)
    log.info("wrote %s: %d samples, %d labels", args.out, len(ds.samples), len(ds.labels))
    if args.plot:
        from .plots import timeline

        timeline(ds, args.plot)
        print(f"plot: {args.plot}")
    print(f"dataset: {args.out}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from coredns_anomaly.cli import UsageError

    from .dataset import DatasetError
    from .pipeline import run

    held = tuple(c for c in args.held_out.split(",") if c)
    try:
        run(
            args.dataset or [Path("data/lab-v1"), Path("data/lab-v2")], args.out, args.report, args.labels, held,
            args.epochs, args.batch_size, args.seed, args.mixin_rules,
            progress=lambda m: log.info("train: %s", m), quick=args.quick,
            val_novel=tuple(c for c in args.val_novel.split(",") if c),
            include_weak=not args.no_weak_labels,
        )  # fmt: skip
    except (DatasetError, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from exc
    return 0


def _lab_plot(args: argparse.Namespace) -> int:
    from .dataset import load
    from .plots import timeline

    out = args.out or args.dataset / "timeline.png"
    timeline(load(args.dataset), out, instance=args.instance)
    print(f"plot: {out}")
    return 0


def _collect(args: argparse.Namespace) -> int:
    from . import collect

    return collect.main(args)


def _dataset_info(args: argparse.Namespace) -> int:
    import json

    from .dataset import load, summary

    print(json.dumps(summary(load(args.dataset)), indent=2))
    return 0


def _dataset_openmetrics(args: argparse.Namespace) -> int:
    from .dataset import load
    from .openmetrics import write_openmetrics

    n = write_openmetrics(load(args.dataset), args.out, job=args.job)
    print(f"wrote {n} samples to {args.out}")
    return 0
