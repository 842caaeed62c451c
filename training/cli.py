"""Subcommands of the training role: collect, train, restep, fit, label, thresholds, dataset.
Heavy imports stay in handlers."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def add_prometheus_auth_flags(p: argparse.ArgumentParser) -> None:
    """The auth and TLS flags of a Prometheus API client (read by collect.api_from_args)."""
    p.add_argument("--bearer-token-file", type=Path)
    p.add_argument("--basic-auth-user")
    p.add_argument("--basic-auth-password-file", type=Path)
    p.add_argument("--ca-file", type=Path, help="CA bundle to verify the server")
    p.add_argument("--insecure-skip-verify", action="store_true")
    p.add_argument("--cert-file", type=Path, help="client certificate (mTLS)")
    p.add_argument("--key-file", type=Path)


def register(sub: argparse._SubParsersAction) -> None:
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
    add_prometheus_auth_flags(col)
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
        "--threshold-rule",
        help="the exported model's decision rule instead of the validation-tuned one, e.g. "
        "latent_min_known_anomaly (the proposal's: the smallest latent distance among known "
        "anomalous windows); the report lists every rule with its figures",
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
    tr.add_argument(
        "--export-kind",
        choices=("autoencoder", "classifier", "siamese", "ensemble"),
        help="export the best of this kind (default: the best of all on validation)",
    )
    tr.add_argument(
        "--only-kind",
        choices=("autoencoder", "classifier", "siamese"),
        help="train, score and export only this kind, without the comparisons (other kinds, "
        "ensemble, coredns-mixin baseline): the quick way to retrain on your own labels",
    )
    tr.set_defaults(handler=_train)

    rst = sub.add_parser(
        "restep", help="the same network as a bundle for another scrape step (e.g. 15 or 30 s)"
    )
    rst.add_argument("--model", type=Path, default=Path("models/default"), help="source bundle")
    rst.add_argument("--step", type=float, required=True, help="seconds between scrapes")
    rst.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    rst.set_defaults(handler=_restep)

    fit = sub.add_parser(
        "fit", help="learn a fleet's own normal from its history: bundle + threshold + report"
    )
    fit.add_argument("--dataset", type=Path, action="append", help="dataset directory (repeatable)")
    fit.add_argument("--prometheus", help="collect from this Prometheus API instead of --dataset")
    fit.add_argument("--start", help="with --prometheus: RFC 3339 time or unix seconds")
    fit.add_argument("--end", help="with --prometheus: RFC 3339 time or unix seconds")
    fit.add_argument("--step", type=float, default=30.0, help="with --prometheus: seconds")
    fit.add_argument(
        "--selector", default='{job=~".*coredns.*"}', help="with --prometheus: series selector"
    )
    fit.add_argument("--collect-out", type=Path, help="with --prometheus: also keep the dataset")
    add_prometheus_auth_flags(fit)
    fit.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    fit.add_argument("--report", type=Path, help="directory for fit-report.md/.json and PNGs")
    fit.add_argument(
        "--budget-per-day", type=float, default=1.0, help="false alarms per instance per day"
    )
    fit.add_argument("--labels", type=Path, help="engineers' label file (docs/labels.md)")
    fit.add_argument("--base-model", type=Path, help="start from this bundle's keras weights")
    fit.add_argument("--epochs", type=int, default=30)
    fit.add_argument("--window", type=int, default=8, help="steps per window")
    fit.add_argument("--debounce", type=int, default=1, help="consecutive steps for an alarm")
    fit.add_argument("--min-hours", type=float, default=2.0, help="least data per instance, hours")
    fit.add_argument("--max-train-windows", type=int, default=40_000)
    fit.add_argument("--seed", type=int, default=0)
    fit.set_defaults(handler=_fit)

    lbl = sub.add_parser(
        "label",
        help="weak labels from existing alerting rules: over a dataset's history (evaluated "
        "by the real Prometheus) or from a live Prometheus's ALERTS",
        description="Writes the webhook's label file (source weak, the alert name as class) "
        "that `train --labels` reads, and a per-rule report.",
    )
    lbl.add_argument("--rules", type=Path, help="Prometheus rule file (with --dataset)")
    lbl.add_argument("--dataset", type=Path, help="dataset directory whose history to label")
    lbl.add_argument("--prometheus", help="read ALERTS from this Prometheus (base URL)")
    lbl.add_argument("--start", help="with --prometheus: RFC 3339 time or unix seconds")
    lbl.add_argument("--end", help="with --prometheus: RFC 3339 time or unix seconds")
    lbl.add_argument("--step", type=float, default=15.0, help="with --prometheus: seconds")
    lbl.add_argument(
        "--matchers",
        help="which alerts label, Prometheus syntax, e.g. 'alertname=~\"CoreDNS.*\"' (default: "
        "every rule of --rules; with --prometheus, the CoreDNS alerts)",
    )
    lbl.add_argument("--out", type=Path, required=True, help="label file (CSV) to write")
    lbl.add_argument("--report", type=Path, help="also write the per-rule report (Markdown)")
    add_prometheus_auth_flags(lbl)
    lbl.set_defaults(handler=_label, selector="{}")

    thr = sub.add_parser(
        "thresholds",
        help="classic rules' thresholds learned from datasets' normal traffic, and rule files "
        "scored on their test split (real Prometheus)",
        description="`learn` writes thresholds.json, which `coredns-anomaly rules classic "
        "--thresholds` renders; `evaluate` scores the rendered rules and the coredns-mixin like "
        "the models. See docs/rules.md.",
    )
    thr_sub = thr.add_subparsers(dest="thresholds_command", required=True, metavar="SUBCOMMAND")
    tl = thr_sub.add_parser(
        "learn",
        allow_abbrev=False,
        help="thresholds from the train part's normal steps, `for:` from validation",
        description="Writes OUT/thresholds.json (needs prometheus/promtool).",
    )
    tl.add_argument("--dataset", type=Path, action="append", required=True, help="dataset directory (repeatable)")  # fmt: skip
    tl.add_argument("--out", type=Path, required=True, help="output directory")
    tl.add_argument("--rate-window", default="1m", help="rate window of every rule (default 1m)")
    tl.set_defaults(handler=_thresholds_learn)
    te = thr_sub.add_parser(
        "evaluate",
        allow_abbrev=False,
        help="score classic rules and the coredns-mixin on the datasets' test split",
        description="Writes OUT/evaluation.json: the rule files' figures on the test split, "
        "with the models' windows and evaluation (real Prometheus).",
    )
    te.add_argument("--dataset", type=Path, action="append", required=True, help="dataset directory (repeatable)")  # fmt: skip
    te.add_argument("--classic", type=Path, required=True, help="the classic rule file to score (as `rules classic` rendered it)")  # fmt: skip
    te.add_argument("--mixin-rules", type=Path, default=Path("rules/coredns_mixin.yml"), help="the coredns-mixin rule file scored beside it")  # fmt: skip
    te.add_argument("--model", type=Path, default=Path("models/default"), help="bundle whose window sets the test windows")  # fmt: skip
    te.add_argument("--out", type=Path, required=True, help="output directory")
    te.set_defaults(handler=_thresholds_evaluate)

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
    rs = dset_sub.add_parser(
        "resample",
        help="the dataset as a slower Prometheus (e.g. 15 or 30 s) would hold it",
    )
    rs.add_argument("dataset", type=Path)
    how = rs.add_mutually_exclusive_group(required=True)
    how.add_argument("--every", type=int, help="keep one scrape in K")
    how.add_argument(
        "--step", type=float, help="keep the first scrape at or after every multiple of STEP s"
    )
    rs.add_argument("--out", type=Path, required=True)
    rs.set_defaults(handler=_dataset_resample)


def _train(args: argparse.Namespace) -> int:
    from coredns_anomaly.cli import UsageError

    from .dataset import DatasetError
    from .pipeline import OptionError, TrainOptions, run

    try:
        opts = TrainOptions(
            datasets=args.dataset or [Path("data/lab-v1"), Path("data/lab-v2")],
            bundle_out=args.out,
            report_dir=args.report,
            label_files=args.labels,
            held_out=tuple(c for c in args.held_out.split(",") if c),
            val_novel=tuple(c for c in args.val_novel.split(",") if c),
            epochs=args.epochs,
            batch=args.batch_size,
            seed=args.seed,
            mixin_rules=args.mixin_rules,
            quick=args.quick,
            include_weak=not args.no_weak_labels,
            export_kind=args.export_kind,
            threshold_rule=args.threshold_rule,
            only_kind=args.only_kind,
        )
        run(opts, progress=lambda m: log.info("train: %s", m))
    except (DatasetError, FileNotFoundError, OptionError) as exc:
        raise UsageError(str(exc)) from exc
    return 0


def _restep(args: argparse.Namespace) -> int:
    from coredns_anomaly.cli import UsageError
    from coredns_anomaly.exporter.bundle import BundleError

    from .restep import restep

    try:
        out = restep(args.model, args.step, args.out)
    except (BundleError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    print(f"bundle: {out} (step {args.step:g} s, from {args.model})")
    return 0


def _fit(args: argparse.Namespace) -> int:
    from coredns_anomaly.cli import UsageError

    from .fit import FitError, run

    try:
        run(args)
    except FitError as exc:
        raise UsageError(str(exc)) from exc
    return 0


def _collect(args: argparse.Namespace) -> int:
    from . import collect

    return collect.main(args)


def _label(args: argparse.Namespace) -> int:
    from coredns_anomaly.cli import UsageError
    from coredns_anomaly.webhook.labels import write_label_file
    from coredns_anomaly.webhook.matchers import DEFAULT_WEAK_MATCHERS, MatcherError

    from . import weak_labels
    from .collect import CollectError
    from .dataset import DatasetError

    try:
        if args.dataset is not None:
            if args.rules is None or args.prometheus:
                raise UsageError("--dataset needs --rules (and no --prometheus)")
            found = weak_labels.from_rules(args.dataset, args.rules, args.matchers or "")
        elif args.prometheus:
            if not (args.start and args.end):
                raise UsageError("--prometheus needs --start and --end")
            from .collect import api_from_args

            api, start, end = api_from_args(args)
            matchers = DEFAULT_WEAK_MATCHERS if args.matchers is None else args.matchers
            found = weak_labels.from_alerts(api, start, end, args.step, matchers)
        else:
            raise UsageError("give --rules FILE --dataset DIR, or --prometheus URL --start --end")
    except UsageError:
        raise
    except (DatasetError, MatcherError, CollectError, FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    write_label_file(args.out, found.records)
    table = found.table()
    if args.report:
        args.report.write_text(f"# Weak labels in {args.out}\n\n{table}\n")
    print(table)
    print(f"{len(found.records)} weak labels -> {args.out}")
    return 0


def _thresholds_learn(args: argparse.Namespace) -> int:
    from coredns_anomaly.cli import UsageError
    from coredns_anomaly.contracts import thresholds

    from .baselines.thresholds import LearnError, learn

    try:
        doc = learn(args.dataset, args.rate_window)
    except (LearnError, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from exc
    path = thresholds.write(doc, args.out / thresholds.FILE)
    print(f"thresholds: {path} (render with `coredns-anomaly rules classic --thresholds {path}`)")
    return 0


def _thresholds_evaluate(args: argparse.Namespace) -> int:
    import json

    from coredns_anomaly.cli import UsageError
    from coredns_anomaly.contracts.bundle import BundleError, BundleMeta

    from .baselines.thresholds import evaluation
    from .dataset import DatasetError

    for flag, path in (("--classic", args.classic), ("--mixin-rules", args.mixin_rules)):
        if not path.is_file():
            raise UsageError(f"{flag} {path}: no such rule file")
    try:
        window = BundleMeta.read(args.model / "model.json").window
        rules = {"classic": args.classic, "coredns_mixin": args.mixin_rules}
        doc = evaluation(args.dataset, rules, window)
    except (BundleError, DatasetError, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from exc
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "evaluation.json"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
    print(f"evaluation: {path}")
    return 0


def _dataset_info(args: argparse.Namespace) -> int:
    import json

    from .dataset import load, summary

    print(json.dumps(summary(load(args.dataset)), indent=2))
    return 0


def _dataset_resample(args: argparse.Namespace) -> int:
    from coredns_anomaly.cli import UsageError

    from . import dataset as ds_mod

    if args.every is not None and args.every < 1:
        raise UsageError("--every must be >= 1")
    try:
        ds = ds_mod.load(args.dataset)
        ds = ds_mod.resample(ds, args.every) if args.every else ds_mod.resample_to(ds, args.step)
    except (ds_mod.DatasetError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    ds_mod.write(ds, args.out)
    print(f"dataset: {args.out} (step {ds.step:g} s)")
    return 0


def _dataset_openmetrics(args: argparse.Namespace) -> int:
    from .dataset import load
    from .openmetrics import write_openmetrics

    n = write_openmetrics(load(args.dataset), args.out, job=args.job)
    print(f"wrote {n} samples to {args.out}")
    return 0
