"""The one ``coredns-anomaly`` command, a subcommand per role.

Each role's ``cli`` module registers its subcommands and imports its heavy dependencies only
inside the handler, so ``coredns-anomaly exporter`` never loads TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from coredns_anomaly import __version__

# Role modules that contribute subcommands; each exposes register(subparsers).
ROLE_CLIS = (
    "coredns_anomaly.lab.cli",
    "coredns_anomaly.training.cli",
    "coredns_anomaly.exporter.cli",
    "coredns_anomaly.rules.cli",
    "coredns_anomaly.webhook.cli",
    "coredns_anomaly.loop.cli",
)


class UsageError(Exception):
    """A problem the user can fix; printed without a traceback, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coredns-anomaly", description="Learned anomaly detection for CoreDNS."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in ROLE_CLIS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # A role that is not installed (or not written yet) simply has no subcommands.
            if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args) or 0)
    except UsageError as exc:
        print(f"coredns-anomaly {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
