"""A restore's notes (leftovers of an interrupted restore it removed, a database it created)
reach the Restore's status.notes in the worker's final write, bounded like the rest of status."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from lifeboat.api.crd import restore_crd
from lifeboat.api.restore import NOTE_MAX_LENGTH, NOTES_LIMIT
from lifeboat.worker import status_writer
from lifeboat.worker.manifest import ArtifactManifest, Manifest, TableManifest
from lifeboat.worker.status_writer import StatusWriter, bounded_notes, parse_status_target

SHA = "cd" * 32
LEFTOVER = (
    "removed the staged copy an interrupted restore left: "
    "/var/lib/lifeboat/data/.shop.db.lifeboat-restore-k2j4x"
)


def manifest() -> Manifest:
    when = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)
    return Manifest(
        lifeboat_version="test",
        engine="sqlite",
        dump_format="sqlite-file",
        server_version="3.45.1",
        database="shop.db",
        started_at=when,
        completed_at=when,
        artifact=ArtifactManifest(
            key="shop.db.zst", compression="zstd", size=10, raw_size=20, sha256=SHA
        ),
        tables=[TableManifest(name="orders", rows=300)],
    )


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str, dict[str, Any]]]:
    """Every status write a StatusWriter makes, instead of sending it to an API server."""
    sent: list[tuple[str, str, str, dict[str, Any]]] = []

    def patch_status(
        api: Any, plural: str, namespace: str, name: str, body: dict[str, Any], **_: Any
    ) -> dict[str, Any]:
        sent.append((plural, namespace, name, body))
        return {}

    monkeypatch.setattr(status_writer, "patch_status", patch_status)
    monkeypatch.setattr(status_writer, "check_status_target", parse_status_target)
    return sent


def restore_writer() -> StatusWriter:
    return StatusWriter("restores/shop/shop-restore", api=object())


def test_a_restores_notes_arrive_with_its_verification_in_one_write(
    writes: list[tuple[str, str, str, dict[str, Any]]],
) -> None:
    restore_writer().record_restore(
        manifest(),
        "file:///backups/nightly/shop.db.zst",
        checksum_verified=True,
        row_counts={"orders": 300},
        notes=(LEFTOVER,),
    )

    assert writes == [
        (
            "restores",
            "shop",
            "shop-restore",
            {
                "verification": {
                    "checksumVerified": True,
                    "rowCountsMatched": True,
                    "tablesVerified": 1,
                    "rowsVerified": 300,
                    "artifactUri": "file:///backups/nightly/shop.db.zst",
                    "sha256": SHA,
                },
                "notes": [LEFTOVER],
            },
        )
    ]


def test_a_restore_without_notes_writes_no_notes_field(
    writes: list[tuple[str, str, str, dict[str, Any]]],
) -> None:
    restore_writer().record_restore(
        manifest(), "file:///b/shop.db.zst", checksum_verified=True, row_counts={"orders": 300}
    )

    [(_, _, _, body)] = writes
    assert set(body) == {"verification"}


def test_notes_are_bounded_like_the_schema_says() -> None:
    long = "x" * (NOTE_MAX_LENGTH + 50)
    assert bounded_notes([long]) == ["x" * (NOTE_MAX_LENGTH - 1) + "…"]
    assert bounded_notes([f"note {i}" for i in range(NOTES_LIMIT)]) == [
        f"note {i}" for i in range(NOTES_LIMIT)
    ]
    many = bounded_notes([f"note {i}" for i in range(25)])
    assert len(many) == NOTES_LIMIT
    assert many[:-1] == [f"note {i}" for i in range(NOTES_LIMIT - 1)]
    assert many[-1] == "… and 16 more notes in the Job's log"
    assert bounded_notes([]) == []


def test_the_crd_keeps_status_notes_and_bounds_them() -> None:
    status = restore_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
        "status"
    ]
    notes = status["properties"]["notes"]
    assert notes["type"] == "array"
    assert notes["maxItems"] == NOTES_LIMIT
    assert notes["items"] == {"type": "string", "maxLength": NOTE_MAX_LENGTH}
    assert "interrupted restore" in notes["description"]
