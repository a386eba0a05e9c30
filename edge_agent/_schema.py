"""TOML tables read into frozen dataclasses by their fields: the rules are field metadata, one walker reads all.

A dataclass field's type says what its TOML value must be (``str``, ``int``,
``float``, a ``Literal``, ``X | None``, another dataclass for a table, a
``tuple`` for an array), its default whether it may be left out, and
:func:`setting` in its metadata anything more: its TOML key, a bound, a
check, or a reader of its own for values no type describes (a link preset
name or table). :class:`Reader` walks a table by those fields, noting every
problem with its field path (``groups[1].count: must be positive, not 0``)
instead of stopping at the first, and refuses unknown keys, so that a
misspelt key never falls back to a default silently.

Reading gives the values found, by field name (an array keeps its items in
place, :data:`NOT_READ` where one could not be read), and the problems; a
caller checks what spans fields or tables on those values, then builds the
dataclasses with :func:`build` once there is no problem.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
import types
import typing
from typing import TYPE_CHECKING, Any, Literal

from protocol.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping
    from pathlib import Path

_METADATA = "edgecut.setting"
NOT_READ: Any = object()
"""What a reader of its own returns for a value it noted a problem with."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Setting:
    """How one field is read, beyond what its type and default say.

    Attributes:
        key: Its TOML key (default: the field's name).
        positive: The number must be above zero.
        check: A problem with the value read, in words, or ``None``.
        items: How each item of an array is read.
        expected: What the value must be, for the problem when it is not
            (default: from the type).
        missing: The problem when a field without a default is left out.
        default_from: The default when left out, from the table's other values.
        read: Reads the raw value itself as ``read(reader, value, path)``,
            returning :data:`NOT_READ` after noting a problem.
    """

    key: str | None = None
    positive: bool = False
    check: Callable[[Any], str | None] | None = None
    items: Setting | None = None
    expected: str | None = None
    missing: str = "is required"
    default_from: Callable[[Mapping[str, Any]], Any] | None = None
    read: Callable[[Reader, Any, str], Any] | None = None


def setting(**rules: Any) -> dict[str, Setting]:  # noqa: ANN401 - Setting's own fields
    """A field's metadata: ``dataclasses.field(default=1, metadata=setting(positive=True))``."""
    return {_METADATA: Setting(**rules)}


def _setting_of(field: dataclasses.Field[Any]) -> Setting:
    found = field.metadata.get(_METADATA)
    return found if isinstance(found, Setting) else Setting()


class Reader:
    """Reads TOML values into the values of dataclass fields, noting every problem.

    Args:
        directory: Where relative paths in the file start (``None``: the working directory).
    """

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self.problems: list[str] = []

    def problem(self, path: str, message: str) -> None:
        """Note a problem at ``path``."""
        self.problems.append(f"{path}: {message}")

    def has_problem(self, path: str) -> bool:
        """Whether a problem at ``path`` (or within it) has been noted."""
        return any(problem.startswith((f"{path}:", f"{path}.", f"{path}[")) for problem in self.problems)

    def table(self, cls: type, raw: object, path: str = "", *, expected: str = "a table") -> dict[str, Any] | None:
        """The values of ``cls``'s fields found in the table ``raw``, by field name (left-out ones absent).

        Nested tables are read into nested dicts, arrays into lists.
        ``None`` when ``raw`` is not a table.
        """
        if not isinstance(raw, dict):
            self.problem(path, f"must be {expected}")
            return None
        fields = {_setting_of(field).key or field.name: field for field in dataclasses.fields(cls)}
        for key in raw:
            if key not in fields:
                self.problem(_join(path, key), f"unknown key; known: {', '.join(sorted(fields))}")
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for key, field in fields.items():
            rules = _setting_of(field)
            if key in raw:
                value = self.value(hints[field.name], raw[key], _join(path, key), rules)
                if value is not NOT_READ:
                    values[field.name] = value
            elif rules.default_from is not None:
                values[field.name] = rules.default_from(raw)
            elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                self.problem(_join(path, key), rules.missing)
        return values

    def value(self, hint: Any, raw: object, path: str, rules: Setting) -> Any:  # noqa: ANN401 - as the hint says
        """One value of type ``hint``; :data:`NOT_READ` after noting its problem."""
        if rules.read is not None:
            value = rules.read(self, raw, path)
        else:
            value = self._typed(_optional(hint), raw, path, rules)
        if value is NOT_READ:
            return NOT_READ
        problem = None
        if rules.positive and value <= 0:
            problem = f"must be positive, not {raw!r}"
        elif rules.check is not None:
            problem = rules.check(value)
        if problem is not None:
            self.problem(path, problem)
            return NOT_READ
        return value

    def _typed(self, hint: Any, raw: object, path: str, rules: Setting) -> Any:  # noqa: ANN401 - as the hint says
        origin = typing.get_origin(hint)
        if dataclasses.is_dataclass(hint):
            values = self.table(typing.cast("type", hint), raw, path, expected=rules.expected or "a table")
            return NOT_READ if values is None else values
        if origin is tuple:
            return self._array(typing.get_args(hint)[0], raw, path, rules)
        if origin is Literal:
            problem = None if raw in typing.get_args(hint) else f"must be one of {', '.join(typing.get_args(hint))}"
        else:
            problem = None if _is(raw, hint) else f"must be {rules.expected or _NAMES[hint]}"
        if problem is not None:
            self.problem(path, f"{problem}, not {raw!r}")
            return NOT_READ
        return float(raw) if hint is float else raw  # type: ignore[arg-type]  # a number, checked

    def _array(self, hint: Any, raw: object, path: str, rules: Setting) -> Any:  # noqa: ANN401 - as the hint says
        if not isinstance(raw, list):
            self.problem(path, f"must be {rules.expected or 'a list'}")
            return NOT_READ
        items = rules.items or Setting()
        return [self.value(hint, item, f"{path}[{index}]", items) for index, item in enumerate(raw)]  # NOT_READ kept


_NAMES = {str: "a non-empty string", int: "an integer", float: "a number", bool: "true or false"}


def _is(raw: object, hint: Any) -> bool:  # noqa: ANN401 - a type
    if hint is bool or isinstance(raw, bool):
        return hint is bool and isinstance(raw, bool)  # TOML's true is no number
    if hint is str:
        return isinstance(raw, str) and bool(raw)
    if hint is int:
        return isinstance(raw, int)
    return isinstance(raw, int | float) and not math.isinf(raw)


def _optional(hint: Any) -> Any:  # noqa: ANN401 - a type
    """``X`` of ``X | None`` (TOML has no null: a value given is an ``X``)."""
    if isinstance(hint, types.UnionType):
        others = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(others) == 1:
            return others[0]
    return hint


def build(cls: type, values: Mapping[str, Any]) -> Any:  # noqa: ANN401 - an instance of cls
    """``cls`` from the values :meth:`Reader.table` read (left-out fields take their defaults)."""
    hints = typing.get_type_hints(cls)
    arguments = {}
    for name, value in values.items():
        hint = _optional(hints[name])
        if typing.get_origin(hint) is tuple:
            item = typing.get_args(hint)[0]
            arguments[name] = tuple(_built(item, v) for v in value)
        else:
            arguments[name] = _built(hint, value)
    return cls(**arguments)


def _built(hint: Any, value: Any) -> Any:  # noqa: ANN401 - as the hint says
    """A table read into a dict becomes its dataclass; anything else (a reader's own object too) stays."""
    return build(typing.cast("type", hint), value) if isinstance(value, dict) else value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


_HEADER_LINE = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.-]+)\s*\]\]?\s*(#.*)?$")
_KEY_LINE = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")
_PROBLEM_PATH = re.compile(r"^([A-Za-z0-9_.\[\]-]+): ")
_INDEX = re.compile(r"\[\d+\]$")
_TOML_AT = re.compile(r" \(at (?:line (\d+), column (\d+)|end of document)\)$")
_UNFINISHED = ("Unclosed", "Unterminated")
"""tomllib's messages for a value left open: it notices where the next statement begins."""


def _statements(text: str) -> Iterator[tuple[int, str]]:
    """The line and field path of each table header and ``key = value`` in ``text`` (``groups[1].link``)."""
    counts: dict[str, int] = {}
    table = ""
    for number, line in enumerate(text.splitlines(), start=1):
        if header := _HEADER_LINE.match(line):
            name = header[2]
            if header[1] == "[[":
                index = counts[name] = counts.get(name, -1) + 1
                table = f"{name}[{index}]"
            else:
                table = name
            yield number, table
        elif key := _KEY_LINE.match(line):
            yield number, f"{table}.{key[1]}" if table else key[1]


def with_lines(problems: Iterable[str], text: str) -> list[str]:
    """Each of ``problems`` (``path: message``) prefixed with the line of its field in ``text``, sorted by line.

    A problem whose field has no line of its own takes its table's (a key
    left out), or its array's (an item); one with no line at all comes last.
    """
    lines: dict[str, int] = {}
    for number, path in _statements(text):
        lines.setdefault(path, number)
    located = [(_line_of(problem, lines), problem) for problem in problems]
    located.sort(key=lambda item: math.inf if item[0] is None else item[0])
    return [problem if line is None else f"line {line}: {problem}" for line, problem in located]


def _line_of(problem: str, lines: dict[str, int]) -> int | None:
    """The line of ``problem``'s field, or of the nearest array or table around it, when known."""
    match = _PROBLEM_PATH.match(problem)
    path = match[1] if match else ""
    while path:
        if path in lines:
            return lines[path]
        path = _INDEX.sub("", path) if _INDEX.search(path) else path.rpartition(".")[0]
    return None


def syntax_error(text: str, error: ValueError) -> str:
    """The TOML syntax ``error`` in ``text`` as ``line N: field: message``, at the line of the statement it is in.

    tomllib notices a value left open (an array without its ``]``) only where
    the next statement begins: such an error is put back on the line the
    value was left open on.
    """
    message = str(error)
    at = _TOML_AT.search(message)
    if at is None:
        return message
    message = message[: at.start()]
    lines = text.splitlines()
    number = int(at[1]) if at[1] else len(lines) + 1
    if number > len(lines) or (at[2] == "1" and message.startswith(_UNFINISHED)):
        number = next(
            (n for n in range(number - 1, 0, -1) if lines[n - 1].strip() and not lines[n - 1].lstrip().startswith("#")),
            number,
        )
    before = [(line, path) for line, path in _statements(text) if line <= number]
    field = f"{before[-1][1]}: " if before else ""
    return f"line {number}: {field}{message}"


def read_toml(path: Path, what: str) -> tuple[dict[str, Any], str]:
    """The TOML file at ``path`` as the dict ``tomllib`` gives, and its text (for :func:`with_lines`).

    Raises:
        ConfigError: The file cannot be read or is not TOML (naming ``what``
            it should be, and the line of a syntax error).
    """
    try:
        text = path.read_text(encoding="utf-8")
        return tomllib.loads(text), text
    except OSError as exc:
        msg = f"cannot read {what} {path}: {exc.strerror or exc}"
        raise ConfigError(msg) from exc
    except tomllib.TOMLDecodeError as exc:
        msg = f"{path}: not TOML: {syntax_error(text, exc)}"
        raise ConfigError(msg) from exc
