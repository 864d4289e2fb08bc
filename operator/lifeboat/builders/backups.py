"""Backups for a BackupSchedule, built as plain dicts from the schedule: a pure function.

A scheduled Backup is an ordinary Backup whose spec is the schedule's template as it is when
the slot comes (editing the template changes later Backups only). What makes it the schedule's:

- the label `lifeboat.dev/schedule=<schedule>`: how the schedule, retention and Restores with
  `scheduleRef` find it, and it stays when the schedule is deleted;
- an ownerReference to the schedule (removed by the operator when the schedule is deleted, so
  the garbage collector keeps the Backup; `--cascade=foreground` deletes them instead);
- the standard `app.kubernetes.io/{name,component,managed-by}` labels, and deliberately no
  `app.kubernetes.io/instance` and none of the schedule's own labels or annotations: GitOps
  tools track what they applied by such labels (Argo CD's default tracking label is
  `app.kubernetes.io/instance`; Flux's kustomize-controller labels what it applies), and would
  prune a Backup that carried them because it is not in Git;
- annotations that tell Argo CD and Flux to leave it alone even if it were tracked
  (`argocd.argoproj.io/sync-options: Prune=false`,
  `argocd.argoproj.io/compare-options: IgnoreExtraneous`,
  `kustomize.toolkit.fluxcd.io/prune: disabled`);
- `lifeboat.dev/slot`: the slot's time (RFC 3339, UTC), or for a Backup made on request
  (`lifeboat.dev/trigger`) the time the operator handled the request. Retention and Restores
  order the schedule's Backups by it.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Final

from lifeboat.api import API_VERSION, BACKUP_KIND, SCHEDULE_KIND, BackupSchedule
from lifeboat.builders.naming import (
    LABEL_COMPONENT,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    MANAGED_BY,
    owner_reference,
)
from lifeboat.contract import Object

SCHEDULE_LABEL: Final = "lifeboat.dev/schedule"
"""On every Backup a schedule creates: the schedule's name (see `schedule_label_value`)."""
SLOT_ANNOTATION: Final = "lifeboat.dev/slot"
"""On every Backup a schedule creates: the time of its slot, RFC 3339 in UTC."""
TRIGGER_ANNOTATION: Final = "lifeboat.dev/trigger"
"""On a schedule: set it to a new value to back up now. On the Backup it made: that value."""
GITOPS_ANNOTATIONS: Final = {
    "argocd.argoproj.io/sync-options": "Prune=false",
    "argocd.argoproj.io/compare-options": "IgnoreExtraneous",
    "kustomize.toolkit.fluxcd.io/prune": "disabled",
}
"""Keep Argo CD and Flux from pruning (or reporting as out of sync) Backups that are not in Git."""
MAX_LABEL_VALUE: Final = 63


def schedule_label_value(schedule_name: str) -> str:
    """The `lifeboat.dev/schedule` label value for a schedule: its name, or for a name longer
    than a label value may be (63), its first 56 characters and a hash of the whole name."""
    if len(schedule_name) <= MAX_LABEL_VALUE:
        return schedule_name
    digest = hashlib.sha256(schedule_name.encode()).hexdigest()[:6]
    head = re.sub(r"[^A-Za-z0-9]+$", "", schedule_name[: MAX_LABEL_VALUE - 7])
    return f"{head}-{digest}"


def rfc3339(moment: datetime) -> str:
    """2026-12-03T01:00:00Z: how Kubernetes writes times, in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_scheduled_backup(
    schedule: BackupSchedule, name: str, slot: datetime, *, trigger: str | None = None
) -> Object:
    """The Backup `name` of `schedule` for the slot at `slot` (or, with `trigger`, the one made
    on request for that value of the trigger annotation, at `slot`)."""
    meta = schedule.metadata
    schedule_name, namespace, uid = meta.name or "", meta.namespace or "", meta.uid or ""
    annotations = {**GITOPS_ANNOTATIONS, SLOT_ANNOTATION: rfc3339(slot)}
    if trigger is not None:
        annotations[TRIGGER_ANNOTATION] = trigger
    return {
        "apiVersion": API_VERSION,
        "kind": BACKUP_KIND,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                LABEL_NAME: "lifeboat",
                LABEL_COMPONENT: "backup",
                LABEL_MANAGED_BY: MANAGED_BY,
                SCHEDULE_LABEL: schedule_label_value(schedule_name),
            },
            "annotations": annotations,
            "ownerReferences": [owner_reference(API_VERSION, SCHEDULE_KIND, schedule_name, uid)],
        },
        "spec": schedule.spec.template.to_api_dict(),
    }
