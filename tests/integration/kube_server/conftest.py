"""The test API server's own tests serve the test CRD (and the real CRDs, if any)."""

from __future__ import annotations

import pathlib

import pytest

# Until tests/conftest.py lists "tests.support.kube.fixtures" in pytest_plugins, load it here.
# (A non-root conftest may not declare pytest_plugins; importing the fixtures works either way.)
from tests.support.kube.fixtures import (  # noqa: F401
    DEFAULT_CRDS,
    TESTDATA,
    job_runner,
    kube_api,
    kube_server,
    kube_server_session,
    kubeconfig,
    wait_for_fixture,
)


@pytest.fixture(scope="session")
def kube_crd_paths() -> list[pathlib.Path]:
    return [TESTDATA]


@pytest.fixture(scope="session")
def real_crds_dir() -> pathlib.Path:
    return DEFAULT_CRDS
