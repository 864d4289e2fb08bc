"""Errors are types: each carries the one line a person (or a status condition) needs.

`reason` is a CamelCase word for machines (status conditions, exit paths); the message is the
human sentence. Messages never contain secrets.
"""

from __future__ import annotations

from collections.abc import Sequence

from lifeboat.contract import ExitCode


class LifeboatError(Exception):
    """Base of every error the worker reports without a traceback."""

    reason = "Failed"
    exit_code: int = ExitCode.FAILED


class UsageError(LifeboatError):
    """The command line or a URL is wrong; the message names the argument and the fix."""

    reason = "InvalidArgument"
    exit_code = ExitCode.USAGE


class DatabaseError(LifeboatError):
    reason = "DatabaseError"
    exit_code = ExitCode.DATABASE


class DatabaseUnreachable(DatabaseError):
    reason = "DatabaseUnreachable"


class DatabaseRefused(DatabaseError):
    """The server answered and said no: a retry cannot fix it, a change (a password, a grant,
    a role, another server) can. The message names what to change."""

    reason = "DatabaseRefused"
    exit_code = ExitCode.REFUSED


class AuthenticationFailed(DatabaseRefused):
    reason = "AuthenticationFailed"


class InsufficientPrivilege(DatabaseRefused):
    """The login works but lacks a privilege; the message names it, the object, and the GRANT
    that would fix it."""

    reason = "InsufficientPrivilege"


class DatabaseNotFound(DatabaseRefused):
    reason = "DatabaseNotFound"


class IncompatibleServer(DatabaseRefused):
    """The target server cannot load this backup (an older major version, another product)."""

    reason = "IncompatibleServer"


class RoleMissing(DatabaseRefused):
    """The backup names roles (owners, grantees) that the target server does not have."""

    reason = "RoleMissing"


class TlsUnavailable(DatabaseRefused):
    """TLS was asked for and the server does not offer it: the worker stopped before logging in,
    so the password was never sent over the unencrypted connection."""

    reason = "TlsUnavailable"


class TlsVerificationFailed(DatabaseRefused):
    """The server's certificate did not verify against the CA given (wrong CA, expired, or a
    name that does not match the host): nothing was sent, the password included."""

    reason = "TlsVerificationFailed"


class DumpFailed(DatabaseError):
    reason = "DumpFailed"


class StorageError(LifeboatError):
    reason = "StorageError"
    exit_code = ExitCode.STORAGE


class BucketNotFound(StorageError):
    reason = "BucketNotFound"


class AccessDenied(StorageError):
    reason = "AccessDenied"


class StorageUnreachable(StorageError):
    reason = "StorageUnreachable"


class StorageTlsVerificationFailed(StorageError):
    """The https endpoint's certificate did not verify against the CA bundle (or the system's
    CAs): a private CA not given, the wrong one, or a name that does not match."""

    reason = "StorageTlsVerificationFailed"


class DiskFull(StorageError):
    reason = "DiskFull"


class ServerDiskFull(DiskFull):
    """The database server's own volume is full (not the worker's): the server refused the
    write and the restore was rolled back. A database failure for the exit code, since freeing
    space on the server (or growing its volume) is the fix and a later retry may then succeed."""

    exit_code = ExitCode.DATABASE


class BackupNotFound(StorageError):
    """No complete backup (artifact plus manifest) at the given location."""

    reason = "BackupNotFound"


class RestoreError(LifeboatError):
    reason = "RestoreFailed"
    exit_code = ExitCode.VERIFICATION


class ManifestInvalid(RestoreError):
    reason = "ManifestInvalid"


class ChecksumMismatch(RestoreError):
    """The artifact's size or SHA-256 differs from the manifest: it is corrupt or was replaced."""

    reason = "ChecksumMismatch"


class VerificationFailed(RestoreError):
    """The restored data does not match the manifest (row counts); the target was rolled back.

    `mismatches` lists the differences one per table, for status.verification."""

    reason = "VerificationFailed"

    def __init__(self, message: str, mismatches: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.mismatches = list(mismatches)


class EncryptionKeyInvalid(UsageError):
    """The encryption key given is not 32 bytes in base64 (or its file cannot be read); the
    message names where it came from (the option, the variable, the Secret and key), never its
    value."""

    reason = "EncryptionKeyInvalid"


class EncryptionKeyRequired(UsageError):
    """The backup is encrypted and no key was given."""

    reason = "EncryptionKeyRequired"


class EncryptionKeyMismatch(RestoreError):
    """The key given is not the one the backup was encrypted with (its key id differs):
    detected before the target is touched."""

    reason = "EncryptionKeyMismatch"


class BackupNotEncrypted(RestoreError):
    """A key was given but the backup is not encrypted: an encrypted backup may have been
    replaced by a plaintext one, so it is refused rather than trusted."""

    reason = "BackupNotEncrypted"


class DecryptionFailed(RestoreError):
    """An encrypted artifact failed authentication: a chunk was changed, reordered, removed or
    cut, or the header was edited. Nothing it holds reached the target unauthenticated."""

    reason = "DecryptionFailed"


class DrillCheckFailed(RestoreError):
    """A restore drill's backup restored and matched its manifest, but a check did not return
    what it should, or its query failed (the database's own error is in the message)."""

    reason = "DrillCheckFailed"


class DrillCleanupFailed(DatabaseError):
    """A restore drill could not drop its throwaway database: it is left on the server (the
    drill's retry, or the next drill of the same database, drops it)."""

    reason = "DrillCleanupFailed"


class Interrupted(LifeboatError):
    reason = "Interrupted"
    exit_code = ExitCode.INTERRUPTED
