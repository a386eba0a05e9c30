"""The TOML walker on a small schema of its own: types, defaults, field metadata, paths and lines."""

from __future__ import annotations

import dataclasses
from typing import Literal

from edge_agent._schema import Reader, Setting, build, setting, with_lines


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Inner:
    size: int = dataclasses.field(default=1, metadata=setting(positive=True))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Outer:
    name: str
    speed_s: float = dataclasses.field(default=1.0, metadata=setting(key="speed"))
    mode: Literal["fast", "slow"] = "fast"
    tags: tuple[str, ...] = dataclasses.field(
        default=(), metadata=setting(items=Setting(check=lambda tag: None if tag.islower() else "must be lower case"))
    )
    inner: Inner = Inner()
    parts: tuple[Inner, ...] = ()
    limit: int | None = None


def test_a_table_is_read_by_its_fields_and_built() -> None:
    reader = Reader()
    raw = {"name": "x", "speed": 2, "mode": "slow", "tags": ["a"], "inner": {"size": 3}, "parts": [{}, {"size": 2}]}
    values = reader.table(Outer, raw)
    assert reader.problems == []
    assert values is not None
    built = build(Outer, values)
    assert built == Outer(
        name="x", speed_s=2.0, mode="slow", tags=("a",), inner=Inner(size=3), parts=(Inner(), Inner(size=2))
    )
    assert isinstance(built.speed_s, float)  # an integer where a number goes is a float


def test_every_problem_is_noted_with_its_path_and_array_items_keep_their_place() -> None:
    reader = Reader()
    raw = {"speed_s": 1, "mode": "warp", "tags": ["ok", "BAD"], "inner": {"size": 0}, "parts": [3, {"size": True}]}
    values = reader.table(Outer, raw)
    assert reader.problems == [
        "speed_s: unknown key; known: inner, limit, mode, name, parts, speed, tags",
        "name: is required",
        "mode: must be one of fast, slow, not 'warp'",
        "tags[1]: must be lower case",
        "inner.size: must be positive, not 0",
        "parts[0]: must be a table",
        "parts[1].size: must be an integer, not True",
    ]
    assert values is not None
    assert len(values["parts"]) == 2  # what could be read of the second part stays in place


def test_a_problem_names_the_line_of_its_key_or_of_its_table() -> None:
    text = 'name = "x"\n\n[[parts]]\nsize = 0\n\n[[parts]]\n'
    problems = ["parts[0].size: must be positive, not 0", "parts[1].other: is required", "elsewhere: no line"]
    assert with_lines(problems, text) == [
        "line 4: parts[0].size: must be positive, not 0",
        "line 6: parts[1].other: is required",
        "elsewhere: no line",
    ]
