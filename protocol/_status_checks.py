"""Field checks of the status message, shared by its encoder and decoder (internal)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, TypeVar

from protocol._checks import (
    check_count,
    check_id,
    check_non_negative,
    check_sha256,
    check_str,
    check_topic_id,
    type_name,
)

if TYPE_CHECKING:
    from protocol._messages import NodeRole, NodeState

_ROLES: Final[Mapping[str, NodeRole]] = {"hub": "hub", "agent": "agent"}
_STATES: Final[Mapping[str, NodeState]] = {"online": "online", "offline": "offline"}
T = TypeVar("T")


def check_profile(value: object, name: str) -> dict[str, dict[str, float]]:
    """Model sha256 to cut id to a number >= 0 (a tail's ms in ``profile``, a load's seconds in ``loading``)."""
    if not isinstance(value, Mapping):
        msg = f"{name} must be a map, not {type_name(value)}"
        raise TypeError(msg)
    profile: dict[str, dict[str, float]] = {}
    for sha, cuts in value.items():
        where = f"{name}[{sha!r}]"
        if not isinstance(cuts, Mapping):
            msg = f"{where} must be a map, not {type_name(cuts)}"
            raise TypeError(msg)
        profile[check_sha256(sha, f"{name} key")] = {
            check_id(cut, f"{where} key"): check_non_negative(ms, f"{where}[{cut!r}]") for cut, ms in cuts.items()
        }
    return profile


def check_counts(value: object, name: str) -> dict[str, int]:
    """A map of ids (e.g. error codes) to counts."""
    if not isinstance(value, Mapping):
        msg = f"{name} must be a map, not {type_name(value)}"
        raise TypeError(msg)
    return {check_id(key, f"{name} key"): check_count(count, f"{name}[{key!r}]") for key, count in value.items()}


def check_providers(value: object, name: str) -> dict[str, tuple[str, ...]]:
    """Model sha256 to a list of execution provider names (``providers``)."""
    if not isinstance(value, Mapping):
        msg = f"{name} must be a map, not {type_name(value)}"
        raise TypeError(msg)
    providers: dict[str, tuple[str, ...]] = {}
    for sha, names in value.items():
        where = f"{name}[{sha!r}]"
        if not isinstance(names, list | tuple):
            msg = f"{where} must be an array, not {type_name(names)}"
            raise TypeError(msg)
        providers[check_sha256(sha, f"{name} key")] = tuple(
            check_id(provider, f"{where}[{i}]") for i, provider in enumerate(names)
        )
    return providers


def check_models(value: object, name: str) -> dict[str, str]:
    """Model name to version (``models``): both valid topic levels."""
    if not isinstance(value, Mapping):
        msg = f"{name} must be a map, not {type_name(value)}"
        raise TypeError(msg)
    return {check_topic_id(model, f"{name} key"): check_topic_id(v, f"{name}[{model!r}]") for model, v in value.items()}


def check_role(value: object, name: str) -> NodeRole:
    return _one_of(_ROLES, value, name)


def check_state(value: object, name: str) -> NodeState:
    return _one_of(_STATES, value, name)


def _one_of(choices: Mapping[str, T], value: object, name: str) -> T:
    chosen = choices.get(check_str(value, name))
    if chosen is None:
        msg = f"{name} must be one of {', '.join(choices)}, not {value!r}"
        raise ValueError(msg)
    return chosen
