"""Label and field selectors, parsed as the API server parses the query parameters."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any


class SelectorError(ValueError):
    """A selector the real server would reject with 400 Bad Request."""


_LABEL_TERM = re.compile(
    r"""^\s*(?P<neg>!)?\s*(?P<key>[A-Za-z0-9./_-]+)\s*
        (?:(?P<op>==|!=|=|\s+in\s+|\s+notin\s+)\s*(?P<value>\([^)]*\)|[A-Za-z0-9._-]*))?\s*$""",
    re.VERBOSE,
)


@dataclasses.dataclass(frozen=True)
class _Requirement:
    key: str
    op: str  # =, !=, in, notin, exists, !exists
    values: frozenset[str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.op:
            case "=":
                return present and value in self.values
            case "!=":
                return not present or value not in self.values
            case "in":
                return present and value in self.values
            case "notin":
                return not present or value not in self.values
            case "exists":
                return present
            case "!exists":
                return not present
        raise AssertionError(self.op)


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not inside the parentheses of `in (...)`."""
    terms: list[str] = []
    depth = 0
    current = ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [term for term in terms if term.strip()]


@dataclasses.dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[_Requirement, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> LabelSelector:
        if not text:
            return cls()
        requirements: list[_Requirement] = []
        for term in _split_terms(text):
            match = _LABEL_TERM.match(term)
            if match is None:
                raise SelectorError(f"unable to parse requirement: {term.strip()!r}")
            key, op, raw = match["key"], (match["op"] or "").strip(), match["value"]
            if match["neg"]:
                if op:
                    raise SelectorError(f"unable to parse requirement: {term.strip()!r}")
                requirements.append(_Requirement(key, "!exists", frozenset()))
            elif not op:
                requirements.append(_Requirement(key, "exists", frozenset()))
            elif op in ("in", "notin"):
                if not raw or not raw.startswith("("):
                    raise SelectorError(f"unable to parse requirement: {term.strip()!r}")
                values = frozenset(v.strip() for v in raw[1:-1].split(",") if v.strip())
                requirements.append(_Requirement(key, op, values))
            else:
                requirements.append(
                    _Requirement(key, "!=" if op == "!=" else "=", frozenset([raw]))
                )
        return cls(tuple(requirements))

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> LabelSelector:
        """Build from a `metav1.LabelSelector` (`matchLabels` and `matchExpressions`)."""
        spec = spec or {}
        requirements = [
            _Requirement(key, "=", frozenset([value]))
            for key, value in (spec.get("matchLabels") or {}).items()
        ]
        for expr in spec.get("matchExpressions") or []:
            op = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}
            requirements.append(
                _Requirement(expr["key"], op[expr["operator"]], frozenset(expr.get("values") or ()))
            )
        return cls(tuple(requirements))

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(req.matches(labels) for req in self.requirements)

    def __str__(self) -> str:
        parts = []
        for req in self.requirements:
            if req.op == "=":
                parts.append(f"{req.key}={next(iter(req.values))}")
            elif req.op == "!=":
                parts.append(f"{req.key}!={next(iter(req.values))}")
            elif req.op in ("in", "notin"):
                parts.append(f"{req.key} {req.op} ({','.join(sorted(req.values))})")
            elif req.op == "exists":
                parts.append(req.key)
            else:
                parts.append(f"!{req.key}")
        return ",".join(parts)


def lookup_field(obj: Mapping[str, Any], path: str) -> str:
    """The string value of a dotted field path, "" when absent (as field selectors see it)."""
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return ""
        value = value[part]
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclasses.dataclass(frozen=True)
class FieldSelector:
    terms: tuple[tuple[str, bool, str], ...] = ()  # (path, equal?, value)

    @classmethod
    def parse(cls, text: str | None, allowed: Callable[[str], bool] | None = None) -> FieldSelector:
        if not text:
            return cls()
        terms: list[tuple[str, bool, str]] = []
        for term in text.split(","):
            term = term.strip()
            if not term:
                continue
            match = re.match(r"^([^=!]+?)\s*(==|!=|=)\s*(.*)$", term)
            if match is None:
                raise SelectorError(f"invalid selector: {term!r}; can't understand {term!r}")
            path, op, value = match.group(1).strip(), match.group(2), match.group(3).strip()
            if allowed is not None and not allowed(path):
                raise SelectorError(f"field label not supported: {path}")
            terms.append((path, op != "!=", value))
        return cls(tuple(terms))

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all((lookup_field(obj, path) == value) == eq for path, eq, value in self.terms)

    def paths(self) -> Iterable[str]:
        return (path for path, _, _ in self.terms)
