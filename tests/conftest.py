"""Shared fixtures. Real servers live in tests/support/, one module each."""

pytest_plugins = [
    "tests.support.s3",
    "tests.support.s3_outage",
    "tests.support.postgres",
    "tests.support.mariadb",
    "tests.support.restartable_servers",
    "tests.support.tls_servers",
    "tests.support.kube.fixtures",
]
