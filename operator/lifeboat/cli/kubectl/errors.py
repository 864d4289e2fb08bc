"""How `kubectl lifeboat` ends: one exit code per kind of outcome, documented for scripts."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    """Done; with --wait (or `wait`), the Backup or Restore is Completed."""
    FAILED = 1
    """The Backup or Restore ended Failed; its reason and message are printed."""
    USAGE = 2
    """Bad arguments (an unknown kind, a bad duration, a spec the models reject)."""
    NOT_FOUND = 3
    """The named object (or the --from source, or a Job's Pod) does not exist."""
    STORAGE = 4
    """A bucket or directory could not be listed or read (`list s3://...`)."""
    API = 5
    """The Kubernetes API refused (Forbidden, AlreadyExists, Invalid) or could not be reached,
    or the kubeconfig is unusable."""
    TIMEOUT = 124
    """--timeout passed before the object finished; it keeps running."""
    INTERRUPTED = 130
    """Ctrl-C while waiting; the object keeps running."""


class PluginError(Exception):
    """A failure with the message to print and the exit code to end with."""

    exit_code: ExitCode = ExitCode.API


class UsageError(PluginError):
    exit_code = ExitCode.USAGE


class NotFoundError(PluginError):
    exit_code = ExitCode.NOT_FOUND


class WaitTimeout(PluginError):
    exit_code = ExitCode.TIMEOUT


class Interrupted(PluginError):
    exit_code = ExitCode.INTERRUPTED
