"""A tiny CEL evaluator for the `x-kubernetes-validations` rules our CRDs use.

It covers the common Kubernetes validation idioms (transition rules such as
`self == oldSelf`, `has()`, `size()`, string and list helpers, comprehension
macros) and nothing else. A rule that uses anything it does not know fails to
*compile*, so a CRD with an unsupported rule fails loudly when the test server
loads it, rather than passing silently.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any


class CELSyntaxError(ValueError):
    """The rule cannot be parsed or uses something this evaluator does not support."""


class CELEvalError(Exception):
    """A runtime error of a rule (no such key, no matching overload...)."""


Node = tuple[Any, ...]

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|//[^\n]*)
  | (?P<num>0x[0-9a-fA-F]+u?|\d+\.\d*(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\.\d+(?:[eE][+-]?\d+)?|\d+u?)
  | (?P<str>[rR]?(?:'''(?:.|\n)*?'''|\"\"\"(?:.|\n)*?\"\"\"
                 |'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*"))
  | (?P<id>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|&&|\|\||[<>!+\-*/%?:.,()\[\]{}])
    """,
    re.VERBOSE,
)

_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
    "`": "`",
    "?": "?",
}


def _unquote(text: str) -> str:
    raw = text[0] in "rR"
    if raw:
        text = text[1:]
    quote = 3 if text[:3] in ("'''", '"""') else 1
    body = text[quote:-quote]
    if raw:
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char != "\\":
            out.append(char)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt in "uU":
            width = 4 if nxt == "u" else 8
            out.append(chr(int(body[i + 2 : i + 2 + width], 16)))
            i += 2 + width
        elif nxt == "x":
            out.append(chr(int(body[i + 2 : i + 4], 16)))
            i += 4
        else:
            raise CELSyntaxError(f"unsupported escape \\{nxt}")
    return "".join(out)


def _tokenize(text: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise CELSyntaxError(f"unexpected character {text[pos]!r} at {pos} in {text!r}")
        pos = match.end()
        kind = match.lastgroup
        value = match.group()
        if kind == "ws":
            continue
        if kind == "num":
            if value.endswith("u"):
                tokens.append(("lit", int(value[:-1], 0)))
            elif value.startswith("0x"):
                tokens.append(("lit", int(value, 16)))
            elif any(c in value for c in ".eE"):
                tokens.append(("lit", float(value)))
            else:
                tokens.append(("lit", int(value)))
        elif kind == "str":
            tokens.append(("lit", _unquote(value)))
        elif kind == "id":
            if value in ("true", "false"):
                tokens.append(("lit", value == "true"))
            elif value == "null":
                raise CELSyntaxError(
                    "null is not usable in Kubernetes validation rules (null fields are "
                    f"absent): {text!r}"
                )
            elif value == "in":
                tokens.append(("op", "in"))
            else:
                tokens.append(("id", value))
        else:
            tokens.append(("op", value))
    tokens.append(("end", None))
    return tokens


_MACROS = {"all", "exists", "exists_one", "map", "filter"}
_RELATIONS = ("==", "!=", "<", "<=", ">", ">=", "in")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self) -> tuple[str, Any]:
        return self.tokens[self.pos]

    def take(self) -> tuple[str, Any]:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def accept(self, op: str) -> bool:
        if self.peek() == ("op", op):
            self.pos += 1
            return True
        return False

    def expect(self, op: str) -> None:
        if not self.accept(op):
            raise CELSyntaxError(f"expected {op!r} at token {self.peek()!r} in {self.text!r}")

    def parse(self) -> Node:
        node = self.expr()
        if self.peek()[0] != "end":
            raise CELSyntaxError(f"unexpected {self.peek()!r} in {self.text!r}")
        return node

    def expr(self) -> Node:
        cond = self.or_()
        if self.accept("?"):
            then = self.or_()
            self.expect(":")
            other = self.expr()
            return ("cond", cond, then, other)
        return cond

    def or_(self) -> Node:
        node = self.and_()
        while self.accept("||"):
            node = ("or", node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.relation()
        while self.accept("&&"):
            node = ("and", node, self.relation())
        return node

    def relation(self) -> Node:
        node = self.additive()
        while self.peek()[0] == "op" and self.peek()[1] in _RELATIONS:
            op = self.take()[1]
            node = ("bin", op, node, self.additive())
        return node

    def additive(self) -> Node:
        node = self.multiplicative()
        while self.peek()[0] == "op" and self.peek()[1] in ("+", "-"):
            op = self.take()[1]
            node = ("bin", op, node, self.multiplicative())
        return node

    def multiplicative(self) -> Node:
        node = self.unary()
        while self.peek()[0] == "op" and self.peek()[1] in ("*", "/", "%"):
            op = self.take()[1]
            node = ("bin", op, node, self.unary())
        return node

    def unary(self) -> Node:
        if self.accept("!"):
            return ("not", self.unary())
        if self.accept("-"):
            return ("neg", self.unary())
        return self.member()

    def args(self) -> list[Node]:
        args: list[Node] = []
        if not self.accept(")"):
            args.append(self.expr())
            while self.accept(","):
                args.append(self.expr())
            self.expect(")")
        return args

    def member(self) -> Node:
        node = self.primary()
        while True:
            if self.accept("."):
                kind, name = self.take()
                if kind != "id":
                    raise CELSyntaxError(f"expected a field name after '.' in {self.text!r}")
                if self.accept("("):
                    if name in _MACROS:
                        node = self.macro(name, node)
                    else:
                        node = ("call", name, node, self.args())
                else:
                    node = ("sel", node, name)
            elif self.accept("["):
                index = self.expr()
                self.expect("]")
                node = ("idx", node, index)
            else:
                return node

    def macro(self, name: str, target: Node) -> Node:
        kind, var = self.take()
        if kind != "id":
            raise CELSyntaxError(f"{name}() needs a variable name in {self.text!r}")
        self.expect(",")
        body = self.expr()
        self.expect(")")
        return ("macro", name, target, var, body)

    def primary(self) -> Node:
        kind, value = self.take()
        if kind == "lit":
            return ("lit", value)
        if kind == "id":
            if self.accept("("):
                if value == "has":
                    arg = self.expr()
                    self.expect(")")
                    if arg[0] != "sel":
                        raise CELSyntaxError(f"has() needs a field selection in {self.text!r}")
                    return ("has", arg)
                return ("call", value, None, self.args())
            return ("id", value)
        if (kind, value) == ("op", "("):
            node = self.expr()
            self.expect(")")
            return node
        if (kind, value) == ("op", "["):
            items: list[Node] = []
            if not self.accept("]"):
                items.append(self.expr())
                while self.accept(","):
                    if self.peek() == ("op", "]"):
                        break
                    items.append(self.expr())
                self.expect("]")
            return ("list", items)
        if (kind, value) == ("op", "{"):
            pairs: list[tuple[Node, Node]] = []
            if not self.accept("}"):
                while True:
                    key = self.expr()
                    self.expect(":")
                    pairs.append((key, self.expr()))
                    if not self.accept(","):
                        break
                self.expect("}")
            return ("map", pairs)
        raise CELSyntaxError(f"unexpected {value!r} in {self.text!r}")


def _size(value: Any) -> int:
    if isinstance(value, str | bytes | list | dict):
        return len(value)
    raise CELEvalError(f"no such overload: size({_type_name(value)})")


def _str_method(fn: Callable[..., Any]) -> Callable[..., Any]:
    def method(target: Any, *args: Any) -> Any:
        if not isinstance(target, str) or not all(isinstance(a, str | int) for a in args):
            raise CELEvalError(f"no such overload for {fn.__name__} on {_type_name(target)}")
        return fn(target, *args)

    method.__name__ = fn.__name__
    return method


def _to_int(value: Any) -> int:
    try:
        if isinstance(value, bool):
            raise CELEvalError("no such overload: int(bool)")
        return int(value)
    except (TypeError, ValueError) as e:
        raise CELEvalError(f"cannot convert {value!r} to int") from e


def _to_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise CELEvalError(f"no such overload: string({_type_name(value)})")


def _list_method(fn: Callable[[list[Any]], Any]) -> Callable[..., Any]:
    def method(target: Any) -> Any:
        if not isinstance(target, list):
            raise CELEvalError(f"no such overload for {fn.__name__} on {_type_name(target)}")
        try:
            return fn(target)
        except (TypeError, ValueError) as e:
            raise CELEvalError(str(e)) from e

    return method


# Receiver-style methods (`x.f(...)`) and global functions (`f(x, ...)`), by name.
_METHODS: dict[str, Callable[..., Any]] = {
    "size": _size,
    "matches": _str_method(lambda s, pattern: re.search(pattern, s) is not None),
    "startsWith": _str_method(lambda s, prefix: s.startswith(prefix)),
    "endsWith": _str_method(lambda s, suffix: s.endswith(suffix)),
    "contains": _str_method(lambda s, part: part in s),
    "lowerAscii": _str_method(lambda s: s.lower()),
    "upperAscii": _str_method(lambda s: s.upper()),
    "trim": _str_method(lambda s: s.strip()),
    "indexOf": _str_method(lambda s, part: s.find(part)),
    "lastIndexOf": _str_method(lambda s, part: s.rfind(part)),
    "replace": _str_method(lambda s, old, new: s.replace(old, new)),
    "split": _str_method(lambda s, sep: s.split(sep)),
    "substring": _str_method(lambda s, start, end=None: s[start:end]),
    "join": lambda items, sep="": sep.join(items),
    "isSorted": _list_method(lambda items: items == sorted(items)),
    "sum": _list_method(sum),
    "min": _list_method(min),
    "max": _list_method(max),
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "size": _size,
    "matches": lambda s, pattern: _METHODS["matches"](s, pattern),
    "int": _to_int,
    "uint": _to_int,
    "double": lambda v: float(v),
    "string": _to_string,
}


def _type_name(value: Any) -> str:
    match value:
        case None:
            return "null_type"
        case bool():
            return "bool"
        case int():
            return "int"
        case float():
            return "double"
        case str():
            return "string"
        case list():
            return "list"
        case dict():
            return "map"
    return type(value).__name__


class Program:
    """A compiled rule: parse once at CRD load, evaluate per request."""

    def __init__(self, rule: str, *, variables: Sequence[str] = ("self", "oldSelf")) -> None:
        self.rule = rule
        self.ast = _Parser(rule).parse()
        self.identifiers: set[str] = set()
        self._check(self.ast, set(variables))

    @property
    def uses_old_self(self) -> bool:
        return "oldSelf" in self.identifiers

    def _check(self, node: Node, scope: set[str]) -> None:
        kind = node[0]
        if kind == "id":
            if node[1] not in scope:
                raise CELSyntaxError(f"undeclared reference to {node[1]!r} in {self.rule!r}")
            self.identifiers.add(node[1])
        elif kind == "call":
            _, name, target, args = node
            table = _METHODS if target is not None else _FUNCTIONS
            if name not in table:
                raise CELSyntaxError(
                    f"function {name!r} is not supported by the test server's CEL evaluator"
                    f" (rule {self.rule!r}); extend tests/support/kube/cel.py"
                )
            if target is not None:
                self._check(target, scope)
            for arg in args:
                self._check(arg, scope)
        elif kind == "macro":
            _, _, target, var, body = node
            self._check(target, scope)
            self._check(body, scope | {var})
        elif kind == "list":
            for item in node[1]:
                self._check(item, scope)
        elif kind == "map":
            for key, value in node[1]:
                self._check(key, scope)
                self._check(value, scope)
        elif kind != "lit":
            for child in node[1:]:
                if isinstance(child, tuple):
                    self._check(child, scope)

    def evaluate(self, variables: Mapping[str, Any]) -> Any:
        return _eval(self.ast, dict(variables))


def _eval(node: Node, env: dict[str, Any]) -> Any:
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "id":
        return env[node[1]]
    if kind == "sel":
        target = _eval(node[1], env)
        if not isinstance(target, dict):
            raise CELEvalError(f"no such overload: field selection on {_type_name(target)}")
        if node[2] not in target:
            raise CELEvalError(f"no such key: {node[2]}")
        return target[node[2]]
    if kind == "has":
        _, (_, target_node, field) = node
        target = _eval(target_node, env)
        if not isinstance(target, dict):
            raise CELEvalError(f"no such overload: has() on {_type_name(target)}")
        return field in target
    if kind == "idx":
        target = _eval(node[1], env)
        index = _eval(node[2], env)
        try:
            if isinstance(target, list) and (isinstance(index, bool) or not isinstance(index, int)):
                raise TypeError
            return target[index]
        except (KeyError, IndexError, TypeError) as e:
            raise CELEvalError(f"no such key or index: {index!r}") from e
    if kind == "not":
        value = _eval(node[1], env)
        if not isinstance(value, bool):
            raise CELEvalError(f"no such overload: !{_type_name(value)}")
        return not value
    if kind == "neg":
        value = _eval(node[1], env)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CELEvalError(f"no such overload: -{_type_name(value)}")
        return -value
    if kind in ("and", "or"):
        return _logical(kind, node[1], node[2], env)
    if kind == "cond":
        cond = _eval(node[1], env)
        if not isinstance(cond, bool):
            raise CELEvalError("no matching overload for the conditional operator")
        return _eval(node[2] if cond else node[3], env)
    if kind == "bin":
        return _binary(node[1], _eval(node[2], env), _eval(node[3], env))
    if kind == "list":
        return [_eval(item, env) for item in node[1]]
    if kind == "map":
        return {_eval(k, env): _eval(v, env) for k, v in node[1]}
    if kind == "call":
        _, name, target, args = node
        values = [_eval(arg, env) for arg in args]
        if target is None:
            return _FUNCTIONS[name](*values)
        return _METHODS[name](_eval(target, env), *values)
    if kind == "macro":
        return _macro(node, env)
    raise CELEvalError(f"unsupported node {kind}")


def _logical(kind: str, left: Node, right: Node, env: dict[str, Any]) -> bool:
    decisive = kind == "or"  # the value that short-circuits
    try:
        lvalue = _eval(left, env)
        if not isinstance(lvalue, bool):
            raise CELEvalError(f"no such overload: {_type_name(lvalue)} {kind} ...")
    except CELEvalError:
        rvalue = _eval(right, env)  # CEL is commutative: an error on one side may be absorbed
        if isinstance(rvalue, bool) and rvalue == decisive:
            return rvalue
        raise
    if lvalue is decisive:
        return decisive
    rvalue = _eval(right, env)
    if not isinstance(rvalue, bool):
        raise CELEvalError(f"no such overload: ... {kind} {_type_name(rvalue)}")
    return rvalue


def _binary(op: str, a: Any, b: Any) -> Any:
    if op == "==":
        return _equal(a, b)
    if op == "!=":
        return not _equal(a, b)
    if op == "in":
        if isinstance(b, list):
            return any(_equal(a, item) for item in b)
        if isinstance(b, dict):
            return a in b
        raise CELEvalError(f"no such overload: {_type_name(a)} in {_type_name(b)}")
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
    same = type(a) is type(b) and isinstance(a, str | bool | list)
    if op in ("<", "<=", ">", ">="):
        if not (numeric or (same and not isinstance(a, list))):
            raise CELEvalError(f"no such overload: {_type_name(a)} {op} {_type_name(b)}")
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
    if op == "+" and (numeric or (same and isinstance(a, str | list))):
        return a + b
    if numeric and op in ("-", "*"):
        return a - b if op == "-" else a * b
    if numeric and op in ("/", "%"):
        if b == 0:
            raise CELEvalError("division by zero" if op == "/" else "modulus by zero")
        if isinstance(a, int) and isinstance(b, int):
            quotient = abs(a) // abs(b) * (1 if (a >= 0) == (b >= 0) else -1)
            return quotient if op == "/" else a - b * quotient
        return a / b if op == "/" else a % b
    raise CELEvalError(f"no such overload: {_type_name(a)} {op} {_type_name(b)}")


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return bool(a == b)


def _macro(node: Node, env: dict[str, Any]) -> Any:
    _, name, target_node, var, body = node
    target = _eval(target_node, env)
    if isinstance(target, dict):
        items = list(target)
    elif isinstance(target, list):
        items = target
    else:
        raise CELEvalError(f"no such overload: {name}() on {_type_name(target)}")
    results = [(item, _eval(body, {**env, var: item})) for item in items]
    predicate = name in ("all", "exists", "exists_one", "filter")
    if predicate and not all(isinstance(result, bool) for _, result in results):
        raise CELEvalError(f"{name}() predicate must be a bool")
    if name == "all":
        return all(result for _, result in results)
    if name == "exists":
        return any(result for _, result in results)
    if name == "exists_one":
        return sum(1 for _, result in results if result) == 1
    if name == "filter":
        return [item for item, result in results if result]
    return [result for _, result in results]  # map
