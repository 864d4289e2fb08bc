"""`kubectl lifeboat`: the kubectl plugin (the `kubectl-lifeboat` executable on PATH).

Create Backups from a schedule or another Backup and Restores from a Backup, wait for them with
a live bar driven by their status, list, describe and read the logs of what runs, and find the
backups in a bucket by their manifests. The kubeconfig, context and namespace are kubectl's.
Exit codes: see `errors.ExitCode` and docs/kubectl-plugin.md.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence

from lifeboat import __version__
from lifeboat.cli.kubectl import commands
from lifeboat.cli.kubectl.errors import ExitCode, PluginError
from lifeboat.cli.kubectl.kinds import (
    BACKUP,
    RESTORE,
    SCHEDULE,
    Kind,
    UnknownKind,
    resolve_kind,
    split_reference,
)
from lifeboat.kube import resources
from lifeboat.worker.errors import LifeboatError

__all__ = ["ExitCode", "build_parser", "main", "parse_duration"]

PROG = "kubectl lifeboat"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> float:
    """kubectl's durations: '90s', '5m', '1h30m', '250ms', or plain seconds ('90'); 0: none."""
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        parts = _DURATION.findall(value)
        if not parts or "".join(n + u for n, u in parts) != value:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a duration; write for example 90s, 5m, 1h30m"
            ) from None
        seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a duration cannot be negative")
    return seconds


def _add_connection_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """kubectl's flags, accepted before and after the command (`-n shop list`, `list -n shop`).

    Below the top level their default is SUPPRESS, so a flag given before the command is not
    reset by the subcommand's default."""
    default = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--kubeconfig",
        default=default,
        help="kubeconfig file(s) (default: $KUBECONFIG, else ~/.kube/config)",
    )
    parser.add_argument("--context", default=default, help="kubeconfig context to use")
    parser.add_argument(
        "-n",
        "--namespace",
        default=default,
        help="namespace (default: the context's namespace, else default)",
    )


def _add_wait_options(parser: argparse.ArgumentParser, *, flag: bool) -> None:
    if flag:
        parser.add_argument(
            "--wait",
            action="store_true",
            help="follow its status with a live progress bar until it is Completed (exit 0) or "
            "Failed (exit 1)",
        )
    parser.add_argument(
        "--timeout",
        type=parse_duration,
        default=0.0,
        help="give up waiting after this long (exit 124; the object keeps running), for example "
        "30m; 0 (default): no limit",
    )


def _add_target(parser: argparse.ArgumentParser, kinds: tuple[Kind, ...]) -> None:
    words = "|".join(kind.word for kind in kinds)
    parser.add_argument("kind", metavar=words.upper(), help=f"{words}, or KIND/NAME")
    parser.add_argument("name", metavar="NAME", nargs="?")
    parser.set_defaults(target_kinds=kinds)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Back up and restore databases with Lifeboat from kubectl: create Backups "
        "and Restores, watch their measured progress, find backups in a bucket.",
        epilog="Exit codes: 0 done (Completed), 1 the Backup/Restore Failed, 2 bad arguments, "
        "3 not found, 4 storage error, 5 Kubernetes API error, 124 --timeout passed, "
        "130 interrupted. See docs/kubectl-plugin.md.",
    )
    parser.add_argument("--version", action="version", version=f"kubectl-lifeboat {__version__}")
    _add_connection_options(parser, top=True)
    commands_ = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for kind in (BACKUP, RESTORE):
        group = commands_.add_parser(kind.word, help=f"create a {kind.kind}")
        actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
        create = actions.add_parser(
            "create",
            help=f"create a {kind.kind}",
            description=_CREATE_DESCRIPTIONS[kind.word],
        )
        create.add_argument("name", metavar="NAME", help=f"name of the new {kind.kind}")
        if kind is BACKUP:
            create.add_argument(
                "--from",
                dest="source",
                required=True,
                metavar="schedule/NAME|backup/NAME",
                type=_backup_source,
                help="copy the spec of a BackupSchedule's template or of an existing Backup",
            )
            create.set_defaults(handler=commands.backup_create)
        else:
            source = create.add_mutually_exclusive_group(required=True)
            source.add_argument("--from-backup", metavar="BACKUP", help="restore this Backup")
            source.add_argument(
                "--from-schedule",
                metavar="SCHEDULE",
                help="restore the newest Completed Backup of this BackupSchedule "
                "(spec.scheduleRef)",
            )
            create.add_argument(
                "--target-database",
                metavar="NAME",
                help="restore into this database on the backup's server (sqlite: this file on "
                "the backup's claim) instead of the backup's own database",
            )
            create.add_argument(
                "--keep-extra-objects",
                action="store_true",
                help="keep objects the backup does not have (default: drop them)",
            )
            create.add_argument(
                "--dry-run",
                action="store_true",
                help="spec.dryRun: check everything and record the plan; change nothing",
            )
            create.add_argument(
                "--no-owner", action="store_true", help="postgresql: do not restore owners"
            )
            create.add_argument(
                "--no-privileges", action="store_true", help="postgresql: do not restore GRANTs"
            )
            create.set_defaults(handler=commands.restore_create)
        _add_wait_options(create, flag=True)
        _add_connection_options(create, top=False)

    listing = commands_.add_parser(
        "list",
        help="list Backups, Restores and schedules, or the backups in a bucket",
        description="Without LOCATION: the Backups, Restores and BackupSchedules of a namespace "
        "(-A: of all), with phase, progress, size, age and reason; a kind (backups, restores, "
        "schedules) lists only that. With LOCATION (s3://bucket/prefix/, file:///dir, ./dir): "
        "the backups stored there, found by their manifest.json, newest first, with the "
        "credentials of the environment (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ...).",
    )
    listing.add_argument("what", metavar="KIND|LOCATION", nargs="?")
    listing.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    listing.add_argument(
        "-o", "--output", choices=["table", "json"], default="table", help="a table, or JSON"
    )
    listing.set_defaults(handler=commands.list_command)
    _add_connection_options(listing, top=False)

    describe = commands_.add_parser(
        "describe",
        help="phase, progress, result, conditions and Events of one object",
    )
    _add_target(describe, (BACKUP, RESTORE, SCHEDULE))
    describe.set_defaults(handler=commands.describe_command)
    _add_connection_options(describe, top=False)

    logs = commands_.add_parser(
        "logs",
        help="the worker's log (the Job's newest Pod)",
        description="Print the log of the worker Pod of a Backup or Restore (its Job's newest "
        "Pod); -f follows it until the container ends, waiting for the Job and the Pod to start "
        "if they have not yet.",
    )
    _add_target(logs, (BACKUP, RESTORE))
    logs.add_argument("-f", "--follow", action="store_true", help="stream the log as it grows")
    logs.add_argument("--tail", type=int, metavar="LINES", help="only the last LINES lines")
    logs.add_argument(
        "--all-attempts",
        action="store_true",
        help="every Pod the Job started (retries), oldest first, not only the newest",
    )
    logs.add_argument(
        "--pod-running-timeout",
        type=parse_duration,
        default=60.0,
        metavar="DURATION",
        help="with -f: how long to wait for the Job and its Pod to start (default 60s)",
    )
    logs.set_defaults(handler=commands.logs_command)
    _add_connection_options(logs, top=False)

    wait = commands_.add_parser(
        "wait",
        help="follow a Backup or Restore until it finishes (live progress bar)",
        description="Exit 0 when it is Completed, 1 when it Failed (its reason printed), 124 "
        "when --timeout passes first.",
    )
    _add_target(wait, (BACKUP, RESTORE))
    _add_wait_options(wait, flag=False)
    wait.set_defaults(handler=commands.wait)
    _add_connection_options(wait, top=False)
    return parser


_CREATE_DESCRIPTIONS = {
    "backup": "Create a Backup now with the spec of a BackupSchedule's template (like kubectl "
    "create job --from=cronjob/NAME) or of an existing Backup. The new Backup is not owned by "
    "the schedule: its retention never prunes it.",
    "restore": "Create a Restore of a Backup (spec.backupRef), or of the newest Completed Backup "
    "of a schedule (spec.scheduleRef), into the backup's own database or --target-database.",
}


def _backup_source(text: str) -> tuple[Kind, str]:
    try:
        return split_reference(text, (SCHEDULE, BACKUP))
    except UnknownKind as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse, then resolve `KIND NAME` / `KIND/NAME` and `list KIND` (argparse exits 2)."""
    parser = build_parser()
    args = parser.parse_args(list(argv))
    try:
        if hasattr(args, "target_kinds"):
            if args.name is None:
                args.target = split_reference(args.kind, args.target_kinds)
            elif "/" in args.kind:
                parser.error(f"give KIND NAME or KIND/NAME, not both: {args.kind} {args.name}")
            else:
                args.target = (resolve_kind(args.kind, args.target_kinds), args.name)
        if args.command == "list" and args.what and not commands.is_location(args.what):
            args.what_kind = resolve_kind(args.what)
        if args.command == "list" and args.all_namespaces and args.namespace:
            parser.error("-A and -n exclude each other")
    except UnknownKind as exc:
        parser.error(str(exc))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.handler(args))
    except PluginError as exc:
        return _fail(str(exc), exc.exit_code)
    except (resources.NotFound, resources.LogsUnavailable) as exc:
        return _fail(str(exc), ExitCode.NOT_FOUND)
    except resources.ApiError as exc:
        return _fail(str(exc), ExitCode.API)
    except LifeboatError as exc:  # storage listing: the worker's typed errors
        code = ExitCode.USAGE if exc.exit_code == 2 else ExitCode.STORAGE
        return _fail(f"{exc.reason}: {exc}", code)
    except KeyboardInterrupt:
        return _fail("interrupted", ExitCode.INTERRUPTED)
    except BrokenPipeError:  # `kubectl lifeboat logs … | head`
        return ExitCode.OK


def _fail(message: str, code: ExitCode) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return int(code)
