"""Kubernetes API errors: `Status` bodies and field errors, worded as the real server words them."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

_MISSING: Any = object()

_CAUSE_REASONS = {
    "Required": "FieldValueRequired",
    "NotSupported": "FieldValueNotSupported",
    "Invalid": "FieldValueInvalid",
    "TypeInvalid": "FieldValueTypeInvalid",
    "TooLong": "FieldValueTooLong",
    "TooMany": "FieldValueTooMany",
    "Duplicate": "FieldValueDuplicate",
    "Forbidden": "FieldValueForbidden",
}


def format_value(value: Any) -> str:
    """Format a value the way `field.Error` prints it (Go's %q for strings)."""
    match value:
        case None:
            return '"null"'
        case bool():
            return "true" if value else "false"
        case int() | float():
            return json.dumps(value)
        case str():
            return json.dumps(value, ensure_ascii=False)
        case dict():
            return '"object"'
        case list():
            return '"array"'
    return json.dumps(str(value))


@dataclasses.dataclass
class FieldError:
    kind: str  # one of the keys of _CAUSE_REASONS
    field: str
    value: Any = _MISSING
    detail: str = ""
    supported: Sequence[Any] = ()

    @property
    def body(self) -> str:
        detail = f": {self.detail}" if self.detail else ""
        match self.kind:
            case "Required":
                return f"Required value{detail}"
            case "Forbidden":
                return f"Forbidden{detail}"
            case "Duplicate":
                return f"Duplicate value: {format_value(self.value)}"
            case "NotSupported":
                values = ", ".join(format_value(v) for v in self.supported)
                return f"Unsupported value: {format_value(self.value)}: supported values: {values}"
            case "TooLong":
                return f"Too long{detail}"
            case "TooMany":
                return f"Too many: {format_value(self.value)}{detail}"
        return f"Invalid value: {format_value(self.value)}{detail}"

    @property
    def cause(self) -> dict[str, str]:
        return {"reason": _CAUSE_REASONS[self.kind], "message": self.body, "field": self.field}

    def __str__(self) -> str:
        return f"{self.field}: {self.body}"


class ApiError(Exception):
    """An error response with a `Status` body."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def qualified(plural: str, group: str) -> str:
    return f"{plural}.{group}" if group else plural


def not_found(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{qualified(plural, group)} "{name}" not found',
        {"name": name, "group": group, "kind": plural},
    )


def already_exists(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{qualified(plural, group)} "{name}" already exists',
        {"name": name, "group": group, "kind": plural},
    )


def conflict(plural: str, group: str, name: str, why: str | None = None) -> ApiError:
    why = why or (
        "the object has been modified; please apply your changes to the latest version and "
        "try again"
    )
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(plural, group)} "{name}": {why}',
        {"name": name, "group": group, "kind": plural},
    )


def invalid(kind: str, group: str, name: str, errors: Sequence[FieldError]) -> ApiError:
    messages = [str(error) for error in errors]
    joined = messages[0] if len(messages) == 1 else f"[{', '.join(messages)}]"
    title = f"{kind}.{group}" if group else kind
    return ApiError(
        422,
        "Invalid",
        f'{title} "{name}" is invalid: {joined}',
        {"name": name, "group": group, "kind": kind, "causes": [e.cause for e in errors]},
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unprocessable(message: str) -> ApiError:
    return ApiError(422, "Invalid", message)


def method_not_allowed(
    message: str = "the server does not allow this method on the requested resource",
) -> ApiError:
    return ApiError(405, "MethodNotAllowed", message, {})


def endpoint_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)
