"""``coredns-anomaly rules``: generate alerting rules, their promtool tests and the runbooks.

Only pyyaml at import time, and nothing of training: the classic rules are rendered from the
thresholds.json that training learns (`coredns-anomaly thresholds learn`). Every command
renders all of its outputs in memory first and writes them together (render.write_all), so an
error leaves existing files untouched.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

log = logging.getLogger("coredns_anomaly.rules")

RULES_FILE = "coredns-anomaly.rules.yml"
CLASSIC_FILE = "coredns-classic.rules.yml"
CLASSIC_LEGACY_FILE = "coredns-classic-legacy.rules.yml"
DEFAULT_RUNBOOKS = "docs/runbooks.md"
MOVED_TO_TRAINING = ("--dataset", "--evaluate", "--rate-window", "--model")
LEARN_ELSEWHERE = (
    "learning thresholds is training's: `coredns-anomaly thresholds learn --dataset DIR "
    "[--dataset DIR ...] --out DIR` writes DIR/thresholds.json, `rules classic --thresholds "
    "DIR/thresholds.json --out OUT` renders it, and `coredns-anomaly thresholds evaluate` "
    "scores the rendered rules (docs/rules.md)"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rules",
        allow_abbrev=False,
        help="generate Prometheus alerting rules, promtool tests and runbooks",
        description="Alerting rules from a model bundle (exporter series), or classic rules on "
        "CoreDNS's own metrics from the thresholds.json `coredns-anomaly thresholds learn` "
        "writes. See docs/rules.md.",
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
        help="classic rules on CoreDNS metrics, from thresholds learned by `thresholds learn`",
        description="Renders --thresholds (thresholds.json, written by `coredns-anomaly "
        "thresholds learn`): the rule file, its promtool test and a PrometheusRule manifest.",
    )
    cls.add_argument(
        "--thresholds", type=Path, help="thresholds.json from `coredns-anomaly thresholds learn`"
    )
    cls.add_argument("--out", required=True, type=Path, help="output directory")
    cls.add_argument("--job", default="coredns", help="the job scraping CoreDNS")
    cls.add_argument(
        "--legacy-names",
        action="store_true",
        help="pre-1.11 forward metric names (coredns_forward_*) instead of coredns_proxy_*",
    )
    # Learning moved to training: these flags only say so (hidden from --help).
    for flag in MOVED_TO_TRAINING:
        cls.add_argument(flag, action="append", nargs="?", const="", help=argparse.SUPPRESS)
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
        f"{m.window}, debounce {m.debounce_steps}, {m.delay_measured_on} median delay {m.median_delay_steps:g} steps.\n"
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
    return _render(lambda: generate_files(args))


def _render(files_of) -> int:
    """Render every output (`files_of()`), then write them all; a RulesError writes nothing."""
    from .model import RulesError
    from .render import write_all

    try:
        files = files_of()
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

    moved = [f for f in MOVED_TO_TRAINING if getattr(args, f[2:].replace("-", "_"))]
    if moved:
        _usage(ValueError(f"{', '.join(moved)}: {LEARN_ELSEWHERE}"))
    if args.thresholds is None:
        _usage(ValueError(f"--thresholds is required; {LEARN_ELSEWHERE}"))
    return _render(lambda: classic_files(args, load_thresholds(args.thresholds)))


def _runbooks(args: argparse.Namespace) -> int:
    from .render import write_all
    from .runbooks import runbooks_markdown

    text = runbooks_markdown()
    if args.out == "-":
        sys.stdout.write(text)
    else:
        write_all({Path(args.out): text})
    return 0
