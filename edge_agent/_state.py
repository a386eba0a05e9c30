"""A recurrent model's state, carried by the agent from each answer to the next request.

A voice-activity or streaming model takes its state as an input and returns
the next one as an output (``state`` in, ``stateN`` out). An agent given
``carry_state={"state": "stateN"}`` feeds each request the state the last
answer returned, zeros before the first, so a caller passes only the audio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edge_agent._halves import by_name, shapes_of
from models import bound_symbols
from protocol.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from models import TensorSpec


class CarriedState:
    """The state inputs of a model and the outputs that replace them after each answer.

    Args:
        carry: Input name to the output name whose value it takes next time.
        inputs: The model's inputs.
        outputs: The model's outputs.

    Raises:
        ConfigError: A name is not an input or output of the model, or an
            input and its output differ in dtype or rank.
    """

    def __init__(self, carry: Mapping[str, str], inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> None:
        by_input = {spec.name: spec for spec in inputs}
        by_output = {spec.name: spec for spec in outputs}
        for name, output in carry.items():
            source, target = by_input.get(name), by_output.get(output)
            if source is None or target is None:
                msg = (
                    f"carry_state maps input {name!r} to output {output!r}: the model's inputs are "
                    f"{sorted(by_input)}, its outputs {sorted(by_output)}"
                )
                raise ConfigError(msg)
            if (source.dtype, len(source.shape)) != (target.dtype, len(target.shape)):
                msg = (
                    f"carry_state: output {output!r} is {target.dtype}{list(target.shape)}, "
                    f"input {name!r} takes {source.dtype}{list(source.shape)}"
                )
                raise ConfigError(msg)
        self._carry = dict(carry)
        self._inputs = by_input
        self._values: dict[str, np.ndarray] = {}

    def fill(self, given: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``given`` with every carried input added: the last answer's value, or zeros before the first.

        ``given`` is one array where one input is not carried, else arrays by
        input name. Zeros take their symbolic sizes (a batch axis) from the
        given inputs that share the symbol, else 1. A carried input the
        caller gives itself is used as given.

        Raises:
            ValueError: One array for a model with several inputs not carried.
        """
        given = by_name(given, list(self._inputs.values()), carried=frozenset(self._carry))
        specs = list(self._inputs.values())
        symbols = bound_symbols(specs, shapes_of(given, specs))
        filled = dict(given)
        for name in self._carry:
            if name not in filled:
                spec = self._inputs[name]
                filled[name] = self._values.get(name, np.zeros(spec.concrete(1, symbols), spec.dtype))
        return filled

    def keep(self, outputs: Mapping[str, np.ndarray]) -> None:
        """Take the next state from an answer's outputs."""
        for name, output in self._carry.items():
            if output in outputs:
                self._values[name] = outputs[output]

    def reset(self) -> None:
        """Forget the state: the next request starts from zeros."""
        self._values.clear()
