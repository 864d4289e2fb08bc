"""What the test server serves: built-in resources (kmock's bundle) and CRDs from YAML files."""

from __future__ import annotations

import copy
import dataclasses
import functools
import pathlib
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import kmock
import yaml

from .printing import Printer, builtin_columns, crd_columns
from .schema import StructuralSchema

CRD_RESOURCE = ("apiextensions.k8s.io", "v1", "customresourcedefinitions")

# Resources that keep `metadata.generation` (those with a spec/status split).
_GENERATION_BUILTINS = {
    ("batch", "jobs"),
    ("apps", "deployments"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("apps", "replicasets"),
    ("batch", "cronjobs"),
    ("", "pods"),
    ("", "replicationcontrollers"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
}

_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Kubernetes' version ordering, highest priority first when sorted ascending."""
    match = _VERSION.match(version)
    if match is None:
        return (3, 0, 0, version)
    major = int(match.group(1))
    stage = {None: 0, "beta": 1, "alpha": 2}[match.group(2)]
    minor = int(match.group(3) or 0)
    return (stage, -major, -minor, version)


@dataclasses.dataclass
class ResourceDef:
    group: str
    version: str
    plural: str
    kind: str
    singular: str
    namespaced: bool
    verbs: set[str]
    short_names: set[str]
    categories: set[str]
    subresources: set[str]
    storage_version: str
    custom: bool = False
    schema: StructuralSchema | None = None
    printer_columns: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    selectable_fields: list[str] = dataclasses.field(default_factory=list)
    list_map_keys: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    crd_name: str | None = None
    raw_schema: dict[str, Any] | None = None
    storage_group: str | None = None
    storage_plural: str | None = None

    @property
    def resource(self) -> kmock.resource:
        return kmock.resource(self.group, self.version, self.plural)

    @property
    def storage(self) -> kmock.resource:
        """Where the objects live: all versions of a resource share one storage."""
        group = self.group if self.storage_group is None else self.storage_group
        plural = self.storage_plural or self.plural
        return kmock.resource(group, self.storage_version, plural)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def tracks_generation(self) -> bool:
        return self.custom or (self.group, self.plural) in _GENERATION_BUILTINS

    @property
    def title(self) -> str:
        """How error messages name the kind: `Widget.example.dev`, `Job.batch`, `Pod`."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    def columns(self) -> tuple[list[dict[str, Any]], Printer]:
        if self.custom:
            return crd_columns(self.printer_columns)
        return builtin_columns(self.group, self.plural)

    def discovery(self) -> Iterator[dict[str, Any]]:
        yield {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": sorted(self.verbs),
            **({"shortNames": sorted(self.short_names)} if self.short_names else {}),
            **({"categories": sorted(self.categories)} if self.categories else {}),
        }
        for sub in sorted(self.subresources):
            verbs = ["get"] if sub == "log" else ["get", "patch", "update"]
            yield {
                "name": f"{self.plural}/{sub}",
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind if sub != "log" else "Pod",
                "verbs": verbs,
            }


class CRDError(ValueError):
    """A CRD the test server cannot serve (or that a real server would reject)."""


def _list_map_keys(schema: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, list[str]]]:
    if schema.get("x-kubernetes-list-type") == "map":
        yield path, list(schema.get("x-kubernetes-list-map-keys") or [])
    for key, sub in (schema.get("properties") or {}).items():
        yield from _list_map_keys(sub, f"{path}.{key}" if path else key)


def resources_from_crd(crd: Mapping[str, Any]) -> list[ResourceDef]:
    """Every served version of a CRD, with its schema compiled."""
    if crd.get("kind") != "CustomResourceDefinition":
        raise CRDError(f"not a CRD: {crd.get('kind')!r}")
    if crd.get("apiVersion") != "apiextensions.k8s.io/v1":
        raise CRDError(
            f"only apiextensions.k8s.io/v1 CRDs are served, got {crd.get('apiVersion')!r}"
        )
    spec = crd["spec"]
    names = spec["names"]
    group = spec["group"]
    name = crd["metadata"]["name"]
    if name != f"{names['plural']}.{group}":
        raise CRDError(f"metadata.name must be {names['plural']}.{group}, got {name!r}")
    storage = [v["name"] for v in spec["versions"] if v.get("storage")]
    if len(storage) != 1:
        raise CRDError(f"{name}: exactly one version must be the storage version")
    result: list[ResourceDef] = []
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        raw_schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if raw_schema is None:
            raise CRDError(f"{name}/{version['name']}: apiextensions.k8s.io/v1 needs a schema")
        try:
            schema = StructuralSchema(raw_schema)
        except (ValueError, NotImplementedError) as e:
            raise CRDError(f"{name}/{version['name']}: {e}") from e
        subresources = set((version.get("subresources") or {}).keys())
        result.append(
            ResourceDef(
                group=group,
                version=version["name"],
                plural=names["plural"],
                kind=names["kind"],
                singular=names.get("singular") or names["kind"].lower(),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                verbs={
                    "delete",
                    "deletecollection",
                    "get",
                    "list",
                    "patch",
                    "create",
                    "update",
                    "watch",
                },
                short_names=set(names.get("shortNames") or ()),
                categories=set(names.get("categories") or ()),
                subresources=subresources,
                storage_version=storage[0],
                custom=True,
                schema=schema,
                printer_columns=list(version.get("additionalPrinterColumns") or ()),
                selectable_fields=[
                    f["jsonPath"].lstrip(".") for f in version.get("selectableFields") or ()
                ],
                list_map_keys=dict(_list_map_keys(raw_schema)),
                crd_name=name,
                raw_schema=raw_schema,
            )
        )
    return result


def load_crd_documents(paths: Iterable[pathlib.Path | str]) -> list[dict[str, Any]]:
    """All CRDs in files and directories (`*.yaml`, `*.yml`, `*.json`), sorted by path."""
    files: list[pathlib.Path] = []
    for path in map(pathlib.Path, paths):
        if path.is_dir():
            files.extend(
                sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
            )
        elif path.exists():
            files.append(path)
    docs: list[dict[str, Any]] = []
    for file in files:
        with file.open(encoding="utf-8") as f:
            for doc in yaml.safe_load_all(f):
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                    docs.append(doc)
    return docs


@functools.cache
def _bundled_resources() -> tuple[tuple[kmock.resource, kmock.ResourceInfo], ...]:
    """kmock's bundled built-in resources (from a K3s cluster), parsed once per process."""
    resources = kmock.ResourcesArray()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # importlib.resources.read_binary
        resources.load_bundled()
    return tuple((kmock.resource(res), resources[res]) for res in resources)


class Registry:
    """The served resources, indexed by group/version/plural."""

    def __init__(self, resources: kmock.ResourcesArray) -> None:
        self._kmock_resources = resources
        self._defs: dict[tuple[str, str, str], ResourceDef] = {}

    def load_builtins(self) -> None:
        infos = [(res, copy.deepcopy(info)) for res, info in _bundled_resources()]
        for res, info in infos:
            self._kmock_resources[res] = info
        storage_versions: dict[tuple[str, str], str] = {}
        for res, _ in infos:
            key = (res.group or "", res.plural or "")
            current = storage_versions.get(key)
            if current is None or version_priority(res.version or "") < version_priority(current):
                storage_versions[key] = res.version or ""
        for res, info in infos:
            group, version, plural = res.group or "", res.version or "", res.plural or ""
            if group == "metrics.k8s.io":
                continue  # aggregated APIs have no objects of their own
            rdef = ResourceDef(
                group=group,
                version=version,
                plural=plural,
                kind=info.kind or plural.capitalize(),
                singular=info.singular or (info.kind or plural).lower(),
                namespaced=bool(info.namespaced),
                verbs=set(info.verbs),
                short_names=set(info.shortnames),
                categories=set(info.categories),
                subresources=set(info.subresources),
                storage_version=storage_versions[group, plural],
            )
            if (group, plural) == ("events.k8s.io", "events"):
                rdef.storage_group, rdef.storage_plural, rdef.storage_version = "", "events", "v1"
            self._defs[group, version, plural] = rdef

    def add(self, rdef: ResourceDef) -> None:
        self._defs[rdef.group, rdef.version, rdef.plural] = rdef
        self._kmock_resources[rdef.resource] = kmock.ResourceInfo(
            namespaced=rdef.namespaced,
            kind=rdef.kind,
            singular=rdef.singular,
            verbs=rdef.verbs,
            shortnames=rdef.short_names,
            categories=rdef.categories,
            subresources=rdef.subresources,
        )

    def add_crd(self, crd: Mapping[str, Any]) -> list[ResourceDef]:
        defs = resources_from_crd(crd)
        self.remove_crd(crd["metadata"]["name"])
        for rdef in defs:
            self.add(rdef)
        return defs

    def remove_crd(self, crd_name: str) -> None:
        for key, rdef in list(self._defs.items()):
            if rdef.crd_name == crd_name:
                del self._defs[key]
                del self._kmock_resources[rdef.resource]

    def get(self, group: str, version: str, plural: str) -> ResourceDef | None:
        return self._defs.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> ResourceDef | None:
        group, _, version = api_version.rpartition("/")
        for rdef in self._defs.values():
            if (rdef.group, rdef.version, rdef.kind) == (group, version, kind):
                return rdef
        return None

    def all(self) -> list[ResourceDef]:
        return list(self._defs.values())

    def sharing_storage(self, storage: kmock.resource) -> list[ResourceDef]:
        return [rdef for rdef in self._defs.values() if rdef.storage == storage]

    def groups(self) -> dict[str, list[str]]:
        """Group name → served versions, preferred version first."""
        groups: dict[str, set[str]] = {}
        for group, version, _ in self._defs:
            groups.setdefault(group, set()).add(version)
        return {g: sorted(v, key=version_priority) for g, v in sorted(groups.items())}

    def in_group_version(self, group: str, version: str) -> Sequence[ResourceDef]:
        return [d for (g, v, _), d in sorted(self._defs.items()) if (g, v) == (group, version)]
