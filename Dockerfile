# syntax=docker/dockerfile:1
#
# One image for both halves of Lifeboat: the operator Deployment runs `lifeboat operator ...`
# and every backup/restore Job runs `lifeboat backup|restore|delete ...`.
#
#   docker build -t ghcr.io/lifeboat-dev/lifeboat:0.1.0 .
#   docker build --build-arg PG_MAJOR=17 -t ghcr.io/lifeboat-dev/lifeboat:0.1.0-pg17 .
#
# PostgreSQL client version. pg_dump refuses to dump a server of a newer major version than its
# own, and pg_restore/psql of an older major may not understand a newer dump. By default the
# image takes Debian 12's own `postgresql-client` (PostgreSQL 15): no third-party repository,
# security updates through Debian, but servers 16 and newer cannot be dumped. Set PG_MAJOR
# (e.g. 17) to install `postgresql-client-${PG_MAJOR}` from the PostgreSQL project's apt
# repository (apt.postgresql.org, PGDG), set up with the signing key Debian ships in
# `postgresql-common`. A newer pg_dump dumps older servers too, so pick the newest major among
# the servers you back up.
#
# No ENTRYPOINT, on purpose: Kubernetes' `command` replaces ENTRYPOINT and `args` replace CMD,
# and both the Job (`command: ["lifeboat"]`) and the chart's Deployment (`command: ["lifeboat"]`,
# `args: ["operator", ...]`) set the whole command line. Without an ENTRYPOINT, `docker run IMAGE
# lifeboat show s3://...` and `kubectl debug ... -- bash` work as written. The default CMD only
# prints the help.
#
# Read-only root filesystem: the Jobs and the Deployment mount an emptyDir on /tmp and nothing
# else is writable, so HOME and the working directory are /tmp, byte code is compiled at build
# time and never written at run time, and temporary files go to /tmp (Python's default).
#
# No init process: `lifeboat` handles SIGTERM itself (uploads abort, dump tools are killed and
# reaped) and kopf does the same for the operator.

ARG BASE_IMAGE=python:3.11-slim-bookworm

# -- builder: the package and its pinned dependencies, in a venv ---------------------------------
FROM ${BASE_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY operator/ ./operator/
# `pip install .` builds the wheel and installs it (not editable) with the versions CI tests.
RUN python -m venv /opt/lifeboat \
    && /opt/lifeboat/bin/pip install --no-cache-dir -c constraints.txt . \
    && /opt/lifeboat/bin/lifeboat --version

# -- runtime: Python, the database client tools, the venv; runs as 10001:10001 --------------------
FROM ${BASE_IMAGE} AS runtime

ARG BASE_IMAGE
# Empty: Debian's postgresql-client (15). A major version (16, 17, ...): that client from PGDG.
ARG PG_MAJOR=""
ARG VERSION=0.1.0
ARG REVISION=unknown

LABEL org.opencontainers.image.title="lifeboat" \
      org.opencontainers.image.description="Kubernetes operator and worker that back up and restore PostgreSQL, MySQL/MariaDB and SQLite databases, verified." \
      org.opencontainers.image.source="https://github.com/lifeboat-dev/lifeboat" \
      org.opencontainers.image.url="https://github.com/lifeboat-dev/lifeboat" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}" \
      dev.lifeboat.postgresql-client-major="${PG_MAJOR}"

# Packages are not pinned to exact versions on purpose (DL3008): Debian 12 only ships security
# and bug fixes for them, and an exact pin breaks the build as soon as a fix replaces it.
# hadolint ignore=DL3008
RUN set -eux; \
    export DEBIAN_FRONTEND=noninteractive; \
    apt-get update; \
    pg_client=postgresql-client; \
    if [ -n "${PG_MAJOR}" ]; then \
        apt-get install -y --no-install-recommends postgresql-common; \
        /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y; \
        pg_client="postgresql-client-${PG_MAJOR}"; \
    fi; \
    apt-get install -y --no-install-recommends "${pg_client}" mariadb-client; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/*; \
    pg_dump --version; pg_restore --version; psql --version; \
    mariadb-dump --version; mariadb --version; \
    groupadd --gid 10001 lifeboat; \
    useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
        --shell /usr/sbin/nologin lifeboat

COPY --from=builder /opt/lifeboat /opt/lifeboat

ENV PATH="/opt/lifeboat/bin:${PATH}" \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

WORKDIR /tmp
# Numeric, so the kubelet can check runAsNonRoot without reading /etc/passwd.
USER 10001:10001
# The console script runs as the unprivileged user, with nothing written.
RUN lifeboat --version

CMD ["lifeboat", "--help"]
