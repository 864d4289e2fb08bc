"""Deterministic names and labels for everything the operator creates.

Children are named from their parent's name and uid, never with generateName: creating the same
child twice (after a restart, a retry, a replayed watch event) hits the same name, gets 409, and
adopts the existing object. That is what makes "exactly one Job per request" true.
"""

from __future__ import annotations

import hashlib

MAX_NAME = 63
MANAGED_BY = "lifeboat-operator"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_OWNER_KIND = "lifeboat.dev/owner-kind"
LABEL_OWNER_NAME = "lifeboat.dev/owner-name"


def child_name(parent_name: str, parent_uid: str, role: str) -> str:
    """`<parent>-<role>-<hash>`, at most 63 characters, a valid DNS label.

    The hash covers the uid and the role, so a recreated parent with the same name (a new uid)
    gets a new child rather than adopting the previous one's Job.
    """
    digest = hashlib.sha256(f"{parent_uid}/{role}".encode()).hexdigest()[:8]
    suffix = f"-{role}-{digest}"
    head = parent_name[: MAX_NAME - len(suffix)].rstrip("-.")
    return f"{head}{suffix}"


def child_labels(owner_kind: str, owner_name: str, component: str) -> dict[str, str]:
    """The standard app.kubernetes.io labels, plus the owner for label-selector lookups."""
    instance = owner_name[:MAX_NAME].rstrip("-._")
    return {
        LABEL_NAME: "lifeboat",
        LABEL_INSTANCE: instance,
        LABEL_COMPONENT: component,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_OWNER_KIND: owner_kind.lower(),
        LABEL_OWNER_NAME: instance,
    }


def owner_reference(api_version: str, kind: str, name: str, uid: str) -> dict[str, object]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


MAX_PATH_COMPONENT = 255
"""The longest file name most filesystems take (NAME_MAX), on a volume and in MinIO alike."""


def backup_location_path(namespace: str, name: str, uid: str) -> str:
    """The directory of one Backup inside its storage prefix: unique per object, readable.

    Object names go up to 253 characters, a directory name to 255: the longest names are cut
    (the uid keeps the directory unique), so a Backup of any valid name can be written."""
    suffix = f"-{uid[:8]}"
    return f"{namespace}/{name[: MAX_PATH_COMPONENT - len(suffix)]}{suffix}/"
