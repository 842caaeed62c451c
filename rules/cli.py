"""``coredns-anomaly rules``: generate alerting rules, their promtool tests and the runbooks.

Only pyyaml at import time; learning classic thresholds imports the training code lazily.
Every command renders all of its outputs in memory first and writes them together
(render.write_all), so an error leaves existing files untouched.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

log = logging.getLogger("coredns_anomaly.rules")

RULES_FILE = "coredns-anomaly.rules.yml"
CLASSIC_FILE = "coredns-classic.rules.yml"
CLASSIC_LEGACY_FILE = "coredns-classic-legacy.rules.yml"
DEFAULT_RUNBOOKS = "docs/runbooks.md"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rules",
        allow_abbrev=False,
        help="generate Prometheus alerting rules, promtool tests and runbooks",
        description="Alerting rules from a model bundle (exporter series) or learned from datasets "
        "(classic rules on CoreDNS's own metrics). See docs/rules.md.",
    )
    sub = parser.add_subparsers(dest="rules_command", required=True, metavar="SUBCOMMAND")

    gen = sub.add_parser(
        "generate",
        allow_abbrev=False,
        help="alerts on the exporter's series + meta-alerts, from a model bundle",
        description="Writes OUT/coredns-anomaly.rules.yml, OUT/tests/coredns-anomaly.rules.test.yml "
        "and a PrometheusRule manifest.",
    )
    gen.add_argument("--model", required=True, help="bundle directory (model.json is read)")
    gen.add_argument("--out", required=True, type=Path, help="output directory")
    gen.add_argument("--job", default="coredns-anomaly", help="the exporter's scrape job")
    gen.add_argument(
        "--coredns-job", default="coredns", help="the job scraping CoreDNS (unwatched-target check)"
    )
    gen.add_argument(
        "--critical-score", type=float, default=None, help="override the critical level"
    )
    gen.add_argument(
        "--keep-firing-for",
        type=float,
        default=None,
        metavar="SECONDS",
        help="the warning alert's re-arm hold: one alert until the instance was calm this long "
        "(default 600; 0 = resolve as soon as the exporter clears; docs/rules.md)",
    )
    gen.add_argument("--manifest", type=Path, default=None, help="PrometheusRule path (default OUT/prometheusrule.yaml)")  # fmt: skip
    _common(gen)
    gen.set_defaults(handler=_generate)

    cls = sub.add_parser(
        "classic",
        allow_abbrev=False,
        help="classic rules on CoreDNS metrics, thresholds learned from datasets' normal traffic",
        description="Learn thresholds from the train part's normal steps of --dataset(s) (needs "
        "prometheus/promtool), or re-render from --thresholds. Writes OUT/thresholds.json, the rule "
        "file, its promtool test and a PrometheusRule manifest.",
    )
    src = cls.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", action="append", type=Path, help="dataset directory (repeatable)")
    src.add_argument("--thresholds", type=Path, help="re-render from a thresholds.json")
    cls.add_argument("--out", required=True, type=Path, help="output directory")
    cls.add_argument("--job", default="coredns", help="the job scraping CoreDNS")
    cls.add_argument("--rate-window", default="1m", help="rate window of every rule (default 1m)")
    cls.add_argument(
        "--legacy-names",
        action="store_true",
        help="pre-1.11 forward metric names (coredns_forward_*) instead of coredns_proxy_*",
    )
    cls.add_argument(
        "--evaluate",
        action="store_true",
        help="also score the rules and the coredns-mixin on the datasets' test split "
        "(OUT/evaluation.json; real Prometheus)",
    )
    cls.add_argument("--model", default="models/default", help="bundle whose window sets the test windows")  # fmt: skip
    _common(cls)
    cls.set_defaults(handler=_classic)

    rb = sub.add_parser(
        "runbooks", allow_abbrev=False, help="write docs/runbooks.md (one entry per alert)"
    )
    rb.add_argument("--out", default="-", help="output file (default: stdout)")
    rb.set_defaults(handler=_runbooks)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--runbook-url-base",
        default=DEFAULT_RUNBOOKS,
        help="URL of docs/runbooks.md where your operators read it; #<alert> is appended",
    )
    p.add_argument("--namespace", default=None, help="namespace of the PrometheusRule")


def _usage(exc: Exception) -> None:
    from coredns_anomaly.cli import UsageError

    raise UsageError(str(exc)) from None


def generate_files(args: argparse.Namespace) -> dict[Path, str]:
    """Every output of `rules generate`, rendered (nothing written)."""
    from . import anomaly, promtests, render
    from .model import RulesError, load_model_facts

    m = load_model_facts(args.model)
    rearm = anomaly.REARM_SECONDS if args.keep_firing_for is None else args.keep_firing_for
    if not (math.isfinite(rearm) and rearm >= 0):
        raise RulesError(f"--keep-firing-for must be >= 0 seconds, got {rearm}")
    o = anomaly.Options(
        args.job, args.coredns_job, args.runbook_url_base, args.critical_score, rearm
    )
    groups = anomaly.groups(m, o)
    header = (
        "Generated by `coredns-anomaly rules generate` (make rules); do not edit.\n"
        f"Model bundle: {m.kind}, sha256 {m.sha256}, step {m.step_seconds:.3g} s, window "
        f"{m.window}, debounce {m.debounce_steps}, test median delay {m.median_delay_steps:g} steps.\n"
        f"Critical at score {anomaly.critical_score(m, o.critical_score):g}; for: "
        f"{render.duration(anomaly.for_seconds(m))}; warning keep_firing_for: "
        f"{render.duration(rearm)}. Exporter job {o.job}, CoreDNS job "
        f"{o.coredns_job}. Why: docs/rules.md."
    )
    manifest = args.manifest or args.out / "prometheusrule.yaml"
    test = promtests.anomaly_test_file(m, o, f"../{RULES_FILE}")
    return {
        args.out / RULES_FILE: render.dump({"groups": groups}, header),
        args.out / "tests" / "coredns-anomaly.rules.test.yml": render.dump(
            test, "promtool test rules: generated with the rules; do not edit."
        ),
        manifest: render.dump(
            render.prometheus_rule(groups, "coredns-anomaly", args.namespace), header
        ),
    }


def _generate(args: argparse.Namespace) -> int:
    from .model import RulesError
    from .render import write_all

    try:
        files = generate_files(args)
    except RulesError as exc:
        _usage(exc)
    write_all(files)
    for p in files:
        log.info("wrote %s", p)
    return 0


def classic_files(args: argparse.Namespace, learned: dict) -> dict[Path, str]:
    """Every output of `rules classic` from learned thresholds (nothing written)."""
    from . import classic, promtests, render

    legacy = args.legacy_names
    name = CLASSIC_LEGACY_FILE if legacy else CLASSIC_FILE
    groups = classic.groups(learned, args.job, args.runbook_url_base, legacy)
    names = "pre-1.11 coredns_forward_*" if legacy else "CoreDNS 1.11+ coredns_proxy_*"
    header = (
        "Generated by `coredns-anomaly rules classic` (make rules); do not edit.\n"
        f"Thresholds learned from normal train traffic ({learned.get('method', '')}), "
        f"thresholds.json; metric names: {names}. Why: docs/rules.md."
    )
    stem = name.removesuffix(".rules.yml")
    test = promtests.classic_test_file(
        learned, args.job, args.runbook_url_base, legacy, f"../{name}"
    )
    return {
        args.out / "thresholds.json": json.dumps(learned, indent=1, sort_keys=True) + "\n",
        args.out / name: render.dump({"groups": groups}, header),
        args.out / "tests" / f"{stem}.rules.test.yml": render.dump(
            test, "promtool test rules: generated with the rules; do not edit."
        ),
        args.out / f"prometheusrule{'-legacy' if legacy else ''}.yaml": render.dump(
            render.prometheus_rule(groups, stem, args.namespace), header
        ),
    }


def _classic(args: argparse.Namespace) -> int:
    from .classic import load_thresholds
    from .model import RulesError
    from .render import write_all

    if args.evaluate and not args.dataset:
        _usage(ValueError("--evaluate needs --dataset (the test split to score on)"))
    try:
        if args.thresholds:
            learned = load_thresholds(args.thresholds)
        else:
            from .learn import LearnError, learn

            try:
                learned = learn(args.dataset, args.rate_window)
            except LearnError as exc:
                raise RulesError(str(exc)) from None
        files = classic_files(args, learned)
    except RulesError as exc:
        _usage(exc)
    if args.evaluate:
        files[args.out / "evaluation.json"] = _evaluation(args, files)
    write_all(files)
    for p in files:
        log.info("wrote %s", p)
    return 0


def _evaluation(args: argparse.Namespace, files: dict[Path, str]) -> str:
    """Classic rules and the coredns-mixin on the test split, scored like the models."""
    import tempfile

    from .learn import evaluate
    from .model import load_model_facts

    window = load_model_facts(args.model).window
    mixin = Path(__file__).with_name("coredns_mixin.yml")
    name = CLASSIC_LEGACY_FILE if args.legacy_names else CLASSIC_FILE
    with tempfile.TemporaryDirectory(prefix="rules-eval-") as tmp:
        rules = Path(tmp) / name
        rules.write_text(files[args.out / name])
        res = evaluate(args.dataset, {"classic": rules, "coredns_mixin": mixin}, window)
    slim = {
        k: {
            "episode_recall": v["episode_recall"], "pointwise": v["pointwise"],
            "false_alarms": v["false_alarms"], "false_alarms_per_hour": v["false_alarms_per_hour"],
            "median_delay_steps": v["median_delay_steps"], "normal_hours": v["normal_hours"],
            "per_class": {c: {kk: pc[kk] for kk in ("episodes", "detected", "median_delay_steps")} for c, pc in v["per_class"].items()},
            "seen_vs_held_out": v["seen_vs_held_out"],
        }
        for k, v in res.items()
    }  # fmt: skip
    meta = {
        "datasets": [str(p) for p in args.dataset],
        "window": window,
        "split": "test (last 25%)",
    }
    return json.dumps({"setup": meta, **slim}, indent=1, sort_keys=True) + "\n"


def _runbooks(args: argparse.Namespace) -> int:
    from .render import write_all
    from .runbooks import runbooks_markdown

    text = runbooks_markdown()
    if args.out == "-":
        sys.stdout.write(text)
    else:
        write_all({Path(args.out): text})
    return 0
