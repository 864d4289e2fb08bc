"""Bad input, table-driven: every case is refused with a message that names the field.

Each case says where it is refused: by the API server (`schema`: the CRD's OpenAPI schema, its
CEL rules, or strict field validation as `kubectl apply` asks for it), or, when a CRD schema
cannot express the rule, by the operator's models (`operator`: the Backup or Restore then ends
Failed with InvalidSpec and the same words). A case refused by the schema is also refused by the
models (the operator re-validates), so a schema that loses a rule fails here, and so does a
model that loses one.

Then the input that must be accepted and reach the database as it is (quotes, `;`, `$(...)`,
backticks, non-ASCII in names), names too long for a Job or a label, references that cannot
leave their namespace, and the pure decisions behind the operator's refusals: the tenancy
allow-lists, the worker's status target check, and the field named in a failure's message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from pydantic import ValidationError

from lifeboat.api import Backup, JobOptions, Phase, Restore, StorageBackend, VolumeStorage
from lifeboat.api.common import describe_validation_error
from lifeboat.api.crd import BACKUP_PLURAL, RESTORE_PLURAL, crds
from lifeboat.api.job import LABEL_VALUE_PATTERN
from lifeboat.builders.jobs import JobDefaults, backup_url, build_backup_job, database_url
from lifeboat.builders.naming import MAX_NAME
from lifeboat.contract import ENV_STATUS_TARGET
from lifeboat.controller.field_hints import field_hints, with_field_hint
from lifeboat.controller.jobs import job_rejected
from lifeboat.controller.operator import job_owner_name
from lifeboat.controller.tenancy import (
    IMAGE_NOT_ALLOWED,
    SERVICE_ACCOUNT_NOT_ALLOWED,
    JobPolicy,
    job_refusal,
)
from lifeboat.controller.transitions import Verdict
from lifeboat.worker.database_url import parse_database_url
from lifeboat.worker.status_writer import StatusTargetRefused, check_status_target
from tests.unit.test_crds import (
    ISSUE_BACKUP,
    ISSUE_RESTORE,
    SOURCE_RESTORE,
    SQLITE_BACKUP,
    api_server_errors,
    edited,
    open_api_schema,
    walk,
)

SCHEMA, OPERATOR = "schema", "operator"


def unknown_fields(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """What `kubectl apply` (server-side field validation, Strict) refuses on top of the schema:
    fields the schema does not declare, which a lenient client would see silently pruned."""
    found: list[str] = []
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            if key in schema["properties"]:
                found += unknown_fields(schema["properties"][key], item, f"{path}.{key}")
            elif not isinstance(schema.get("additionalProperties"), dict):
                found.append(f'{path}: unknown field "{path.lstrip(".")}.{key}"')
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            found += unknown_fields(schema["items"], item, f"{path}[{index}]")
    return found


def refused_by_the_api_server(plural: str, obj: dict[str, Any], old: Any = None) -> str:
    """Everything the API server would answer `kubectl apply` with ('' when it accepts)."""
    spec_schema = open_api_schema(plural)["properties"]["spec"]
    errors = api_server_errors(plural, obj, old) + unknown_fields(spec_schema, obj["spec"], "spec")
    return "\n".join(errors)


def refused_by_the_models(plural: str, obj: dict[str, Any]) -> str:
    """What the operator writes into an InvalidSpec message ('' when the models accept)."""
    model = Backup if plural == BACKUP_PLURAL else Restore
    try:
        model.model_validate(obj)
    except ValidationError as exc:
        return describe_validation_error(exc)
    return ""


@dataclass(frozen=True)
class Case:
    id: str
    plural: str
    obj: dict[str, Any]
    field: str
    """The field path the refusal must name, as kubectl and the operator write it."""
    layer: str
    mentions: str = ""
    """A word the message must also hold (the missing field's name, the rule's gist)."""
    old: dict[str, Any] | None = None
    """For an update: the object as it was accepted."""
    models_refuse: bool = True
    """False where the models read the value leniently and the API server alone refuses it."""


PG, LITE, RESTORE, SOURCE = ISSUE_BACKUP, SQLITE_BACKUP, ISSUE_RESTORE, SOURCE_RESTORE
DB, S3, JOB = "spec.database", "spec.storage.s3", "spec.job"


def backup(path: str, value: Any, base: dict[str, Any] = PG) -> dict[str, Any]:
    return edited(base, path, value)


CASES = [
    # -- the database
    Case("engine-oracle", BACKUP_PLURAL, backup(f"{DB}.engine", "oracle"), f"{DB}.engine", SCHEMA),
    Case("engine-missing", BACKUP_PLURAL, backup(f"{DB}.engine", ...), DB, SCHEMA, "engine"),
    Case("database-name-missing", BACKUP_PLURAL, backup(f"{DB}.name", ...), DB, SCHEMA, "name"),
    Case("database-name-empty", BACKUP_PLURAL, backup(f"{DB}.name", ""), f"{DB}.name", SCHEMA),
    Case(
        "database-name-newline",
        BACKUP_PLURAL,
        backup(f"{DB}.name", "shop\nDROP DATABASE shop"),
        f"{DB}.name",
        SCHEMA,
    ),
    Case("user-nul", BACKUP_PLURAL, backup(f"{DB}.user", "app\x00"), f"{DB}.user", SCHEMA),
    Case("port-zero", BACKUP_PLURAL, backup(f"{DB}.port", 0), f"{DB}.port", SCHEMA),
    Case("port-too-big", BACKUP_PLURAL, backup(f"{DB}.port", 65536), f"{DB}.port", SCHEMA),
    Case(
        "port-a-string",
        BACKUP_PLURAL,
        backup(f"{DB}.port", "5432"),
        f"{DB}.port",
        SCHEMA,
        models_refuse=False,  # pydantic reads "5432" as 5432; kubectl apply is refused first
    ),
    Case(
        "host-with-port", BACKUP_PLURAL, backup(f"{DB}.host", "db.shop:5432"), f"{DB}.host", SCHEMA
    ),
    Case(
        "host-with-scheme",
        BACKUP_PLURAL,
        backup(f"{DB}.host", "postgresql://db.shop"),
        f"{DB}.host",
        SCHEMA,
    ),
    Case("host-with-user", BACKUP_PLURAL, backup(f"{DB}.host", "u@db.shop"), f"{DB}.host", SCHEMA),
    Case(
        "host-with-query",
        BACKUP_PLURAL,
        backup(f"{DB}.host", "db.shop?sslmode=disable"),
        f"{DB}.host",
        SCHEMA,
    ),
    Case(
        "password-secret-name",
        BACKUP_PLURAL,
        backup(f"{DB}.passwordSecretRef.name", "Shop_DB"),
        f"{DB}.passwordSecretRef.name",
        SCHEMA,
    ),
    Case(
        "password-secret-key",
        BACKUP_PLURAL,
        backup(f"{DB}.passwordSecretRef.key", "pass word"),
        f"{DB}.passwordSecretRef.key",
        SCHEMA,
    ),
    Case(
        "password-secret-in-another-namespace",
        BACKUP_PLURAL,
        backup(f"{DB}.passwordSecretRef.namespace", "billing"),
        f"{DB}.passwordSecretRef.namespace",
        SCHEMA,
        "unknown field",
    ),
    Case(
        "sqlite-with-host",
        BACKUP_PLURAL,
        backup(f"{DB}.host", "db.shop", LITE),
        DB,
        SCHEMA,
        "remove the fields",
    ),
    Case(
        "sqlite-path-climbs-out",
        BACKUP_PLURAL,
        backup(f"{DB}.path", "../../etc/passwd", LITE),
        f"{DB}.path",
        SCHEMA,
    ),
    # -- the storage
    Case(
        "bucket-url", BACKUP_PLURAL, backup(f"{S3}.bucket", "s3://backups"), f"{S3}.bucket", SCHEMA
    ),
    Case(
        "bucket-shell", BACKUP_PLURAL, backup(f"{S3}.bucket", "b$(id)`x`"), f"{S3}.bucket", SCHEMA
    ),
    Case(
        "bucket-unicode", BACKUP_PLURAL, backup(f"{S3}.bucket", "bäckups"), f"{S3}.bucket", SCHEMA
    ),
    Case("bucket-too-short", BACKUP_PLURAL, backup(f"{S3}.bucket", "ab"), f"{S3}.bucket", SCHEMA),
    Case(
        "endpoint-no-scheme",
        BACKUP_PLURAL,
        backup(f"{S3}.endpoint", "minio.storage:9000"),
        f"{S3}.endpoint",
        SCHEMA,
    ),
    Case(
        "endpoint-ftp",
        BACKUP_PLURAL,
        backup(f"{S3}.endpoint", "ftp://minio.storage"),
        f"{S3}.endpoint",
        SCHEMA,
    ),
    Case(
        "endpoint-with-space",
        BACKUP_PLURAL,
        backup(f"{S3}.endpoint", "http://minio .storage"),
        f"{S3}.endpoint",
        SCHEMA,
    ),
    Case(
        "prefix-leading-slash",
        BACKUP_PLURAL,
        backup(f"{S3}.prefix", "/shop"),
        f"{S3}.prefix",
        SCHEMA,
    ),
    Case(
        "prefix-dotdot",
        BACKUP_PLURAL,
        backup(f"{S3}.prefix", "shop/../billing/"),
        f"{S3}.prefix",
        SCHEMA,
    ),
    Case(
        "credentials-in-another-namespace",
        BACKUP_PLURAL,
        backup(f"{S3}.credentialsSecretRef.namespace", "billing"),
        f"{S3}.credentialsSecretRef.namespace",
        SCHEMA,
        "unknown field",
    ),
    Case(
        "volume-path-climbs-out",
        BACKUP_PLURAL,
        backup("spec.storage.volume.path", "nightly/../../other", LITE),
        "spec.storage.volume.path",
        SCHEMA,
    ),
    Case(
        "two-storage-backends",
        BACKUP_PLURAL,
        backup("spec.storage.volume", {"persistentVolumeClaim": "backups"}),
        "spec.storage",
        SCHEMA,
        "exactly one",
    ),
    Case(
        "compression-lz4",
        BACKUP_PLURAL,
        backup("spec.compression", "lz4"),
        "spec.compression",
        SCHEMA,
    ),
    # -- the Job
    Case(
        "image-with-space",
        BACKUP_PLURAL,
        backup(f"{JOB}.image", "lifeboat latest"),
        f"{JOB}.image",
        SCHEMA,
    ),
    Case(
        "service-account-name",
        BACKUP_PLURAL,
        backup(f"{JOB}.serviceAccountName", "Admin SA"),
        f"{JOB}.serviceAccountName",
        SCHEMA,
    ),
    Case(
        "deadline-zero",
        BACKUP_PLURAL,
        backup(f"{JOB}.activeDeadlineSeconds", 0),
        f"{JOB}.activeDeadlineSeconds",
        SCHEMA,
    ),
    Case(
        "backoff-1000",
        BACKUP_PLURAL,
        backup(f"{JOB}.backoffLimit", 1000),
        f"{JOB}.backoffLimit",
        SCHEMA,
    ),
    Case(
        "memory-lots",
        BACKUP_PLURAL,
        backup(f"{JOB}.resources", {"limits": {"memory": "lots"}}),
        f"{JOB}.resources.limits.memory",
        SCHEMA,
    ),
    Case(
        "cpu-negative",
        BACKUP_PLURAL,
        backup(f"{JOB}.resources", {"requests": {"cpu": -1}}),
        f"{JOB}.resources.requests.cpu",
        SCHEMA,
    ),
    Case(
        "memory-1e999",
        BACKUP_PLURAL,
        backup(f"{JOB}.resources", {"requests": {"memory": "1e999"}}),
        f"{JOB}.resources.requests.memory",
        OPERATOR,
        "beyond any node",
    ),
    Case(
        "requests-over-limits",
        BACKUP_PLURAL,
        backup(f"{JOB}.resources", {"requests": {"memory": "8Gi"}, "limits": {"memory": "1Gi"}}),
        f"{JOB}.resources",
        OPERATOR,
        "more than limits.memory",
    ),
    Case(
        "node-selector-value",
        BACKUP_PLURAL,
        backup(f"{JOB}.nodeSelector", {"disk": "fast ssd"}),
        f"{JOB}.nodeSelector.disk",
        SCHEMA,
    ),
    Case(
        "node-selector-key",
        BACKUP_PLURAL,
        backup(f"{JOB}.nodeSelector", {"disk type": "ssd"}),
        f"{JOB}.nodeSelector",
        OPERATOR,
        "not a valid node label key",
    ),
    Case(
        "pod-label-key",
        BACKUP_PLURAL,
        backup(f"{JOB}.podLabels", {"team name": "db"}),
        f"{JOB}.podLabels",
        OPERATOR,
        "not a valid label key",
    ),
    # -- Restores
    Case(
        "restore-two-sources",
        RESTORE_PLURAL,
        edited(RESTORE, "spec.source", SOURCE["spec"]["source"]),
        "spec",
        SCHEMA,
        "exactly one of backupRef",
    ),
    Case(
        "restore-no-source",
        RESTORE_PLURAL,
        edited(RESTORE, "spec.backupRef", ...),
        "spec",
        SCHEMA,
        "exactly one",
    ),
    Case(
        "restore-source-without-target",
        RESTORE_PLURAL,
        edited(SOURCE, "spec.target", ...),
        "spec",
        SCHEMA,
        "target is required",
    ),
    Case(
        "restore-backup-name",
        RESTORE_PLURAL,
        edited(RESTORE, "spec.backupRef.name", "Shop DB"),
        "spec.backupRef.name",
        SCHEMA,
    ),
    Case(
        "restore-backup-in-another-namespace",
        RESTORE_PLURAL,
        edited(RESTORE, "spec.backupRef.namespace", "billing"),
        "spec.backupRef.namespace",
        SCHEMA,
        "unknown field",
    ),
    Case(
        "restore-source-path-climbs-out",
        RESTORE_PLURAL,
        edited(SOURCE, "spec.source.path", "../../billing/db-1"),
        "spec.source.path",
        SCHEMA,
    ),
    Case(
        "restore-target-engine",
        RESTORE_PLURAL,
        edited(SOURCE, "spec.target.engine", "mongodb"),
        "spec.target.engine",
        SCHEMA,
    ),
    Case(
        "restore-no-owner-into-mariadb",
        RESTORE_PLURAL,
        edited(
            edited(SOURCE, "spec.noOwner", True),
            "spec.target",
            {"engine": "mariadb", "host": "db", "name": "shop", "user": "app"},
        ),
        "spec",
        SCHEMA,
        "postgresql options",
    ),
    # -- spec edits after acceptance
    Case(
        "backup-database-edited",
        BACKUP_PLURAL,
        backup(f"{DB}.name", "billing"),
        "spec",
        SCHEMA,
        "cannot change once created",
        old=PG,
    ),
    Case(
        "backup-storage-edited",
        BACKUP_PLURAL,
        backup(f"{S3}.bucket", "elsewhere"),
        "spec",
        SCHEMA,
        "cannot change once created",
        old=PG,
    ),
    Case(
        "backup-job-added",
        BACKUP_PLURAL,
        backup(JOB, {"backoffLimit": 5}),
        "spec",
        SCHEMA,
        "cannot change once created",
        old=PG,
    ),
    Case(
        "restore-edited",
        RESTORE_PLURAL,
        edited(RESTORE, "spec.backupRef.name", "another"),
        "spec",
        SCHEMA,
        "cannot change once created",
        old=RESTORE,
    ),
]


def test_there_are_enough_cases_and_the_bases_are_good() -> None:
    assert len(CASES) >= 30
    assert len({case.id for case in CASES}) == len(CASES)
    for plural, obj in ((BACKUP_PLURAL, PG), (BACKUP_PLURAL, LITE), (RESTORE_PLURAL, RESTORE)):
        assert refused_by_the_api_server(plural, obj) == ""
        assert refused_by_the_models(plural, obj) == ""
    assert refused_by_the_api_server(RESTORE_PLURAL, SOURCE) == ""


def named(text: str, field: str) -> bool:
    """`field` is named in `text`: as kubectl prints it (`spec.x.y`, `.spec.x.y`), or as the
    models do (`spec.x.y: ...`, maybe followed by a union branch)."""
    return bool(re.search(rf"(^|[\s.\"]){re.escape(field)}($|[\s.:\[\"])", text, re.MULTILINE))


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_bad_input_is_refused_where_it_should_be_with_the_field_named(case: Case) -> None:
    by_server = refused_by_the_api_server(case.plural, case.obj, case.old)
    if case.layer == SCHEMA:
        assert by_server, f"kubectl apply would accept {case.id}"
        assert named(by_server, case.field), by_server
        assert case.mentions in by_server, by_server
    else:
        assert by_server == "", "the schema refuses it now: move the case to SCHEMA"
    if case.old is not None or not case.models_refuse:
        return  # an edit: only the API server sees the object as it was
    by_models = refused_by_the_models(case.plural, case.obj)
    assert by_models, f"the operator would run {case.id}"
    assert named(by_models, case.field), by_models
    if case.layer == OPERATOR or case.mentions == "unknown field":
        assert case.mentions in by_models, by_models


def test_deletion_policy_is_the_one_field_that_may_change() -> None:
    after = edited(PG, "spec.deletionPolicy", "Retain")
    assert refused_by_the_api_server(BACKUP_PLURAL, after, old=PG) == ""


# -- input that must be accepted, and reach the database as it is ------------------------------

ODD_NAMES = [
    'shop "quoted"',
    "shop's",
    "sh op; DROP DATABASE shop; --",
    "$(touch /tmp/pwned)",
    "`id`",
    "ünïcødé-数据",
    "a%2Fb/c?d#e@f:g",
    "-leading-dash",
]


@pytest.mark.parametrize("name", ODD_NAMES)
def test_odd_database_and_user_names_are_accepted_and_reach_the_worker_unchanged(
    name: str,
) -> None:
    obj = edited(edited(PG, f"{DB}.name", name), f"{DB}.user", name)
    assert refused_by_the_api_server(BACKUP_PLURAL, obj) == ""
    spec = Backup.model_validate(obj).spec
    url = database_url(spec.database)
    assert url == (
        f"postgresql://{quote(name, safe='')}@postgres.shop.svc:5432/{quote(name, safe='')}"
    )
    parsed = parse_database_url(url, environ={})
    assert (parsed.database, parsed.user, parsed.host, parsed.port) == (
        name,
        name,
        "postgres.shop.svc",
        5432,
    )
    job = build_backup_job(
        Backup.model_validate(
            {**obj, "metadata": {"name": "b", "namespace": "shop", "uid": "0f1e2d3c"}}
        ),
        Backup.model_validate(obj).spec.storage.backend(),  # type: ignore[arg-type]
        JobDefaults(),
    )
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["lifeboat"]  # no shell: the name is one argv element
    assert url in container["args"]


def test_an_ipv6_host_is_accepted_and_bracketed_in_the_url() -> None:
    obj = edited(PG, f"{DB}.host", "fd00::7")
    assert refused_by_the_api_server(BACKUP_PLURAL, obj) == ""
    url = database_url(Backup.model_validate(obj).spec.database)
    assert url == "postgresql://backup@[fd00::7]:5432/shop"
    assert parse_database_url(url, environ={}).host == "fd00::7"


def test_an_ipv6_lookalike_with_one_colon_is_refused() -> None:
    errors = refused_by_the_api_server(BACKUP_PLURAL, edited(PG, f"{DB}.host", "dead:5432"))
    assert named(errors, f"{DB}.host"), errors


# -- names too long for a Job or a label --------------------------------------------------------


VOLUME = StorageBackend(volume=VolumeStorage(persistent_volume_claim="backups"))


def long_name(marker: str) -> str:
    """A 253-character name (the most Kubernetes allows), made of DNS labels."""
    name = ".".join(["a" * 60, marker, "c" * 60, "d" * 60])
    return f"{name}.{'e' * (253 - len(name) - 1)}"


def test_longest_object_names_give_valid_and_distinct_job_names_and_labels() -> None:
    names = [long_name("one"), long_name("two")]
    assert all(len(n) == 253 for n in names)
    jobs = []
    for index, name in enumerate(names):
        obj = {**PG, "metadata": {"name": name, "namespace": "shop", "uid": f"uid-{index}"}}
        assert refused_by_the_api_server(BACKUP_PLURAL, obj) == ""
        source = Backup.model_validate(obj)
        job = build_backup_job(source, source.spec.storage.backend(), JobDefaults())  # type: ignore[arg-type]
        jobs.append(job)
        job_name = job["metadata"]["name"]
        assert len(job_name) <= MAX_NAME
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", job_name), job_name
        labels = {**job["metadata"]["labels"], **job["spec"]["template"]["metadata"]["labels"]}
        for key, value in labels.items():
            assert len(value) <= MAX_NAME, key
            assert re.fullmatch(LABEL_VALUE_PATTERN, value), key
        # The label is cut at 63 characters; the Job watch finds the owner by its full name.
        owners = job["metadata"]["ownerReferences"]
        assert job_owner_name("backup", labels, owners) == name
        # The backup's directory is a file name on a volume (and in MinIO): 255 at most.
        location = backup_url(source, VOLUME)
        assert max(len(part) for part in location.split("/")) <= 255, location
        assert location.endswith(f"-uid-{index}/")
    assert jobs[0]["metadata"]["name"] != jobs[1]["metadata"]["name"]
    assert job_owner_name("backup", {"lifeboat.dev/owner-name": "short"}, []) == "short"


# -- references cannot leave the namespace ------------------------------------------------------


def test_no_reference_anywhere_carries_a_namespace() -> None:
    refs = []
    for name, crd in crds().items():
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, node in walk(schema["properties"]["spec"], name):
            for prop, sub in node.get("properties", {}).items():
                if prop.endswith("Ref") or prop == "persistentVolumeClaim":
                    refs.append(f"{path}.{prop}")
                    assert "namespace" not in sub.get("properties", {}), f"{path}.{prop}"
                assert prop != "namespace", f"{path}.{prop}"
    assert len(refs) >= 10, refs  # secrets, backups, schedules, stores, claims, in every kind


# -- tenancy: the allow-lists -------------------------------------------------------------------

DEFAULTS = JobDefaults(image="ghcr.io/lifeboat-dev/lifeboat:0.1.0", service_account_name="lb")
MIRROR = JobPolicy(
    allowed_images=("registry.example/lifeboat:*",),
    allowed_service_accounts=("shop/backup-irsa", "lifeboat-*"),
)


@pytest.mark.parametrize(
    ("job", "policy", "namespace", "refused"),
    [
        ({}, JobPolicy(), "shop", None),
        ({"image": DEFAULTS.image}, JobPolicy(), "shop", None),
        ({"serviceAccountName": "lb"}, JobPolicy(), "shop", None),
        ({"image": "evil.example/x:1"}, JobPolicy(), "shop", IMAGE_NOT_ALLOWED),
        ({"image": "ghcr.io/lifeboat-dev/lifeboat:0.2.0"}, JobPolicy(), "shop", IMAGE_NOT_ALLOWED),
        ({"serviceAccountName": "admin"}, JobPolicy(), "shop", SERVICE_ACCOUNT_NOT_ALLOWED),
        ({"image": "registry.example/lifeboat:0.1.0"}, MIRROR, "shop", None),
        ({"image": "registry.example/lifeboat-evil:1"}, MIRROR, "shop", IMAGE_NOT_ALLOWED),
        ({"image": "registry.example/lifeboat"}, MIRROR, "shop", IMAGE_NOT_ALLOWED),
        ({"serviceAccountName": "backup-irsa"}, MIRROR, "shop", None),
        ({"serviceAccountName": "backup-irsa"}, MIRROR, "billing", SERVICE_ACCOUNT_NOT_ALLOWED),
        ({"serviceAccountName": "lifeboat-s3"}, MIRROR, "billing", None),
        ({"serviceAccountName": "default"}, MIRROR, "shop", SERVICE_ACCOUNT_NOT_ALLOWED),
        (
            {"image": "registry.example/lifeboat:1", "serviceAccountName": "admin"},
            MIRROR,
            "shop",
            SERVICE_ACCOUNT_NOT_ALLOWED,
        ),
        ({"image": "anything/at:all"}, JobPolicy(allowed_images=("*",)), "shop", None),
    ],
)
def test_job_overrides_pass_only_where_the_allow_lists_permit(
    job: dict[str, Any], policy: JobPolicy, namespace: str, refused: str | None
) -> None:
    verdict = job_refusal(
        JobOptions.model_validate(job), namespace=namespace, defaults=DEFAULTS, policy=policy
    )
    assert (verdict.reason if verdict else None) == refused
    if verdict is None:
        return
    assert verdict.phase.value == "Failed"
    field = "image" if refused == IMAGE_NOT_ALLOWED else "serviceAccountName"
    assert verdict.message.startswith(f"spec.job.{field}: {job[field]} is not allowed")
    flag = "--allowed-images" if field == "image" else "--allowed-service-accounts"
    assert flag in verdict.message
    listed = policy.allowed_images if field == "image" else policy.allowed_service_accounts
    assert (", ".join(listed) or "nothing (the default)") in verdict.message
    assert "No Job was created" in verdict.message


def test_a_schedule_template_is_refused_under_its_own_field() -> None:
    verdict = job_refusal(
        JobOptions(image="evil.example/x:1"),
        namespace="shop",
        defaults=DEFAULTS,
        policy=JobPolicy(),
        field="spec.template.job",
        then="then edit the schedule.",
    )
    assert verdict is not None
    assert verdict.message.startswith("spec.template.job.image: evil.example/x:1")
    assert verdict.message.endswith("then edit the schedule.")


# -- the worker writes only its own object's status --------------------------------------------


@pytest.mark.parametrize(
    ("target", "env", "namespace_file", "refused"),
    [
        ("backups/shop/db", {}, None, None),  # a person running it by hand
        ("backups/shop/db", {ENV_STATUS_TARGET: "backups/shop/db"}, "shop", None),
        ("backups/shop/other", {ENV_STATUS_TARGET: "backups/shop/db"}, "shop", "not the object"),
        ("restores/shop/db", {ENV_STATUS_TARGET: "backups/shop/db"}, None, "not the object"),
        ("backups/billing/db", {}, "shop", "runs in namespace shop"),
        ("backups/billing/db", {ENV_STATUS_TARGET: "backups/billing/db"}, "shop", "namespace"),
        ("jobs/shop/db", {}, None, "should be backups/NAMESPACE/NAME"),
        ("backups/shop/db/x", {}, None, "should be backups/NAMESPACE/NAME"),
    ],
)
def test_the_worker_refuses_to_write_any_status_but_its_own_objects(
    tmp_path: Path,
    target: str,
    env: dict[str, str],
    namespace_file: str | None,
    refused: str | None,
) -> None:
    path = tmp_path / "namespace"
    if namespace_file is not None:
        path.write_text(namespace_file + "\n")
    if refused is None:
        assert check_status_target(target, env, path) == tuple(target.split("/"))
        return
    with pytest.raises(Exception, match=re.escape(refused)) as info:
        check_status_target(target, env, path)
    if "should be" not in refused:
        assert isinstance(info.value, StatusTargetRefused)
        assert info.value.reason == "StatusTargetRefused"
        assert info.value.exit_code == 2  # not retried: the Job fails at once


# -- the field a failure is about ---------------------------------------------------------------


def secret_job(*refs: tuple[str, str, str]) -> dict[str, Any]:
    env = [
        {"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
        for var, secret, key in refs
    ]
    return {"spec": {"template": {"spec": {"containers": [{"name": "worker", "env": env}]}}}}


BACKUP_HINTS = field_hints(
    database_at="spec.database",
    database=Backup.model_validate(PG).spec.database,
    storage_at="spec.storage",
    storage=Backup.model_validate(PG).spec.storage,
)
JOB_WITH_SECRETS = secret_job(
    ("LIFEBOAT_DB_PASSWORD", "shop-db", "password"),
    ("AWS_ACCESS_KEY_ID", "s3-credentials", "AWS_ACCESS_KEY_ID"),
    ("AWS_SECRET_ACCESS_KEY", "s3-credentials", "AWS_SECRET_ACCESS_KEY"),
)


@pytest.mark.parametrize(
    ("reason", "message", "hint"),
    [
        (
            "CreateContainerConfigError",
            'the worker Pod cannot start: CreateContainerConfigError: secret "shop-db" not found',
            "spec.database.passwordSecretRef (no Secret shop-db in this namespace)",
        ),
        (
            "CreateContainerConfigError",
            "cannot start: couldn't find key AWS_SECRET_ACCESS_KEY in Secret shop/s3-credentials",
            "spec.storage.s3.credentialsSecretRef (Secret s3-credentials has no key "
            "AWS_SECRET_ACCESS_KEY in this namespace)",
        ),
        ("BucketNotFound", "bucket backups does not exist", "spec.storage.s3.bucket"),
        ("StorageUnreachable", "no answer from http://minio", "spec.storage.s3.endpoint"),
        ("DatabaseNotFound", "database shop does not exist", "spec.database.name"),
        (
            "AuthenticationFailed",
            "refused",
            "spec.database.user and the Secret named by spec.database.passwordSecretRef",
        ),
        ("DatabaseUnreachable", "no route", "spec.database.host and spec.database.port"),
        ("ChecksumMismatch", "corrupt", None),
    ],
)
def test_a_failure_the_spec_can_fix_names_the_field(
    reason: str, message: str, hint: str | None
) -> None:
    verdict = with_field_hint(
        Verdict(Phase.FAILED, reason, message), BACKUP_HINTS, JOB_WITH_SECRETS
    )
    assert verdict.message == (message if hint is None else f"{message}; check {hint}")
    assert verdict.reason == reason


def test_a_restores_failure_names_its_backups_fields_when_they_are_not_its_own() -> None:
    hints = field_hints(
        database_at="Backup shop-db's spec.database",
        database=None,
        storage_at="Backup shop-db's storage",
        storage=None,
    )
    verdict = with_field_hint(Verdict(Phase.FAILED, "BucketNotFound", "gone"), hints, None)
    assert verdict.message == "gone; check Backup shop-db's storage: bucket"
    running = Verdict(Phase.RUNNING, "BucketNotFound", "gone")
    assert with_field_hint(running, hints, None) == running


def test_a_job_the_api_server_refuses_fails_the_object_with_kubernetes_words() -> None:
    verdict = job_rejected('creating Job shop/x: 422 Unprocessable Entity: spec.template: "bad"')
    assert (verdict.phase.value, verdict.reason) == ("Failed", "JobRejected")
    assert 'spec.template: "bad"' in verdict.message
    assert "spec.job" in verdict.message
