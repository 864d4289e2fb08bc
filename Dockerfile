# syntax=docker/dockerfile:1
#
# One image for both halves of Lifeboat: the operator Deployment runs `lifeboat operator ...`
# and every backup/restore Job runs `lifeboat backup|restore|delete|check ...`.
#
#   docker build -t ghcr.io/lifeboat-dev/lifeboat:0.1.0 .
#   docker build --build-arg PG_MAJOR=18 -t ghcr.io/lifeboat-dev/lifeboat:0.1.0-pg18 .
#
# One image for every PostgreSQL major people run. pg_dump dumps servers of its own major and
# every older one (back to 9.2), and refuses newer ones; pg_restore reads archives of its own
# pg_dump and older ones. So the image carries one client, the newest: the default is
# PostgreSQL 17, for servers 13 to 17. The base is Debian 13 (trixie), whose own
# `postgresql-client-17` it installs: no third-party repository, security updates through Debian.
# PG_MAJOR picks another major: when Debian 13 does not have it (18 and newer), it comes from the
# PostgreSQL project's apt repository (apt.postgresql.org, PGDG), set up with the signing key
# Debian ships in `postgresql-common`. Restores into a server older than the client work because
# the worker drops the session settings the server does not have from pg_restore's header
# (pg_restore 17 writes `SET transaction_timeout`, unknown before 17).
#
# MariaDB and MySQL: Debian 13's `mariadb-client` (11.8) runs mariadb-dump and mariadb for
# MariaDB 10.5-11.x and MySQL 8.0/8.4 servers; its libmariadb3 brings the caching_sha2_password
# plugin MySQL 8 logs in with by default (Lifeboat's own PyMySQL sessions use `cryptography`, a
# dependency of the package, for the same).
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

ARG BASE_IMAGE=python:3.11-slim-trixie

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
# The PostgreSQL client's major version: Debian 13's own package for 17, PGDG's for 18 and newer.
ARG PG_MAJOR=17
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

# Packages are not pinned to exact versions on purpose (DL3008): Debian 13 only ships security
# and bug fixes for them, and an exact pin breaks the build as soon as a fix replaces it.
# The build fails unless every tool the engines run is there, pg_dump is of PG_MAJOR, and the
# MySQL 8 login plugin is installed.
# hadolint ignore=DL3008
RUN set -eux; \
    export DEBIAN_FRONTEND=noninteractive; \
    apt-get update; \
    if ! apt-cache show "postgresql-client-${PG_MAJOR}" >/dev/null 2>&1; then \
        apt-get install -y --no-install-recommends postgresql-common; \
        /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y; \
    fi; \
    apt-get install -y --no-install-recommends "postgresql-client-${PG_MAJOR}" mariadb-client; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/*; \
    pg_dump --version; pg_restore --version; psql --version; \
    case "$(pg_dump --version)" in *") ${PG_MAJOR}."*) ;; *) exit 1 ;; esac; \
    mariadb-dump --version; mariadb --version; \
    ls /usr/lib/*/libmariadb3/plugin/caching_sha2_password.so; \
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
# The console script runs as the unprivileged user, with nothing written; PyMySQL finds the
# cryptography it needs for MySQL 8's caching_sha2_password.
RUN lifeboat --version \
    && python -c "import pymysql._auth as auth; assert auth._have_cryptography"

CMD ["lifeboat", "--help"]
