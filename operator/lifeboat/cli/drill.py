"""`lifeboat drill`: prove a backup restores, in a throwaway database dropped afterwards."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pydantic import TypeAdapter, ValidationError

from lifeboat.api import DrillCheck, DrillReport
from lifeboat.cli.common import add_progress_options, deadline, make_progress, status_writer
from lifeboat.cli.worker import encryption_key
from lifeboat.contract import DRILL_MARKER, ENV_ENCRYPTION_KEY
from lifeboat.worker.database_url import parse_database_url
from lifeboat.worker.drill import DrillRequest, run_drill, store_report
from lifeboat.worker.engines.base import RestoreOptions
from lifeboat.worker.engines.throwaway import BACKUP_TIME_PLACEHOLDER, CheckSpec
from lifeboat.worker.errors import LifeboatError
from lifeboat.worker.storage import open_storage

_CHECKS = TypeAdapter(list[DrillCheck])


def register(commands: Any) -> None:
    drill = commands.add_parser(
        "drill",
        help="prove a backup restores: restore it into a throwaway database, check, drop it",
        description="Restore BACKUP_URL into the throwaway database DATABASE_URL names (it "
        f"must be <database>{DRILL_MARKER}<8 hex digits> and not exist; the source database "
        "is never named), with the same checksum and row-count proof as a restore; run the "
        "--checks; drop it again, always. Throwaway databases of earlier drills of the same "
        "database that nobody holds any more (a killed worker's) are dropped first. The report "
        "(duration, tables, rows, checks) is stored next to the backup as drills/<time>-<id>"
        ".json. Exits 0 only when the drill passed.",
    )
    drill.add_argument("backup_url", metavar="BACKUP_URL")
    drill.add_argument(
        "database_url",
        metavar="DATABASE_URL",
        help=f"the throwaway database, e.g. postgresql://drill@db:5432/shop{DRILL_MARKER}1a2b3c4d",
    )
    drill.add_argument(
        "--checks",
        type=_parse_checks,
        default=[],
        metavar="JSON",
        help='[{"name": "fresh-orders", "query": "SELECT ...", "expect": "true"}, ...]: each '
        "query must return one value equal to expect (as text); "
        f"{BACKUP_TIME_PLACEHOLDER} is the backup's snapshot time, an SQL literal in UTC",
    )
    drill.add_argument(
        "--no-owner", action="store_true", help="PostgreSQL: do not restore object owners"
    )
    drill.add_argument(
        "--no-privileges", action="store_true", help="PostgreSQL: do not restore GRANTs"
    )
    drill.add_argument(
        "--no-verify-first",
        dest="verify_first",
        action="store_false",
        help="skip the separate checksum pass (the checksum is still checked while restoring)",
    )
    drill.add_argument(
        "--requested-by", metavar="TEXT", help="who asked for the drill, for the report"
    )
    drill.add_argument(
        "--encryption-key-file",
        metavar="PATH",
        help=f"the key of an encrypted backup (or set {ENV_ENCRYPTION_KEY})",
    )
    add_progress_options(drill)
    drill.set_defaults(handler=_drill)


def _parse_checks(text: str) -> list[CheckSpec]:
    try:
        checks = _CHECKS.validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise argparse.ArgumentTypeError(f"{where}: {first['msg']}") from None
    return [CheckSpec(c.name, c.query, c.expect) for c in checks]


def _drill(args: argparse.Namespace) -> int:
    key = encryption_key(args)
    url = parse_database_url(args.database_url)
    storage = open_storage(args.backup_url)
    writer = status_writer(args)
    progress = make_progress(args, "drill", f"drill {url.redacted()}", writer)
    request = DrillRequest(
        checks=args.checks,
        restore=RestoreOptions(no_owner=args.no_owner, no_privileges=args.no_privileges),
        verify_first=args.verify_first,
        requested_by=args.requested_by,
        encryption_key=key,
    )
    try:
        with deadline(args.timeout):
            outcome = run_drill(storage, url, progress, request)
    finally:
        progress.close()
    report, failure = outcome.report, outcome.error
    try:
        report = store_report(storage, report)
    except LifeboatError as exc:
        if failure is None:
            failure = exc
        report = report.model_copy(
            update={"notes": [*(report.notes or []), f"the report could not be stored: {exc}"]}
        )
    if writer is not None:
        writer.record_drill(report)
    _print(args, report)
    if failure is not None:
        raise failure
    return 0


def _print(args: argparse.Namespace, report: DrillReport) -> None:
    if args.output == "json":
        json.dump(report.to_api_dict(), sys.stdout)
        sys.stdout.write("\n")
        return
    verdict = "drill passed" if report.passed else f"drill failed ({report.reason})"
    lines = [f"{verdict}: {report.message}"]
    for check in report.checks or ():
        mark = "✓" if check.passed else "✗"
        lines.append(f"  {mark} {check.name}: {check.actual or check.message or ''}")
    for removed in report.leftovers_removed or ():
        lines.append(f"  removed the leftover {removed}")
    if report.report_uri:
        lines.append(f"report: {report.report_uri}")
    print("\n".join(lines))
