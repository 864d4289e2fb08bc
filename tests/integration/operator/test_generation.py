"""observedGeneration follows every spec edit, also on finished objects, and nothing re-runs.

The one mutable spec field, a Backup's deletionPolicy, may be edited after the Backup finished
(docs/operator.md). kstatus (Flux, Argo CD, `kubectl wait`) reports an object in progress while
`status.observedGeneration`, or a condition's, is behind `metadata.generation`.
"""

from __future__ import annotations

from typing import Any

from tests.integration.operator.conftest import GROUP, VERSION, Cluster, OperatorControl, SqliteShop


def set_deletion_policy(cluster: Cluster, name: str, policy: str) -> int:
    patched = cluster.custom.patch_namespaced_custom_object(
        GROUP, VERSION, cluster.namespace, "backups", name, {"spec": {"deletionPolicy": policy}}
    )
    return int(patched["metadata"]["generation"])


def observes(cluster: Cluster, name: str, generation: int) -> dict[str, Any]:
    """The status once it says `generation` at the top and in every condition, else {}."""
    status = cluster.status("backups", name)
    conditions = status.get("conditions") or []
    if status.get("observedGeneration") != generation or not conditions:
        return {}
    if any(c.get("observedGeneration") != generation for c in conditions):
        return {}
    return status


def without_generations(status: dict[str, Any]) -> dict[str, Any]:
    conditions = [
        {k: v for k, v in c.items() if k != "observedGeneration"} for c in status["conditions"]
    ]
    rest = {k: v for k, v in status.items() if k not in ("observedGeneration", "progress")}
    return {**rest, "conditions": conditions}


def test_editing_the_deletion_policy_of_a_completed_backup_is_observed_without_a_rerun(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    cluster.create("backups", "edited", sqlite_shop.spec())
    before = cluster.wait_phase("backups", "edited", "Completed", "Failed")
    assert before["phase"] == "Completed", before
    assert before["observedGeneration"] == 1

    generation = set_deletion_policy(cluster, "edited", "Delete")
    assert generation == 2
    after = cluster.wait_for(lambda: observes(cluster, "edited", generation), timeout=10)

    assert without_generations(after) == without_generations(before)  # nothing else changed
    [job] = cluster.jobs()
    assert job["status"]["succeeded"] == 1
    assert cluster.runner.starts(after["jobName"], cluster.namespace) == 1


def test_a_failed_backup_observes_edits_too_and_an_operator_restart_catches_up(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    spec = sqlite_shop.spec()
    spec["database"]["path"] = "missing.db"
    cluster.create("backups", "broken", spec)
    failed = cluster.wait_phase("backups", "broken", "Completed", "Failed")
    assert failed["phase"] == "Failed", failed

    generation = set_deletion_policy(cluster, "broken", "Delete")
    cluster.wait_for(lambda: observes(cluster, "broken", generation), timeout=10)

    lifeboat_operator.stop()  # an edit nobody watches ...
    generation = set_deletion_policy(cluster, "broken", "Retain")
    assert generation == 3
    lifeboat_operator.start()  # ... is seen when the operator comes back
    after = cluster.wait_for(lambda: observes(cluster, "broken", generation), timeout=10)
    assert without_generations(after) == without_generations(failed)
