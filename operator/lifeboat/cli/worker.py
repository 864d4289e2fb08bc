"""`lifeboat backup`, `restore`, `delete`, `check`, `show`, `list` and `key-id`: the worker's
commands."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from lifeboat.cli.common import add_progress_options, deadline, make_progress, status_writer
from lifeboat.contract import (
    DEFAULT_STORAGE_TIMEOUT,
    ENV_ENCRYPTION_KEY,
    ENV_ENCRYPTION_KEY_FILE,
    ENV_ENCRYPTION_KEY_SOURCE,
    ENV_S3_CA_BUNDLE,
    ENV_STORAGE_TIMEOUT,
    format_bytes,
)
from lifeboat.worker.compression import Compression
from lifeboat.worker.database_url import parse_database_url
from lifeboat.worker.encryption import EncryptionKey, load_key
from lifeboat.worker.engines import open_engine
from lifeboat.worker.engines.base import RestoreOptions
from lifeboat.worker.errors import EncryptionKeyRequired, VerificationFailed
from lifeboat.worker.listing import list_backups, print_listing
from lifeboat.worker.manifest import MANIFEST_NAME
from lifeboat.worker.pipeline import (
    BackupOptions,
    RestoreReport,
    delete_backup,
    load_manifest,
    run_backup,
    run_restore,
)
from lifeboat.worker.storage import open_storage
from lifeboat.worker.storage.base import WRITE_PROBE


def register(commands: Any) -> None:
    backup = commands.add_parser(
        "backup",
        help="dump a database into a backup location",
        description="Stream DATABASE_URL's dump, compressed and checksummed, to BACKUP_URL. "
        "Exits 0 only when the artifact and its manifest are stored and checked. "
        "The password comes from LIFEBOAT_DB_PASSWORD (or LIFEBOAT_DB_PASSWORD_FILE, "
        "PGPASSWORD, MYSQL_PWD), never from the command line.",
    )
    backup.add_argument("database_url", metavar="DATABASE_URL")
    backup.add_argument("backup_url", metavar="BACKUP_URL", help="s3://bucket/prefix/ or a dir")
    backup.add_argument(
        "--compression",
        default="zstd",
        type=Compression.parse,
        help="zstd (default), gzip or none",
    )
    backup.add_argument("--level", type=int, help="compression level (zstd 1-22, gzip 1-9)")
    backup.add_argument(
        "--overwrite", action="store_true", help="replace a backup already at BACKUP_URL"
    )
    _add_key_option(
        backup,
        "encrypt the backup (AES-256-GCM, after compression) with the key in PATH: 32 random "
        "bytes in base64, made with `head -c 32 /dev/urandom | base64`; or set "
        f"{ENV_ENCRYPTION_KEY} (the key) or {ENV_ENCRYPTION_KEY_FILE}. Without a key the "
        "backup is not encrypted",
    )
    add_progress_options(backup)
    _add_storage_timeout_option(backup)
    backup.set_defaults(handler=_backup)

    restore = commands.add_parser(
        "restore",
        help="restore a backup into a database, verified and atomic",
        description="Check the artifact's SHA-256 against its manifest, load it into "
        "DATABASE_URL atomically, prove row counts, or leave the database as it was.",
    )
    restore.add_argument("backup_url", metavar="BACKUP_URL")
    restore.add_argument("database_url", metavar="DATABASE_URL")
    restore.add_argument(
        "--keep-extra-objects",
        action="store_true",
        help="keep tables/views/functions that are not in the backup (default: drop them)",
    )
    restore.add_argument(
        "--no-verify-first",
        dest="verify_first",
        action="store_false",
        help="skip the separate checksum pass (the checksum is still checked before commit)",
    )
    restore.add_argument(
        "--no-owner",
        action="store_true",
        help="PostgreSQL: do not restore object owners; everything restored belongs to the "
        "restoring role, and the backup's roles need not exist on the target",
    )
    restore.add_argument(
        "--no-privileges",
        action="store_true",
        help="PostgreSQL: do not restore GRANTs and REVOKEs",
    )
    restore.add_argument(
        "--dry-run",
        action="store_true",
        help="check everything (target login, privileges, versions, roles, the artifact's "
        "checksum) and print what the restore would do, changing nothing",
    )
    _add_key_option(
        restore,
        "the key of an encrypted backup (or set "
        f"{ENV_ENCRYPTION_KEY} or {ENV_ENCRYPTION_KEY_FILE}); a key that is not the backup's "
        "(by its key id) is refused before the target is touched, and so is a key for a backup "
        "that is not encrypted",
    )
    add_progress_options(restore)
    _add_storage_timeout_option(restore)
    restore.set_defaults(handler=_restore)

    delete = commands.add_parser(
        "delete",
        help="delete a backup (manifest first, then the artifact)",
        description="Used by the operator for deletionPolicy: Delete; safe to run twice.",
    )
    delete.add_argument("backup_url", metavar="BACKUP_URL")
    delete.set_defaults(handler=_delete)

    check = commands.add_parser(
        "check",
        help="check that a backup location is reachable with the credentials at hand",
        description="Reach BACKUP_URL and fail with the reason if it cannot be used "
        "(BucketNotFound, AccessDenied, StorageUnreachable): HeadBucket for S3, the directory's "
        "access rights for a volume. Reads only, unless --writable. The operator runs it in a "
        "short Job to check each BackupStore.",
    )
    check.add_argument("backup_url", metavar="BACKUP_URL")
    check.add_argument(
        "--writable",
        action="store_true",
        help=f"also prove that writes are accepted: write and remove a small probe object "
        f"({WRITE_PROBE}) at BACKUP_URL, as every backup does before it starts",
    )
    check.set_defaults(handler=_check)

    show = commands.add_parser("show", help="print the manifest of a backup")
    show.add_argument("backup_url", metavar="BACKUP_URL")
    show.set_defaults(handler=_show)

    listing = commands.add_parser(
        "list",
        help="find the backups under a location by their manifests",
        description="List every backup below LOCATION (s3://bucket/prefix/, file:///dir or a "
        "directory): engine, database, when it was taken, size, tables, rows and its location, "
        "newest first. What is not a complete backup (no manifest.json) is not listed. For a "
        "restore into a new cluster: a location listed here is a Restore's spec.source.",
    )
    listing.add_argument("location", metavar="LOCATION")
    listing.add_argument(
        "--output", choices=["text", "json"], default="text", help="a table, or JSON for scripts"
    )
    listing.set_defaults(handler=_list)

    key_id = commands.add_parser(
        "key-id",
        help="print the key id of an encryption key (its fingerprint, not the key)",
        description="Print the key id of the key in --encryption-key-file, "
        f"${ENV_ENCRYPTION_KEY_FILE} or ${ENV_ENCRYPTION_KEY}: the id a manifest records "
        "(lifeboat show) and a Backup's status.artifact.encryption.keyId shows, to find which "
        "key decrypts a backup.",
    )
    _add_key_option(key_id, "the key file (base64 of 32 bytes)")
    key_id.set_defaults(handler=_key_id)


def _add_storage_timeout_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage-timeout",
        type=float,
        metavar="SECONDS",
        help="S3: how long to keep retrying, with backoff, when the server stops answering "
        f"mid-way (default: ${ENV_STORAGE_TIMEOUT}, else {DEFAULT_STORAGE_TIMEOUT:g}); past it "
        "the command fails with StorageUnreachable",
    )
    parser.add_argument(
        "--storage-ca-bundle",
        metavar="PATH",
        help="S3 over https with a private CA: a PEM file of the CA certificates to trust for "
        f"the endpoint (default: ${ENV_S3_CA_BUNDLE}, else the system's CAs)",
    )


def _add_key_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--encryption-key-file", metavar="PATH", help=help_text)


def encryption_key(args: argparse.Namespace) -> EncryptionKey | None:
    """The key from --encryption-key-file or the environment. The variables holding it are
    removed from this process's environment once read, so the dump and restore tools it starts
    never inherit the key."""
    key = load_key(args.encryption_key_file, os.environ)
    for name in (ENV_ENCRYPTION_KEY, ENV_ENCRYPTION_KEY_FILE, ENV_ENCRYPTION_KEY_SOURCE):
        os.environ.pop(name, None)
    return key


def _backup(args: argparse.Namespace) -> int:
    key = encryption_key(args)
    database = parse_database_url(args.database_url)
    storage = open_storage(
        args.backup_url,
        storage_timeout=args.storage_timeout,
        ca_bundle=args.storage_ca_bundle,
    )
    engine = open_engine(database)
    writer = status_writer(args)
    progress = make_progress(args, "backup", f"backup {database.redacted()}", writer)
    notes: list[str] = []
    options = BackupOptions(
        compression=args.compression,
        level=args.level,
        overwrite=args.overwrite,
        encryption_key=key,
        notes=notes,
    )
    try:
        with deadline(args.timeout):
            manifest = run_backup(engine, storage, progress, options)
    finally:
        progress.close()
        for note in notes:
            print(f"lifeboat: note: {note}", file=sys.stderr)
    if writer is not None:
        writer.record_backup(
            manifest, storage.uri(manifest.artifact.key), storage.uri(MANIFEST_NAME)
        )
    rows = sum(t.rows for t in manifest.tables)
    summary: dict[str, object] = {
        "result": "backup complete",
        "artifact": storage.uri(manifest.artifact.key),
        "size": manifest.artifact.size,
        "sha256": manifest.artifact.sha256,
        "tables": len(manifest.tables),
        "rows": rows,
    }
    if notes:
        summary["notes"] = notes
    encrypted = manifest.artifact.encryption
    if encrypted is not None:
        summary["encryption"] = {"algorithm": encrypted.algorithm, "keyId": encrypted.key_id}
    at_rest = manifest.artifact.server_side_encryption
    if at_rest is not None:
        summary["serverSideEncryption"] = {"type": at_rest.type, "kmsKeyId": at_rest.kms_key_id}
    _print_summary(
        args,
        summary,
        human=(
            f"backup complete: {summary['artifact']} ({format_bytes(manifest.artifact.size)}, "
            f"{len(manifest.tables)} tables, {rows} rows, sha256 {manifest.artifact.sha256[:12]}…"
            + (f", encrypted with key id {encrypted.key_id}" if encrypted is not None else "")
            + ")"
        ),
    )
    return 0


def _restore(args: argparse.Namespace) -> int:
    key = encryption_key(args)
    database = parse_database_url(args.database_url)
    storage = open_storage(
        args.backup_url,
        storage_timeout=args.storage_timeout,
        ca_bundle=args.storage_ca_bundle,
    )
    engine = open_engine(database)
    writer = status_writer(args)
    progress = make_progress(args, "restore", f"restore {database.redacted()}", writer)
    options = RestoreOptions(
        keep_extra_objects=args.keep_extra_objects,
        no_owner=args.no_owner,
        no_privileges=args.no_privileges,
    )
    try:
        with deadline(args.timeout):
            report = run_restore(
                storage,
                engine,
                progress,
                options,
                verify_first=args.verify_first,
                dry_run=args.dry_run,
                encryption_key=key,
            )
    except VerificationFailed as exc:
        if writer is not None and exc.mismatches:
            writer.record_failed_verification(exc.mismatches)
        raise
    finally:
        progress.close()
    if report.dry_run:
        if writer is not None:
            writer.record_plan(report, storage.uri(report.manifest.artifact.key))
        _print_plan(args, report, storage.uri(report.manifest.artifact.key))
        return 0
    if writer is not None:
        writer.record_restore(
            report.manifest,
            storage.uri(report.manifest.artifact.key),
            checksum_verified=report.checksum_verified,
            row_counts=report.row_counts,
            notes=report.notes,
        )
    summary = {
        "result": "restore complete",
        "checksumVerified": report.checksum_verified,
        "rowCountsMatched": True,  # a mismatch fails the restore before this point
        "tables": len(report.row_counts),
        "rows": report.rows_verified,
        "sha256": report.manifest.artifact.sha256,
    }
    for note in report.notes:
        print(f"lifeboat: note: {note}", file=sys.stderr)
    if report.notes:
        summary["notes"] = list(report.notes)
    _print_summary(
        args,
        summary,
        human=(
            f"restore complete: {database.redacted()} now holds the backup of "
            f"{report.manifest.completed_at:%Y-%m-%d %H:%M:%S} UTC; checksum verified, "
            f"{len(report.row_counts)} tables / {report.rows_verified} rows match the manifest"
        ),
    )
    return 0


def plan_summary(report: RestoreReport, artifact_uri: str) -> dict[str, Any]:
    """The dry run's plan as JSON (`--output json`): what would change, what was checked."""
    plan = report.plan
    return {
        "result": "dry run: nothing was changed",
        "target": plan.database,
        "serverVersion": plan.server_version,
        "targetExists": plan.database_exists,
        "artifact": artifact_uri,
        "bytesToDownload": report.manifest.artifact.size,
        "sha256": report.manifest.artifact.sha256,
        "checksumVerified": report.checksum_verified,
        "backupTakenAt": report.manifest.completed_at.isoformat(),
        "tables": [{"name": t.name, "rows": t.rows} for t in report.manifest.tables],
        "rows": report.rows_verified,
        "replaced": plan.replaced,
        "dropped": plan.dropped,
        "kept": plan.kept,
        "checks": [{"name": c.name, "detail": c.detail} for c in plan.checks],
        "notes": plan.notes,
    }


def _print_plan(args: argparse.Namespace, report: RestoreReport, artifact_uri: str) -> None:
    summary = plan_summary(report, artifact_uri)
    if args.output == "json":
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    plan = report.plan
    lines = [
        f"dry run: nothing was changed in {plan.database}",
        f"backup of {report.manifest.completed_at:%Y-%m-%d %H:%M:%S} UTC from "
        f"{report.manifest.database} ({report.manifest.server_version})",
        f"would download {format_bytes(report.manifest.artifact.size)} from {artifact_uri}",
        f"would load {len(report.manifest.tables)} tables, {report.rows_verified} rows"
        + ("" if plan.database_exists else f", into a new database {plan.database}"),
    ]
    for title, names in (
        ("would replace", plan.replaced),
        ("would drop (not in the backup)", plan.dropped),
        ("would keep (not in the backup)", plan.kept),
    ):
        if names:
            lines.append(f"{title}: {len(names)}")
            lines += [f"  - {name}" for name in names]
    lines.append("checks passed:")
    lines += [f"  ✓ {check.name}: {check.detail}" for check in plan.checks]
    lines += [f"note: {note}" for note in plan.notes]
    print("\n".join(lines))


def _delete(args: argparse.Namespace) -> int:
    storage = open_storage(args.backup_url)
    removed = delete_backup(storage)
    print(f"deleted {len(removed)} object(s) at {storage.uri()}: {', '.join(removed) or 'none'}")
    return 0


def _list(args: argparse.Namespace) -> int:
    print_listing(list_backups(open_storage(args.location)), args.output)
    return 0


def _check(args: argparse.Namespace) -> int:
    storage = open_storage(args.backup_url)
    storage.check()
    if args.writable:
        storage.check_writable()
    print(f"reachable{' and writable' if args.writable else ''}: {storage.uri()}")
    return 0


def _key_id(args: argparse.Namespace) -> int:
    key = encryption_key(args)
    if key is None:
        raise EncryptionKeyRequired(
            f"no key given: pass --encryption-key-file PATH or set {ENV_ENCRYPTION_KEY}"
        )
    print(key.key_id)
    return 0


def _show(args: argparse.Namespace) -> int:
    manifest = load_manifest(open_storage(args.backup_url))
    print(manifest.model_dump_json(indent=2))
    return 0


def _print_summary(args: argparse.Namespace, summary: dict[str, object], human: str) -> None:
    if args.output == "json":
        json.dump(summary, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(human)
