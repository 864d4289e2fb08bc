"""The patch types the API server accepts: JSON merge, JSON (RFC 6902), strategic merge."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import jsonpatch
import jsonpointer

from .errors import ApiError, bad_request, unprocessable

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH_YAML = "application/apply-patch+yaml"
APPLY_PATCH_CBOR = "application/apply-patch+cbor"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: dicts merge recursively, `null` deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: Mapping[str, Any], ops: Any) -> dict[str, Any]:
    """RFC 6902. A failed `test` or an inapplicable op is 422, like the real server."""
    if not isinstance(ops, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    try:
        result = jsonpatch.apply_patch(copy.deepcopy(dict(target)), ops, in_place=False)
    except jsonpatch.JsonPatchTestFailed as e:
        raise unprocessable(
            f"the server rejected our request due to an error in our request: {e}"
        ) from e
    except (jsonpatch.JsonPatchConflict, jsonpointer.JsonPointerException) as e:
        raise unprocessable(
            f"the server rejected our request due to an error in our request: {e}"
        ) from e
    except jsonpatch.InvalidJsonPatch as e:
        raise bad_request(f"invalid JSON patch: {e}") from e
    if not isinstance(result, dict):
        raise unprocessable("the patched object is not an object")
    return result


# The `patchMergeKey`s of the built-in types, by list field name (good enough across types).
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "conditions": "type",
    "ownerReferences": "uid",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "resourceClaims": "name",
    "topologySpreadConstraints": "topologyKey",
    "containerStatuses": "name",
    "initContainerStatuses": "name",
}
_PRIMITIVE_MERGE = {"finalizers"}


def _merge_key(field: str, items: Sequence[Any]) -> str | None:
    if field == "ports":
        sample = next((i for i in items if isinstance(i, dict)), {})
        return "containerPort" if "containerPort" in sample else "port"
    return _MERGE_KEYS.get(field)


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """A strategic merge patch with the directives kubectl and client libraries send."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    patch = dict(patch)
    directive = patch.pop("$patch", None)
    if directive == "delete":
        return None
    if directive == "replace":
        return {k: v for k, v in copy.deepcopy(patch).items() if not k.startswith("$")}
    retain = patch.pop("$retainKeys", None)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list):
                result[field] = [item for item in result[field] if item not in value]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = copy.deepcopy(value)
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(field: str, current: Any, patch: list[Any]) -> list[Any]:
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    existing: list[Any] = list(current) if isinstance(current, list) else []
    if field in _PRIMITIVE_MERGE:
        return existing + [copy.deepcopy(item) for item in patch if item not in existing]
    key = _merge_key(field, patch)
    if key is None:
        return copy.deepcopy(patch)
    result = copy.deepcopy(existing)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise bad_request(f"map: {item!r} does not contain declared merge key: {key}")
        index = next(
            (
                i
                for i, old in enumerate(result)
                if isinstance(old, dict) and old.get(key) == item[key]
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append(strategic_merge_patch({}, item))
        else:
            result[index] = strategic_merge_patch(result[index], item)
    return result


def merge_by_list_map_keys(
    target: Any, patch: Any, list_keys: Mapping[str, Sequence[str]], path: str = ""
) -> Any:
    """Server-side apply, approximated: a merge, with `x-kubernetes-list-type: map` lists merged
    by their keys (fields no longer applied are not removed; managedFields are not tracked)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        sub_path = f"{path}.{key}" if path else key
        if value is None:
            result.pop(key, None)
        elif (
            isinstance(value, list) and sub_path in list_keys and isinstance(result.get(key), list)
        ):
            keys = list_keys[sub_path]
            merged = copy.deepcopy(result[key])
            for item in value:
                ident = tuple(item.get(k) for k in keys) if isinstance(item, dict) else None
                index = next(
                    (
                        i
                        for i, old in enumerate(merged)
                        if isinstance(old, dict) and tuple(old.get(k) for k in keys) == ident
                    ),
                    None,
                )
                if index is None:
                    merged.append(copy.deepcopy(item))
                else:
                    merged[index] = merge_by_list_map_keys(merged[index], item, {}, "")
            result[key] = merged
        else:
            result[key] = merge_by_list_map_keys(result.get(key), value, list_keys, sub_path)
    return result


def apply_patch(
    content_type: str, target: Mapping[str, Any], body: Any, strategic: bool
) -> dict[str, Any]:
    ctype = content_type.split(";")[0].strip().lower()
    if ctype == JSON_PATCH:
        return json_patch(target, body)
    if not isinstance(body, dict):
        raise bad_request("the patch body must be a JSON object")
    if ctype == MERGE_PATCH:
        result = merge_patch(target, body)
    elif ctype == STRATEGIC_MERGE_PATCH:
        if not strategic:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types "
                "include: application/json-patch+json, application/merge-patch+json, "
                "application/apply-patch+yaml",
            )
        result = strategic_merge_patch(target, body)
    else:
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - accepted media types "
            f"include: application/json-patch+json, application/merge-patch+json, "
            f"application/apply-patch+yaml (got {content_type!r})",
        )
    if not isinstance(result, dict):
        raise unprocessable("the patched object is not an object")
    return result
