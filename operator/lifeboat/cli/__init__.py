"""The `lifeboat` command line: the worker's commands, the demo, CRD generation, the operator.

Every failure the program understands ends as one line on stderr naming the cause, and an exit
code per kind of failure (see `errors.py`); `--debug` adds the traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

from lifeboat import __version__
from lifeboat.cli.logformat import configure_logging
from lifeboat.contract import format_error_line
from lifeboat.worker.errors import Interrupted, LifeboatError

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    from lifeboat.cli import crds, demo, drill, operator, worker

    parser = argparse.ArgumentParser(
        prog="lifeboat",
        description="Back up and restore databases: verified, atomic, with measured progress.",
    )
    parser.add_argument("--version", action="version", version=f"lifeboat {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    worker.register(commands)
    drill.register(commands)
    demo.register(commands)
    crds.register(commands)
    operator.register(commands)
    return parser


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM (Job deletion, pod eviction) unwinds like Ctrl-C: uploads abort, tools are killed."""

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(f"stopped by signal {signal.Signals(signum).name}; nothing was published")

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    given = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(given)
    except LifeboatError as exc:  # an option's type refused its value (--compression lz4)
        return _fail(exc, "--debug" in given or bool(os.environ.get("LIFEBOAT_DEBUG")))
    debug = bool(args.debug or os.environ.get("LIFEBOAT_DEBUG"))
    configure_logging(debug=debug, log_format=getattr(args, "log_format", "text"))
    handler: Handler = args.handler
    try:
        with _signals_interrupt():
            return handler(args)
    except KeyboardInterrupt:
        return _fail(Interrupted("interrupted; nothing was published"), debug)
    except LifeboatError as exc:
        return _fail(exc, debug)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, no traceback
        unexpected = LifeboatError(f"{type(exc).__name__}: {exc} (rerun with --debug for details)")
        unexpected.reason = "Unexpected"
        return _fail(unexpected, debug)


def _fail(exc: LifeboatError, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(format_error_line(exc.reason, str(exc)), file=sys.stderr)
    return exc.exit_code
