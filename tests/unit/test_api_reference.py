"""docs/api.md is the API reference generated from the CRDs, and kept fresh: it must equal what the
models generate now, and name every field with the description `kubectl explain` shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lifeboat.api.crd import crds
from lifeboat.api.reference import render_reference
from lifeboat.cli import main

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "api.md"


def walk(schema: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    found = [(path, schema)]
    node = schema.get("items") if schema.get("type") == "array" else schema
    suffix = "[]" if schema.get("type") == "array" else ""
    for name, child in ((node or {}).get("properties") or {}).items():
        found += walk(child, f"{path}{suffix}.{name}")
    return found


def test_the_committed_reference_is_what_the_models_generate() -> None:
    assert DOC.read_text(encoding="utf-8") == render_reference(), (
        "docs/api.md is stale: run `make crds` (lifeboat crds --output crds --docs docs/api.md)"
    )


def test_every_field_of_every_kind_is_there_with_its_description() -> None:
    text = render_reference()
    count = 0
    for crd in crds().values():
        (version,) = crd["spec"]["versions"]
        kind = crd["spec"]["names"]["kind"]
        assert f"## {kind}\n" in text
        schema = version["schema"]["openAPIV3Schema"]
        for top in ("spec", "status"):
            for path, field in walk(schema["properties"][top], top):
                assert f"- **`{path}`** `<" in text, (kind, path)
                description = " ".join((field.get("description") or "").split())
                assert description, (kind, path, "every field has a description")
                assert description in text, (kind, path)
                count += 1
    assert count > 200


def test_lifeboat_crds_writes_the_reference(tmp_path: Path) -> None:
    target = tmp_path / "api.md"
    assert main(["crds", "--output", str(tmp_path / "crds"), "--docs", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == render_reference()
    assert sorted(p.name for p in (tmp_path / "crds").iterdir()) == sorted(crds())
