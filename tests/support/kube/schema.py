"""Structural-schema handling of custom resources, as the API server does it.

On every write of a custom resource (main resource or `/status`), the real server
prunes the fields the CRD's `openAPIV3Schema` does not declare, drops `null`s of
non-nullable fields, applies `default`s, then validates (OpenAPI keywords, list
types, then the CEL `x-kubernetes-validations`) and rejects the object with 422.
This module does the same, with the same error wording, for the keywords a
structural schema may use.
"""

from __future__ import annotations

import base64
import binascii
import copy
import dataclasses
import datetime
import re
import uuid
from collections.abc import Mapping
from typing import Any

from .cel import CELEvalError, Program
from .errors import _MISSING, FieldError

_TYPE_NAMES = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
}

# ObjectMeta fields that survive decoding; anything else under metadata is dropped.
OBJECT_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


@dataclasses.dataclass
class _Rule:
    program: Program
    message: str | None
    message_expression: Program | None
    reason: str | None
    field_path: str | None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class SchemaNode:
    """One compiled node of a structural schema."""

    def __init__(self, raw: Mapping[str, Any], where: str = "") -> None:
        self.raw = raw
        self.type: str | None = raw.get("type")
        self.nullable: bool = bool(raw.get("nullable", False))
        self.preserve_unknown: bool = bool(raw.get("x-kubernetes-preserve-unknown-fields", False))
        self.int_or_string: bool = bool(raw.get("x-kubernetes-int-or-string", False))
        self.embedded: bool = bool(raw.get("x-kubernetes-embedded-resource", False))
        self.properties: dict[str, SchemaNode] = {
            key: SchemaNode(sub, _join(where, key))
            for key, sub in (raw.get("properties") or {}).items()
        }
        additional = raw.get("additionalProperties")
        self.additional: SchemaNode | bool | None = (
            SchemaNode(additional, f"{where}[*]") if isinstance(additional, Mapping) else additional
        )
        self.items: SchemaNode | None = (
            SchemaNode(raw["items"], f"{where}[*]")
            if isinstance(raw.get("items"), Mapping)
            else None
        )
        self.required: list[str] = list(raw.get("required") or [])
        self.enum: list[Any] | None = raw.get("enum")
        self.pattern = re.compile(raw["pattern"]) if "pattern" in raw else None
        self.list_type: str | None = raw.get("x-kubernetes-list-type")
        self.list_map_keys: list[str] = list(raw.get("x-kubernetes-list-map-keys") or [])
        self.has_default = "default" in raw
        self.default = raw.get("default")
        self.all_of = [SchemaNode(s, where) for s in raw.get("allOf") or []]
        self.any_of = [SchemaNode(s, where) for s in raw.get("anyOf") or []]
        self.one_of = [SchemaNode(s, where) for s in raw.get("oneOf") or []]
        self.not_: SchemaNode | None = SchemaNode(raw["not"], where) if "not" in raw else None
        self.rules: list[_Rule] = []
        for rule in raw.get("x-kubernetes-validations") or []:
            if rule.get("optionalOldSelf"):
                raise NotImplementedError(
                    f"optionalOldSelf is not supported by the test server (at {where or '<root>'})"
                )
            self.rules.append(
                _Rule(
                    program=Program(rule["rule"]),
                    message=rule.get("message"),
                    message_expression=(
                        Program(rule["messageExpression"])
                        if rule.get("messageExpression")
                        else None
                    ),
                    reason=rule.get("reason"),
                    field_path=rule.get("fieldPath"),
                )
            )

    @property
    def type_name(self) -> str:
        return self.type or ("object" if self.properties else "")


@dataclasses.dataclass
class Admission:
    """The result of admitting an object: its pruned/defaulted form and what went wrong."""

    obj: dict[str, Any]
    unknown_fields: list[str]
    errors: list[FieldError]


class StructuralSchema:
    def __init__(self, openapi_v3_schema: Mapping[str, Any]) -> None:
        self.root = SchemaNode(openapi_v3_schema)

    def admit(self, obj: Mapping[str, Any], old: Mapping[str, Any] | None = None) -> Admission:
        result: dict[str, Any] = copy.deepcopy(dict(obj))
        unknown: list[str] = []
        for key in list(result):
            if key in ("apiVersion", "kind"):
                continue
            if key == "metadata":
                meta = result["metadata"] if isinstance(result["metadata"], dict) else {}
                for mkey in [k for k in meta if k not in OBJECT_META_FIELDS]:
                    unknown.append(f"metadata.{mkey}")
                    del meta[mkey]
                continue
            sub = self.root.properties.get(key)
            if sub is None and not self.root.preserve_unknown:
                unknown.append(key)
                del result[key]
            elif result[key] is None and not (sub and sub.nullable):
                del result[key]
            elif sub is not None:
                result[key] = _prune(result[key], sub, key, unknown)
        for key, sub in self.root.properties.items():
            if key not in ("apiVersion", "kind", "metadata"):
                if key not in result and sub.has_default:
                    result[key] = copy.deepcopy(sub.default)
                if key in result:
                    result[key] = _default(result[key], sub)

        errors: list[FieldError] = []
        for key, sub in self.root.properties.items():
            if key in ("apiVersion", "kind", "metadata"):
                continue
            if key in result:
                old_value = old.get(key, _MISSING) if old is not None else _MISSING
                _validate(result[key], old_value, sub, key, errors)
            elif key in self.root.required:
                errors.append(FieldError("Required", key))
        if not any(e.kind == "TypeInvalid" for e in errors) and self.root.rules:
            _run_rules(result, old if old is not None else _MISSING, self.root, "", errors)
        return Admission(result, unknown, errors)


def _prune(value: Any, node: SchemaNode, path: str, unknown: list[str]) -> Any:
    if isinstance(value, dict):
        keep = {"apiVersion", "kind", "metadata"} if node.embedded else set()
        result: dict[str, Any] = {}
        for key, sub_value in value.items():
            sub = node.properties.get(key)
            if sub is None and isinstance(node.additional, SchemaNode):
                sub = node.additional
            sub_path = f"{path}[{key}]" if sub is node.additional else _join(path, key)
            if sub is not None:
                if sub_value is None and not sub.nullable:
                    continue  # non-nullable nulls are pruned (and maybe defaulted)
                result[key] = _prune(sub_value, sub, sub_path, unknown)
            elif node.preserve_unknown or node.additional is True or key in keep:
                result[key] = sub_value
            else:
                unknown.append(_join(path, key))
        return result
    if isinstance(value, list) and node.items is not None:
        return [_prune(item, node.items, f"{path}[{i}]", unknown) for i, item in enumerate(value)]
    return value


def _default(value: Any, node: SchemaNode) -> Any:
    if isinstance(value, dict):
        for key, sub in node.properties.items():
            if key not in value and sub.has_default:
                value[key] = copy.deepcopy(sub.default)
        for key in list(value):
            child = node.properties.get(key)
            if child is None and isinstance(node.additional, SchemaNode):
                child = node.additional
            if child is not None:
                value[key] = _default(value[key], child)
    elif isinstance(value, list) and node.items is not None:
        return [_default(item, node.items) for item in value]
    return value


def _type_ok(value: Any, node: SchemaNode) -> bool:
    if node.int_or_string:
        return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
    match node.type:
        case "object":
            return isinstance(value, dict)
        case "array":
            return isinstance(value, list)
        case "string":
            return isinstance(value, str)
        case "boolean":
            return isinstance(value, bool)
        case "integer":
            if isinstance(value, float):
                return value.is_integer()
            return isinstance(value, int) and not isinstance(value, bool)
        case "number":
            return isinstance(value, int | float) and not isinstance(value, bool)
    return True


def _format_ok(value: str, fmt: str) -> bool:
    try:
        match fmt:
            case "date-time":
                datetime.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
                return "T" in value.upper()
            case "date":
                datetime.date.fromisoformat(value)
            case "byte":
                base64.b64decode(value, validate=True)
            case "uuid":
                uuid.UUID(value)
    except (ValueError, binascii.Error):
        return False
    return True


def _validate(value: Any, old: Any, node: SchemaNode, path: str, errors: list[FieldError]) -> None:
    start = len(errors)
    if value is None:
        if not node.nullable:
            errors.append(
                FieldError(
                    "TypeInvalid",
                    path,
                    "null",
                    f'{path} in body must be of type {node.type}: "null"',
                )
            )
        elif node.enum is not None and None not in node.enum:
            # kube-openapi checks `enum` even for null: a nullable enum must list null itself.
            errors.append(FieldError("NotSupported", path, None, supported=node.enum))
        return
    if not _type_ok(value, node):
        expected = "integer,string" if node.int_or_string else node.type
        errors.append(
            FieldError(
                "TypeInvalid",
                path,
                json_type(value),
                f'{path} in body must be of type {expected}: "{json_type(value)}"',
            )
        )
        return

    if node.enum is not None and not any(value == e and type(value) is type(e) for e in node.enum):
        errors.append(FieldError("NotSupported", path, value, supported=node.enum))
    if isinstance(value, str):
        raw = node.raw
        if "maxLength" in raw and len(value) > raw["maxLength"]:
            errors.append(
                FieldError("TooLong", path, value, f"may not be more than {raw['maxLength']} bytes")
            )
        if "minLength" in raw and len(value) < raw["minLength"]:
            errors.append(
                FieldError(
                    "Invalid",
                    path,
                    value,
                    f"{path} in body should be at least {raw['minLength']} chars long",
                )
            )
        if node.pattern is not None and not node.pattern.search(value):
            errors.append(
                FieldError(
                    "Invalid", path, value, f"{path} in body should match '{node.pattern.pattern}'"
                )
            )
        fmt = raw.get("format")
        if fmt and not _format_ok(value, fmt):
            errors.append(
                FieldError(
                    "Invalid",
                    path,
                    value,
                    f"{path} in body must be of type {fmt}: {value!r}".replace("'", '"'),
                )
            )
    elif isinstance(value, int | float) and not isinstance(value, bool):
        _validate_number(value, node, path, errors)
    elif isinstance(value, list):
        _validate_array(value, old, node, path, errors)
    elif isinstance(value, dict):
        _validate_object(value, old, node, path, errors)

    for sub in node.all_of:
        _validate(value, old, sub, path, errors)
    if node.any_of and not any(_quiet_ok(value, sub, path) for sub in node.any_of):
        errors.append(FieldError("Invalid", path, value, f"{path} in body must match anyOf"))
    if node.one_of and sum(1 for sub in node.one_of if _quiet_ok(value, sub, path)) != 1:
        errors.append(
            FieldError(
                "Invalid", path, value, f"{path} in body must match exactly one schema in oneOf"
            )
        )
    if node.not_ is not None and _quiet_ok(value, node.not_, path):
        errors.append(FieldError("Invalid", path, value, f"{path} in body must not match schema"))

    if node.rules and not any(e.kind == "TypeInvalid" for e in errors[start:]):
        _run_rules(value, old, node, path, errors)


def _quiet_ok(value: Any, node: SchemaNode, path: str) -> bool:
    errors: list[FieldError] = []
    _validate(value, _MISSING, node, path, errors)
    return not errors


def _validate_number(value: float, node: SchemaNode, path: str, errors: list[FieldError]) -> None:
    raw = node.raw
    if "minimum" in raw:
        if raw.get("exclusiveMinimum") is True and value <= raw["minimum"]:
            errors.append(
                FieldError(
                    "Invalid",
                    path,
                    value,
                    f"{path} in body should be greater than {raw['minimum']}",
                )
            )
        elif value < raw["minimum"]:
            errors.append(
                FieldError(
                    "Invalid",
                    path,
                    value,
                    f"{path} in body should be greater than or equal to {raw['minimum']}",
                )
            )
    if "maximum" in raw:
        if raw.get("exclusiveMaximum") is True and value >= raw["maximum"]:
            errors.append(
                FieldError(
                    "Invalid", path, value, f"{path} in body should be less than {raw['maximum']}"
                )
            )
        elif value > raw["maximum"]:
            errors.append(
                FieldError(
                    "Invalid",
                    path,
                    value,
                    f"{path} in body should be less than or equal to {raw['maximum']}",
                )
            )
    if raw.get("multipleOf") and value % raw["multipleOf"] != 0:
        errors.append(
            FieldError(
                "Invalid",
                path,
                value,
                f"{path} in body should be a multiple of {raw['multipleOf']}",
            )
        )


def _validate_array(
    value: list[Any], old: Any, node: SchemaNode, path: str, errors: list[FieldError]
) -> None:
    raw = node.raw
    if "maxItems" in raw and len(value) > raw["maxItems"]:
        errors.append(
            FieldError("TooMany", path, len(value), f"must have at most {raw['maxItems']} items")
        )
    if "minItems" in raw and len(value) < raw["minItems"]:
        errors.append(
            FieldError(
                "Invalid",
                path,
                len(value),
                f"{path} in body should have at least {raw['minItems']} items",
            )
        )
    if raw.get("uniqueItems") or node.list_type == "set":
        for i, item in enumerate(value):
            if item in value[:i]:
                errors.append(FieldError("Duplicate", f"{path}[{i}]", item))
    old_by_key: dict[tuple[Any, ...], Any] = {}
    if node.list_type == "map" and node.list_map_keys:
        seen: set[tuple[Any, ...]] = set()
        for i, item in enumerate(value):
            if isinstance(item, dict):
                key = tuple(item.get(k) for k in node.list_map_keys)
                if key in seen:
                    shown = {k: item.get(k) for k in node.list_map_keys}
                    errors.append(FieldError("Duplicate", f"{path}[{i}]", str(shown)))
                seen.add(key)
        if isinstance(old, list):
            old_by_key = {
                tuple(item.get(k) for k in node.list_map_keys): item
                for item in old
                if isinstance(item, dict)
            }
    if node.items is not None:
        for i, item in enumerate(value):
            old_item = _MISSING
            if old_by_key and isinstance(item, dict):
                old_item = old_by_key.get(tuple(item.get(k) for k in node.list_map_keys), _MISSING)
            _validate(item, old_item, node.items, f"{path}[{i}]", errors)


def _validate_object(
    value: dict[str, Any], old: Any, node: SchemaNode, path: str, errors: list[FieldError]
) -> None:
    raw = node.raw
    for key in node.required:
        if key not in value:
            errors.append(FieldError("Required", _join(path, key)))
    if "maxProperties" in raw and len(value) > raw["maxProperties"]:
        errors.append(
            FieldError(
                "TooMany", path, len(value), f"must have at most {raw['maxProperties']} items"
            )
        )
    if "minProperties" in raw and len(value) < raw["minProperties"]:
        errors.append(
            FieldError(
                "Invalid",
                path,
                len(value),
                f"{path} in body should have at least {raw['minProperties']} properties",
            )
        )
    old_map = old if isinstance(old, dict) else {}
    for key, sub_value in value.items():
        sub = node.properties.get(key)
        sub_path = _join(path, key)
        if sub is None and isinstance(node.additional, SchemaNode):
            sub, sub_path = node.additional, f"{path}[{key}]"
        if sub is not None:
            _validate(sub_value, old_map.get(key, _MISSING), sub, sub_path, errors)


def _cel_value(value: Any) -> Any:
    """What CEL sees: null-valued fields are absent (`has()` is false for them)."""
    if isinstance(value, dict):
        return {k: _cel_value(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_cel_value(v) for v in value]
    return value


def _run_rules(value: Any, old: Any, node: SchemaNode, path: str, errors: list[FieldError]) -> None:
    for rule in node.rules:
        if rule.program.uses_old_self and old is _MISSING:
            continue  # transition rules apply to updates of correlatable values only
        where = path
        if rule.field_path:
            where = (
                path + rule.field_path
                if rule.field_path.startswith("[")
                else (
                    f"{path}{rule.field_path}"
                    if rule.field_path.startswith(".")
                    else _join(path, rule.field_path)
                )
            )
            where = where.lstrip(".")
        variables = {
            "self": _cel_value(value),
            "oldSelf": None if old is _MISSING else _cel_value(old),
        }
        try:
            ok = rule.program.evaluate(variables)
        except CELEvalError as e:
            errors.append(
                FieldError(
                    "Invalid",
                    where or "<nil>",
                    node.type_name,
                    f"{e} evaluating rule: {rule.program.rule}",
                )
            )
            continue
        if ok is True:
            continue
        if ok is not False:
            errors.append(
                FieldError(
                    "Invalid",
                    where or "<nil>",
                    node.type_name,
                    f"rule did not evaluate to a bool: {rule.program.rule}",
                )
            )
            continue
        message = rule.message or f"failed rule: {rule.program.rule}"
        if rule.message_expression is not None:
            try:
                evaluated = rule.message_expression.evaluate(variables)
                if isinstance(evaluated, str) and evaluated.strip():
                    message = evaluated
            except CELEvalError:
                pass
        match rule.reason:
            case "FieldValueForbidden":
                errors.append(FieldError("Forbidden", where, detail=message))
            case "FieldValueRequired":
                errors.append(FieldError("Required", where, detail=message))
            case "FieldValueDuplicate":
                errors.append(FieldError("Duplicate", where, value=node.type_name))
            case _:
                errors.append(FieldError("Invalid", where or "<nil>", node.type_name, message))
