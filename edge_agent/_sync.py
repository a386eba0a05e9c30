"""A blocking front for :class:`EdgeAgent`, for scripts without asyncio.

The agent lives on an event loop in a background thread, so its broker
connection keeps being serviced (keepalives, reconnects) between calls.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any, Self, TypeVar

from edge_agent._agent import EdgeAgent

if TYPE_CHECKING:
    from collections.abc import Coroutine, Mapping
    from types import TracebackType

    import numpy as np

    from edge_agent._halves import ModelHalves
    from edge_agent._results import InferenceResult
    from models import TensorSpec

T = TypeVar("T")


class SyncEdgeAgent:
    """:class:`EdgeAgent` with blocking calls; takes the same arguments.

    ::

        with SyncEdgeAgent("mqtt://127.0.0.1:1883", model="resnet18", cut="input") as agent:
            result = agent.infer(image)
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 - forwarded as they are
        self._agent = EdgeAgent(*args, **kwargs)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"edgecut[{self._agent.agent_id}].loop")

    @property
    def agent_id(self) -> str:
        """The wrapped agent's id."""
        return self._agent.agent_id

    @property
    def model(self) -> ModelHalves:
        """The halves the agent holds."""
        return self._agent.model

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        """The model's inputs (see :attr:`EdgeAgent.inputs`)."""
        return self._agent.inputs

    def __enter__(self) -> Self:
        self._thread.start()
        try:
            self._call(self._agent.__aenter__())
        except BaseException:
            self._stop_loop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self._call(self._agent.__aexit__(exc_type, exc, tb))
        finally:
            self._stop_loop()

    def infer(self, inputs: np.ndarray | Mapping[str, np.ndarray], *, cut: str | None = None) -> InferenceResult:
        """Blocking :meth:`EdgeAgent.infer`."""
        return self._call(self._agent.infer(inputs, cut=cut))

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
