"""The project's own CRDs (crds/*.yaml) load into the test server: schemas and CEL rules compile."""

from __future__ import annotations

import pathlib

import pytest

from tests.support.kube.registry import load_crd_documents, resources_from_crd
from tests.support.kube.server import KubeServer


def test_the_real_crds_load(real_crds_dir: pathlib.Path) -> None:
    docs = load_crd_documents([real_crds_dir])
    if not docs:
        pytest.skip(f"no CRDs in {real_crds_dir} yet")
    for doc in docs:
        assert resources_from_crd(doc), doc["metadata"]["name"]
    with KubeServer(crd_paths=[real_crds_dir]) as server:
        groups = {doc["spec"]["group"] for doc in docs}
        import json
        import urllib.request

        with urllib.request.urlopen(f"{server.url}/apis", timeout=5) as response:  # noqa: S310
            served = {g["name"] for g in json.load(response)["groups"]}
        assert groups <= served
