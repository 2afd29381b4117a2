"""The ``selfheal`` command line. Subcommands import what they need when they run, so
``selfheal --help`` stays fast."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _demo(args: argparse.Namespace) -> int:
    from serve.demo import run_demo

    run_demo(out=sys.stdout, color=args.color)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="selfheal",
        description="Keeps clinical AI services answering through failures, safely.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser("demo", help="run a short scripted outage and explain each step")
    demo.add_argument("--color", action=argparse.BooleanOptionalAction, default=None,
                      help="colour the output (default: when writing to a terminal)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
