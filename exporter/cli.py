"""Subcommands of the exporter role. The exporter process itself lands with its issue; the
feature table is here because the feature list lives in this role."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    feats = sub.add_parser("features", help="print the feature table (docs/features.md)")
    feats.set_defaults(handler=_features)


def features_doc() -> str:
    from .features import feature_table_markdown

    return (
        "# Features\n\n"
        "Generated from `exporter/features.py` by `coredns-anomaly features > docs/features.md`;\n"
        "a test fails when this file is stale. Rates are one-step counter deltas divided by the\n"
        "step (resets handled); a source family a page lacks masks the feature (NaN), and lazily\n"
        "created counters count as 0 while their plugin is enabled. Where two names are given,\n"
        "the first is CoreDNS 1.11+ and the second the older name.\n\n" + feature_table_markdown()
    )


def _features(args: argparse.Namespace) -> int:
    print(features_doc(), end="")
    return 0
