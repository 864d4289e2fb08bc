"""`lifeboat crds`: write crds/*.yaml from the pydantic models (the one source of truth)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(commands: Any) -> None:
    parser = commands.add_parser("crds", help="generate the CustomResourceDefinitions")
    parser.add_argument("--output", type=Path, default=Path("crds"), help="directory to write")
    parser.set_defaults(handler=_crds)


def _crds(args: argparse.Namespace) -> int:
    from lifeboat.api.crd import write_crds

    for path in write_crds(args.output):
        print(path)
    return 0
