"""The plugin's commands: each reads its arguments, calls `kube.resources`, prints with `render`."""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from lifeboat.api import (
    API_VERSION,
    Phase,
    RestoreSpec,
    describe_validation_error,
)
from lifeboat.cli.kubectl.describe import describe
from lifeboat.cli.kubectl.errors import (
    ExitCode,
    Interrupted,
    NotFoundError,
    UsageError,
    WaitTimeout,
)
from lifeboat.cli.kubectl.kinds import BACKUP, KINDS, RESTORE, SCHEDULE, Kind
from lifeboat.cli.kubectl.live import make_view
from lifeboat.cli.kubectl.render import (
    FINAL_PHASES,
    human_duration,
    list_table,
    load_status,
    phase_line,
    reference,
    resource_rows,
    result_line,
    status_model,
)
from lifeboat.contract import Object
from lifeboat.kube import resources
from lifeboat.kube.resources import Connection
from lifeboat.worker.listing import list_backups, print_listing
from lifeboat.worker.storage import open_storage

CREATED_FROM = "lifeboat.dev/created-from"
"""Annotation on a Backup made with `backup create --from`: `backupschedule/nightly`."""
POLL_SECONDS = 0.5
"""`logs -f`: how often to look again for a Job, a Pod or a container that has not started
(always within --pod-running-timeout)."""


def connection(args: argparse.Namespace) -> tuple[Connection, str]:
    """The client and the namespace: -n, else the kubeconfig context's, else default."""
    conn = resources.connect(args.kubeconfig, args.context)
    return conn, args.namespace or conn.namespace


def _get(conn: Connection, kind: Kind, namespace: str, name: str) -> Object:
    try:
        return resources.get_object(conn, kind.plural, namespace, name)
    except resources.NotFound:
        raise NotFoundError(f"{kind.word} {name!r} not found in namespace {namespace!r}") from None


# -- create -----------------------------------------------------------------------------------


def backup_create(args: argparse.Namespace) -> int:
    conn, namespace = connection(args)
    source_kind, source_name = args.source
    source = _get(conn, source_kind, namespace, source_name)
    raw = source.get("spec") or {}
    # A copy of what the API server already accepted: it checks it again on create.
    spec = copy.deepcopy(raw.get("template") if source_kind is SCHEDULE else raw) or {}
    body = {
        "apiVersion": API_VERSION,
        "kind": BACKUP.kind,
        "metadata": {
            "name": args.name,
            "namespace": namespace,
            "annotations": {CREATED_FROM: f"{source_kind.kind.lower()}/{source_name}"},
        },
        "spec": spec,
    }
    return _create(conn, BACKUP, namespace, body, args)


def restore_create(args: argparse.Namespace) -> int:
    conn, namespace = connection(args)
    spec: dict[str, Any] = {}
    if args.from_backup:
        source_kind, source = BACKUP, _get(conn, BACKUP, namespace, args.from_backup)
        spec["backupRef"] = {"name": args.from_backup}
        database = (source.get("spec") or {}).get("database")
    else:
        source_kind, source = SCHEDULE, _get(conn, SCHEDULE, namespace, args.from_schedule)
        spec["scheduleRef"] = {"name": args.from_schedule}
        database = ((source.get("spec") or {}).get("template") or {}).get("database")
    if args.target_database:
        if not database:
            raise UsageError(f"{reference(source_kind, source)} names no database to start from")
        spec["target"] = retarget(database, args.target_database)
    for flag, field in (
        ("keep_extra_objects", "keepExtraObjects"),
        ("dry_run", "dryRun"),
        ("no_owner", "noOwner"),
        ("no_privileges", "noPrivileges"),
    ):
        if getattr(args, flag):
            spec[field] = True
    engine = (database or {}).get("engine")
    if (args.no_owner or args.no_privileges) and engine not in (None, "postgresql"):
        raise UsageError(
            f"--no-owner and --no-privileges are postgresql options; this backup is {engine}"
        )
    _validate(RestoreSpec, spec)
    body = {
        "apiVersion": API_VERSION,
        "kind": RESTORE.kind,
        "metadata": {"name": args.name, "namespace": namespace},
        "spec": spec,
    }
    return _create(conn, RESTORE, namespace, body, args)


def retarget(database: Object, name: str) -> Object:
    """The backup's database spec pointing at another database on the same server (for sqlite:
    another file on the same claim)."""
    target = copy.deepcopy(database)
    target["path" if target.get("engine") == "sqlite" else "name"] = name
    return target


def _validate(model: type[RestoreSpec], spec: Object) -> None:
    """The API server would refuse it too; the models say which field, before any call."""
    try:
        model.model_validate(spec)
    except ValidationError as exc:
        raise UsageError(describe_validation_error(exc, ("spec",))) from None


def _create(
    conn: Connection, kind: Kind, namespace: str, body: Object, args: argparse.Namespace
) -> int:
    created = resources.create_object(conn, kind.plural, namespace, body)
    print(f"{kind.word}.lifeboat.dev/{created['metadata']['name']} created", flush=True)
    if not args.wait:
        return ExitCode.OK
    return wait_until_done(conn, kind, namespace, created["metadata"]["name"], args.timeout)


# -- wait -------------------------------------------------------------------------------------


def wait(args: argparse.Namespace) -> int:
    conn, namespace = connection(args)
    kind, name = args.target
    _get(conn, kind, namespace, name)
    return wait_until_done(conn, kind, namespace, name, args.timeout)


def wait_until_done(
    conn: Connection, kind: Kind, namespace: str, name: str, timeout: float | None
) -> int:
    """Show the object's status until it is Completed (exit 0) or Failed (exit 1), the timeout
    passes (124) or Ctrl-C (130); the result line on stdout, a failure's on stderr."""
    deadline = time.monotonic() + timeout if timeout else None
    view = make_view(kind, sys.stderr)
    last: Object | None = None
    try:
        for obj in resources.watch_object(conn, kind.plural, namespace, name, deadline):
            last = obj
            view.update(obj)
            if load_status(status_model(kind), obj).phase in FINAL_PHASES:
                break
    except KeyboardInterrupt:
        view.close()
        raise Interrupted(
            f"stopped waiting; {kind.word}/{name} keeps running "
            f"(kubectl lifeboat wait {kind.word} {name})"
        ) from None
    except resources.NotFound:
        view.close()
        raise NotFoundError(f"{kind.word}/{name} was deleted while waiting for it") from None
    view.close()
    assert last is not None  # watch_object yields the object first, or raises
    status = load_status(status_model(kind), last)
    if status.phase not in FINAL_PHASES:
        raise WaitTimeout(
            f"{kind.word}/{name} is still {phase_line(status)} after {_seconds(timeout)}; it "
            f"keeps running (kubectl lifeboat wait {kind.word} {name})"
        )
    line = result_line(kind, last)
    if status.phase is Phase.FAILED:
        print(line, file=sys.stderr, flush=True)
        return ExitCode.FAILED
    print(line, flush=True)
    return ExitCode.OK


def _seconds(timeout: float | None) -> str:
    return human_duration(timeout or 0)


# -- list -------------------------------------------------------------------------------------


def is_location(text: str) -> bool:
    """`s3://…`, `file://…` or a path: listed from storage, not from the API."""
    return "://" in text or "/" in text or text.startswith((".", "~"))


def list_command(args: argparse.Namespace) -> int:
    if args.what and is_location(args.what):
        print_listing(list_backups(open_storage(args.what)), args.output)
        return ExitCode.OK
    kinds = KINDS if not args.what else (args.what_kind,)
    conn, namespace = connection(args)
    scope = None if args.all_namespaces else namespace
    found: dict[Kind, list[Object]] = {}
    for kind in {*kinds, BACKUP} if RESTORE in kinds else kinds:
        try:
            found[kind] = resources.list_objects(conn, kind.plural, scope)
        except resources.NotFound:
            if args.what:  # asked for by name: say the kind is not installed
                raise NotFoundError(
                    f"the API server does not serve {kind.plural}.lifeboat.dev: "
                    "is the CRD installed? (kubectl apply -f crds/)"
                ) from None
            found[kind] = []  # an older installation without this kind
    now = datetime.now(UTC)
    rows = [
        row
        for kind in KINDS
        if kind in kinds
        for row in resource_rows(kind, found[kind], found.get(BACKUP, []), now)
    ]
    if args.output == "json":
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return ExitCode.OK
    if not rows:
        where = "any namespace" if scope is None else f"{scope} namespace"
        print(f"No resources found in {where}.", file=sys.stderr)
        return ExitCode.OK
    print(list_table(rows, all_namespaces=scope is None))
    return ExitCode.OK


# -- describe, logs ---------------------------------------------------------------------------


def describe_command(args: argparse.Namespace) -> int:
    conn, namespace = connection(args)
    kind, name = args.target
    obj = _get(conn, kind, namespace, name)
    try:
        events = resources.list_events(conn, namespace, obj["metadata"]["uid"])
    except resources.ApiError as exc:
        print(f"warning: Events not shown: {exc}", file=sys.stderr)
        events = []
    print(describe(kind, obj, events, datetime.now(UTC)))
    return ExitCode.OK


def logs_command(args: argparse.Namespace) -> int:
    conn, namespace = connection(args)
    kind, name = args.target
    obj = _get(conn, kind, namespace, name)
    deadline = time.monotonic() + args.pod_running_timeout
    job = _job_name(conn, kind, namespace, obj, follow=args.follow, deadline=deadline)
    pods = resources.list_job_pods(conn, namespace, job)
    if not pods and args.follow:
        _waiting(f"waiting for Job {job} to start a Pod …")
    while not pods and args.follow and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        pods = resources.list_job_pods(conn, namespace, job)
    if not pods:
        raise NotFoundError(
            f"Job {job} of {kind.word}/{name} has no Pods"
            + (" (yet)" if not args.follow else f" after {_seconds(args.pod_running_timeout)}")
            + "; when it has finished, the Job may have been deleted with its Pods "
            "(ttlSecondsAfterFinished): kubectl lifeboat describe shows the result"
        )
    chosen = pods if args.all_attempts else pods[-1:]
    out = sys.stdout.buffer
    for attempt, pod in enumerate(chosen, start=len(pods) - len(chosen) + 1):
        pod_name = pod["metadata"]["name"]
        if args.all_attempts:
            out.write(f"==> pod {pod_name} (attempt {attempt} of {len(pods)}) <==\n".encode())
            out.flush()
        follow = args.follow and pod is chosen[-1]
        for chunk in _log_chunks(conn, namespace, pod_name, follow, args.tail, deadline):
            out.write(chunk)
            out.flush()
    return ExitCode.OK


def _job_name(
    conn: Connection, kind: Kind, namespace: str, obj: Object, *, follow: bool, deadline: float
) -> str:
    """status.jobName; with -f, waits (watching the object) until the operator has created it."""
    status = load_status(status_model(kind), obj)
    if status.job_name:
        return status.job_name
    ref = reference(kind, obj)
    if follow and status.phase not in FINAL_PHASES:
        _waiting(f"waiting for the operator to create the Job of {ref} …")
        name = obj["metadata"]["name"]
        watched = resources.watch_object(conn, kind.plural, namespace, name, deadline)
        for current in watched:
            status = load_status(status_model(kind), current)
            if status.job_name or status.phase in FINAL_PHASES or time.monotonic() >= deadline:
                break
        if status.job_name:
            return status.job_name
    raise NotFoundError(f"{ref} has no Job: {phase_line(status)}")


def _log_chunks(
    conn: Connection,
    namespace: str,
    pod: str,
    follow: bool,
    tail: int | None,
    deadline: float,
) -> Iterator[bytes]:
    """The log; with `follow`, waits (until `deadline`) for a container that has not started."""
    waited = False
    while True:
        try:
            yield from resources.stream_pod_log(
                conn, namespace, pod, follow=follow, tail_lines=tail
            )
            return
        except resources.LogsUnavailable as exc:
            if not follow or time.monotonic() >= deadline:
                raise
            if not waited:
                _waiting(f"waiting for Pod {pod} to start ({exc})")
                waited = True
            time.sleep(POLL_SECONDS)


def _waiting(message: str) -> None:
    """Say once on stderr what `logs -f` waits for (stdout carries only the log)."""
    print(message, file=sys.stderr, flush=True)
