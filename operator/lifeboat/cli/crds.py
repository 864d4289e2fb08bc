"""`lifeboat crds`: write crds/*.yaml from the pydantic models (the one source of truth)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(commands: Any) -> None:
    parser = commands.add_parser("crds", help="generate the CustomResourceDefinitions")
    parser.add_argument("--output", type=Path, default=Path("crds"), help="directory to write")
    parser.add_argument(
        "--docs",
        type=Path,
        metavar="FILE",
        help="also write the API reference (every field as kubectl explain shows it) to FILE, "
        "e.g. docs/api.md",
    )
    parser.set_defaults(handler=_crds)


def _crds(args: argparse.Namespace) -> int:
    from lifeboat.api.crd import write_crds
    from lifeboat.api.reference import render_reference

    for path in write_crds(args.output):
        print(path)
    if args.docs is not None:
        args.docs.write_text(render_reference(), encoding="utf-8")
        print(args.docs)
    return 0
