"""`python -m lifeboat` and the `lifeboat` console script."""

from __future__ import annotations

import sys

from lifeboat.cli import main as _main


def main() -> None:
    sys.exit(_main(sys.argv[1:]))


if __name__ == "__main__":
    main()
