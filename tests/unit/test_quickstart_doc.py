"""docs/quickstart.md can be followed as written: its manifests are what the API server and the
operator accept, its `kubectl lifeboat` and `helm --set` lines are ones the plugin and the chart
know, its Secrets are the ones its objects name, and its database grants are privileges.md's.
(No cluster here: the commands themselves run in a reviewer's kind cluster.)"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from lifeboat.api import API_VERSION
from lifeboat.cli.kubectl import build_parser
from tests.unit.test_crds import apply_defaults, cel_failures, to_json_schema
from tests.unit.test_examples import MODELS, committed_schema

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "quickstart.md").read_text(encoding="utf-8")
VALUES = yaml.safe_load((ROOT / "charts" / "lifeboat" / "values.yaml").read_text())


def shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", DOC, re.DOTALL)


def heredocs() -> list[str]:
    return re.findall(r"<<'EOF'\n(.*?)\nEOF\n", "".join(shell_blocks()), re.DOTALL)


def manifests() -> list[dict[str, Any]]:
    return [
        doc
        for text in heredocs()
        if text.lstrip().startswith("apiVersion")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def commands() -> list[list[str]]:
    """Each command line of the shell blocks (continuations joined, heredoc bodies left out)."""
    text = re.sub(r"<<'EOF'\n.*?\nEOF\n", "\n", "".join(shell_blocks()), flags=re.DOTALL)
    text = text.replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in text.splitlines() if line.strip()]


def test_lifeboat_objects_pass_the_schema_cel_rules_and_models() -> None:
    custom = [doc for doc in manifests() if doc["apiVersion"] == API_VERSION]
    assert {doc["kind"] for doc in custom} == {"BackupStore", "Backup"}
    for doc in custom:
        MODELS[doc["kind"]].model_validate(doc)
        schema = committed_schema(doc["kind"])
        defaulted = apply_defaults(schema, doc)
        jsonschema.validate(defaulted, to_json_schema(schema))
        assert cel_failures(schema, defaulted) == []


def test_every_kubectl_lifeboat_line_is_one_the_plugin_accepts() -> None:
    lines = [c[2:] for c in commands() if c[:2] == ["kubectl", "lifeboat"]]
    assert len(lines) >= 7
    parser = build_parser()
    for argv in lines:
        if argv == ["--help"]:
            continue
        parser.parse_args(argv)


def test_helm_values_set_exist_in_the_chart() -> None:
    (helm,) = [c for c in commands() if c[:2] == ["helm", "install"]]
    sets = [helm[i + 1] for i, word in enumerate(helm) if word == "--set"]
    assert sets
    for assignment in sets:
        node: Any = VALUES
        for key in assignment.split("=", 1)[0].split("."):
            assert isinstance(node, dict), assignment
            assert key in node, assignment
            node = node[key]


def test_the_secrets_created_are_the_ones_the_objects_name() -> None:
    secrets = {
        c[c.index("generic") + 1]: {
            a.removeprefix("--from-literal=").split("=", 1)[0]
            for a in c
            if a.startswith("--from-literal=")
        }
        for c in commands()
        if "generic" in c
    }
    assert secrets
    backup = next(doc for doc in manifests() if doc["kind"] == "Backup")
    ref = backup["spec"]["database"]["passwordSecretRef"]
    assert ref["key"] in secrets[ref["name"]]
    store = next(doc for doc in manifests() if doc["kind"] == "BackupStore")
    assert secrets[store["spec"]["s3"]["credentialsSecretRef"]["name"]] == {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    }


@pytest.mark.parametrize(
    "grant", ["CREATE ROLE app LOGIN PASSWORD", "CREATE DATABASE shop OWNER app;"]
)
def test_the_database_is_set_up_with_the_grants_privileges_md_tests(grant: str) -> None:
    privileges = " ".join((ROOT / "docs" / "privileges.md").read_text(encoding="utf-8").split())
    assert grant in privileges
    assert grant in DOC
    assert not re.search(r"SUPERUSER|CREATEDB|CREATEROLE|GRANT", "".join(heredocs()))
