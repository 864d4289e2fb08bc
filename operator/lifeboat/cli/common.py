"""Options shared by the worker commands: progress output and timeouts."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING

from lifeboat.contract import ExitCode
from lifeboat.worker.errors import LifeboatError
from lifeboat.worker.progress import JsonLinesReporter, Progress, Reporter
from lifeboat.worker.terminal import TerminalReporter

if TYPE_CHECKING:
    from lifeboat.worker.status_writer import StatusWriter


def add_progress_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress",
        choices=["auto", "bar", "json", "none"],
        default="auto",
        help="auto: a live bar on a terminal, plain lines otherwise; json: JSON lines on stderr",
    )
    parser.add_argument(
        "--json-progress",
        dest="progress",
        action="store_const",
        const="json",
        help="same as --progress json",
    )
    parser.add_argument(
        "--progress-interval",
        type=_positive_seconds,
        metavar="SECONDS",
        help="--progress json: at most one line per this many seconds, plus one per stage and "
        "the last (default: every half second)",
    )
    parser.add_argument(
        "--output", choices=["text", "json"], default="text", help="format of the final summary"
    )
    parser.add_argument("--timeout", type=float, metavar="SECONDS", help="give up after this long")
    parser.add_argument(
        "--report-status",
        metavar="PLURAL/NAMESPACE/NAME",
        help="also write progress and the result into this Backup's or Restore's status "
        "(in a Job: in-cluster credentials; elsewhere $KUBECONFIG)",
    )


def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return seconds


def status_writer(args: argparse.Namespace) -> StatusWriter | None:
    """The Kubernetes status writer when --report-status asks for one (imports the client)."""
    if not args.report_status:
        return None
    from lifeboat.worker.status_writer import StatusWriter

    return StatusWriter(args.report_status)


def make_progress(
    args: argparse.Namespace, operation: str, title: str, extra: Reporter | None = None
) -> Progress:
    reporters: list[Reporter] = [extra] if extra is not None else []
    interval = 0.5
    if args.progress == "json":
        reporters.append(JsonLinesReporter(sys.stderr, min_interval=args.progress_interval or 0.0))
    elif args.progress in ("auto", "bar"):
        reporters.append(TerminalReporter(title=title))
        if not sys.stderr.isatty():
            interval = 5.0  # plain lines in logs: a few, not a flood
    return Progress(operation, reporters, interval=interval)


class DeadlineExceeded(LifeboatError):
    reason = "DeadlineExceeded"
    exit_code = ExitCode.TIMEOUT


@contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Raise DeadlineExceeded in the main thread after `seconds` (cleanup runs as for errors)."""
    if not seconds:
        yield
        return

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise DeadlineExceeded(f"--timeout: still running after {seconds:g} s; stopped")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
