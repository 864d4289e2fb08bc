"""A Restore's or a RestoreDrill's `spec.scheduleRef`, resolved to one Backup, once."""

from __future__ import annotations

from typing import Final

from kubernetes import client

from lifeboat.api import BACKUP_PLURAL, Phase
from lifeboat.builders.backups import SCHEDULE_LABEL, schedule_label_value
from lifeboat.controller.config import OperatorConfig
from lifeboat.controller.jobs import Target, post_event, write_verdict
from lifeboat.controller.schedule_decisions import newest_completed, view_backup
from lifeboat.controller.storage import age_seconds
from lifeboat.controller.transitions import Verdict
from lifeboat.kube.objects import list_custom, patch_status

WAITING_FOR_BACKUP: Final = "WaitingForBackup"


def resolve_schedule_ref(
    api: client.ApiClient,
    target: Target,
    schedule_name: str,
    config: OperatorConfig,
    *,
    doing: str,
    remedy: str,
) -> str | None:
    """The schedule's newest Completed Backup (by slot), chosen once and recorded in
    status.resolvedBackup before anything else happens, then never chosen again (not after a
    restart, a resync, or a newer Backup completing). None, with status written, while the
    schedule has no Completed Backup (waiting up to backup_wait_seconds, then BackupNotFound
    ending in `remedy`). `doing` begins the Event: "restoring", "drilling"."""
    recorded = target.status.get("resolvedBackup")
    if recorded:
        return str(recorded)
    label = schedule_label_value(schedule_name)
    listed = list_custom(
        api, BACKUP_PLURAL, target.namespace, label_selector=f"{SCHEDULE_LABEL}={label}"
    )
    newest = newest_completed(view_backup(obj, schedule_uid="") for obj in listed)
    if newest is None:
        wait = config.backup_wait_seconds
        if age_seconds(target.obj) < wait:
            verdict = Verdict(
                Phase.PENDING,
                WAITING_FOR_BACKUP,
                f"BackupSchedule {schedule_name} has no Completed Backup yet; waiting up to "
                f"{wait:g}s for one",
            )
        else:
            verdict = Verdict(
                Phase.FAILED,
                "BackupNotFound",
                f"BackupSchedule {schedule_name} has no Completed Backup in namespace "
                f"{target.namespace} (waited {wait:g}s{remedy}",
            )
        write_verdict(api, target, verdict)
        return None
    patch_status(api, target.plural, target.namespace, target.name, {"resolvedBackup": newest.name})
    post_event(
        target.obj,
        "Normal",
        "BackupResolved",
        f"{doing} Backup {newest.name}, the newest Completed Backup of BackupSchedule "
        f"{schedule_name}",
    )
    return newest.name
