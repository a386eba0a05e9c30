"""Typed wrapper around ONNX Runtime: the one module that imports ``onnxruntime``.

The agent's path (head files run on a device) and the hub's tails both run
through :class:`Session`, so ORT's untyped API and its threading settings are
decided in one place.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort

from models._manifest import TensorSpec
from protocol import ONNX_TYPE_NAMES

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

CPU_PROVIDER = "CPUExecutionProvider"
"""ONNX Runtime's CPU execution provider: in every build, and what a :class:`Session` uses unless told."""
_NO_MEMORY_PATTERN = frozenset({"DmlExecutionProvider"})
"""Providers that need ORT's memory pattern off (DirectML, as ORT's documentation says)."""


def available_providers() -> tuple[str, ...]:
    """The execution providers this onnxruntime build has, in ORT's order of preference.

    A provider listed here may still fail when a session is created (a CUDA
    build on a machine without a GPU or without its CUDA libraries): ORT then
    falls back to the CPU. :attr:`Session.providers` says what a session got.
    """
    return tuple(ort.get_available_providers())


def _spec(arg: Any) -> TensorSpec:  # noqa: ANN401 - ORT's NodeArg is untyped
    dtype = ONNX_TYPE_NAMES.get(arg.type, arg.type)  # a type the wire cannot carry keeps ORT's name
    shape = tuple(d if isinstance(d, int) else str(d or "?") for d in arg.shape)
    return TensorSpec(name=arg.name, dtype=dtype, shape=shape)


SHRINK_ABOVE_BYTES = 4 * 1024 * 1024
"""A run with inputs larger than this gives its memory back when it ends (``Session``'s ``release_memory``)."""


class Session:
    """An ONNX Runtime inference session with edgecut's defaults.

    Args:
        model: Path to an ``.onnx`` file or its serialized bytes.
        threads: Intra-op threads; ``None`` lets ORT use every core.
        spinning: Let idle ORT threads spin. Off by default: agent, hub and
            broker often share a small box, and spinning threads slow the
            other processes down (about 1.75x on two cores).
        optimize: Apply ORT's full graph optimisations.
        providers: ONNX Runtime execution providers to try, in order
            (``CUDAExecutionProvider``, ...); the CPU only by default. Names
            not in :func:`available_providers` make ORT fail; a provider that
            fails to start falls back to the CPU (see :attr:`providers`).
        release_memory: Give the memory a large run took back when it ends
            (inputs of more than ``SHRINK_ABOVE_BYTES``). Off by default, as
            in plain ORT, whose CPU arena keeps what its largest run
            allocated. A hub turns it on: a sender's large batch otherwise
            took a resnet18 hub from 367 MB to 1.09 GB for good
            (``bench/memory.py``). Small runs never shrink the arena:
            shrinking it after every run cost 0.5 ms of a 7 ms resnet18
            tail, and 1.6x on a 640x640 text detector.
    """

    def __init__(
        self,
        model: str | Path | bytes,
        *,
        threads: int | None = None,
        spinning: bool = False,
        optimize: bool = True,
        release_memory: bool = False,
        providers: Sequence[str] = (CPU_PROVIDER,),
    ) -> None:
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        if not optimize:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        if _NO_MEMORY_PATTERN.intersection(providers):
            options.enable_mem_pattern = False
        source = model if isinstance(model, bytes) else os.fspath(model)
        self._session = ort.InferenceSession(source, options, providers=list(providers))
        self.providers: tuple[str, ...] = tuple(self._session.get_providers())
        """The providers the session got, the one that runs it first (ORT may have fallen back to the CPU)."""
        self._shrinking = ort.RunOptions() if release_memory else None
        if self._shrinking is not None:
            self._shrinking.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self.inputs: tuple[TensorSpec, ...] = tuple(_spec(a) for a in self._session.get_inputs())
        self.outputs: tuple[TensorSpec, ...] = tuple(_spec(a) for a in self._session.get_outputs())

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on ``feeds`` and return every output by name.

        Blocking and CPU-bound: async callers run it in a worker thread.
        """
        names = [spec.name for spec in self.outputs]
        options = self._run_options(sum(np.asarray(v).nbytes for v in feeds.values()))
        results = self._session.run(names, dict(feeds), options)
        return {name: np.asarray(value) for name, value in zip(names, results, strict=True)}

    def run_values(self, feeds: Mapping[str, np.ndarray | ort.OrtValue]) -> dict[str, ort.OrtValue]:
        """Like :meth:`run`, with ONNX Runtime's own values out (and in, where given), not numpy arrays.

        A chain of segments hands each segment's outputs to the next this
        way: :meth:`run` copies every output into a numpy array, which at
        each boundary costs a copy of what crosses it (resnet18's chain from
        its input: 0.5 of the 0.65 ms it took over one session).
        """
        names = [spec.name for spec in self.outputs]
        values = {name: _ort_value(value) for name, value in feeds.items()}
        options = self._run_options(sum(v.tensor_size_in_bytes() for v in values.values()))
        results = self._session.run_with_ort_values(names, values, options)
        return dict(zip(names, results, strict=True))

    def _run_options(self, input_bytes: int) -> ort.RunOptions | None:
        """The options of a run whose inputs take ``input_bytes``: shrinking the arena after a large one, if asked."""
        return self._shrinking if self._shrinking is not None and input_bytes > SHRINK_ABOVE_BYTES else None


def _ort_value(value: np.ndarray | ort.OrtValue) -> ort.OrtValue:
    """``value`` as ONNX Runtime's value: an array wrapped where it lies (copied only if not contiguous; 0-d kept)."""
    return value if isinstance(value, ort.OrtValue) else ort.OrtValue.ortvalue_from_numpy(np.asarray(value, order="C"))
