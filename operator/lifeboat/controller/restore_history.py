"""A Backup's restore history (status.restores), and the rule it enforces, as pure functions.

A Restore kept in Git is applied again whenever a GitOps tool re-creates it (after a prune, a
namespace re-creation, a new cluster): a new object with the same name and a new uid. Without a
memory outside the Restore itself, it would silently restore the Backup again, over whatever was
written since. The Backup remembers instead: every Restore that read it is recorded when it
ends, and a Restore whose name already restored that Backup successfully is refused
(`AlreadyRestored`) unless the user asks for it explicitly: a new name, or the annotation
`lifeboat.dev/restore-again` with a value that name has not restored with before. Dry runs
change nothing, so they are never refused and never count.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from lifeboat.api import Phase
from lifeboat.api.backup import RESTORE_HISTORY_LIMIT
from lifeboat.api.restore import RESTORE_AGAIN_ANNOTATION
from lifeboat.contract import Object
from lifeboat.controller.schedule_decisions import trigger_record
from lifeboat.controller.transitions import Verdict

ALREADY_RESTORED: Final = "AlreadyRestored"


def restore_again_value(annotations: dict[str, str] | None) -> str | None:
    """The Restore's restore-again annotation as recorded (long values by their hash); None
    when it has none (or an empty one)."""
    value = (annotations or {}).get(RESTORE_AGAIN_ANNOTATION, "")
    return trigger_record(value) if value.strip() else None


def _counts(entry: Object) -> bool:
    """A successful, real restore: what makes a repeat of the same name need a user's act."""
    return entry.get("result") == Phase.COMPLETED.value and not entry.get("dryRun")


def record_restore(
    history: Sequence[Object], entry: Object, limit: int = RESTORE_HISTORY_LIMIT
) -> list[Object]:
    """The history with `entry` (replacing an entry of the same uid: recording twice is
    recording once), oldest first, at most `limit` long. What goes first when it is full: dry
    runs and failures, then successful restores of a name that has a newer one, then the
    oldest, so the entries the repeat rule needs stay the longest."""
    kept = [e for e in history if e.get("uid") != entry.get("uid")] + [entry]

    def superseded(index: int) -> bool:
        name = kept[index].get("name")
        return any(_counts(e) and e.get("name") == name for e in kept[index + 1 :])

    while len(kept) > limit:
        spare = next((i for i, e in enumerate(kept) if not _counts(e)), None)
        if spare is None:
            spare = next((i for i in range(len(kept)) if superseded(i)), 0)
        del kept[spare]
    return kept


def repeat_refusal(
    history: Iterable[tuple[str, Object]],
    *,
    name: str,
    uid: str,
    again: str | None,
    dry_run: bool,
) -> Verdict | None:
    """Failed/AlreadyRestored when this Restore's name already restored (successfully, for
    real) one of the Backups whose history is given as (backup name, entry) pairs, and its
    restore-again value is missing or was used by such a restore; None when it may run."""
    if dry_run:
        return None
    done = [(backup, e) for backup, e in history if e.get("name") == name and _counts(e)]
    done = [(backup, e) for backup, e in done if e.get("uid") != uid]
    if not done:
        return None
    used = {e.get("restoreAgain") for _, e in done if e.get("restoreAgain")}
    if again is not None and again not in used:
        return None
    backup, last = max(done, key=lambda pair: str(pair[1].get("time", "")))
    proof = []
    if last.get("tablesVerified") is not None:
        proof.append(
            f"{last['tablesVerified']} tables / {last.get('rowsVerified', 0)} rows verified"
        )
    ran = f" ({'; '.join(proof)})" if proof else ""
    if again is None:
        how = (
            f'set the annotation {RESTORE_AGAIN_ANNOTATION}: "<a new value>" on it (for example '
            "the date) and create it again"
        )
    else:
        how = (
            f"{RESTORE_AGAIN_ANNOTATION}={again!r} was used by that restore already: set a new "
            "value and create it again"
        )
    return Verdict(
        Phase.FAILED,
        ALREADY_RESTORED,
        f"Restore {name} already restored Backup {backup} at {last.get('time')}{ran}; this is "
        f"a new object of the same name (uid {uid}), for example re-created by a GitOps tool, "
        f"and a repeat is never silent. To restore again on purpose, {how}, or create a Restore "
        "with a new name. The Backup's status.restores lists the restores so far.",
    )
