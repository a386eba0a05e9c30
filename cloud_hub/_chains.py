"""A hub's chains: one copy of a model's weights, whatever cuts agents send it.

A hub serving a model from its full ONNX file (or the zoo) holds it as a chain
of segments (:mod:`models._segments`) through the model's candidate cuts, the
ones ``cut="auto"`` agents choose between, and every other cut an agent has
sent. A tail is the stretch of the chain from the request's cut to the end. A
request at a cut the chain does not pass through grows the chain: it is cut
again, and only the segments that changed get new sessions (a segment is
known by its sha256), so the weights stay in memory once. Growth is bounded:
besides its candidate cuts, a chain passes through at most ``max_extra_cuts``
other cuts, those the store says were used most recently; a chain grown past
that is cut again without the others. A segments directory (``edgecut models
split --cuts``) gives a chain that cannot grow.

Blocking (session creation; the splitting itself happens in a child process,
:mod:`cloud_hub._splitter`); the tail store calls it from its loading thread,
under its own lock, except :meth:`HubChains.peek`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

from models import EDGE_ONLY, Chain, SegmentsManifest, Session

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Mapping
    from pathlib import Path

    from cloud_hub._splitter import Grown
    from models import Runnable


class HubChains:
    """The chains a hub holds, at most ``max_models`` of them, least recently used dropped first.

    Args:
        session: Makes a session of one segment's file.
        max_models: Chains kept.
        max_extra_cuts: Cuts besides its candidates one chain may pass through.
    """

    def __init__(self, *, session: Callable[[Path], Session], max_models: int, max_extra_cuts: int) -> None:
        self._session = session
        self._max_models = max_models
        self._max_extra_cuts = max_extra_cuts
        self._chains: OrderedDict[str, Chain] = OrderedDict()
        self._sessions: dict[str, dict[str, Session]] = {}  # model sha256 -> segment sha256 -> session
        self._candidates: dict[str, frozenset[str]] = {}  # model sha256 -> its candidate cuts
        self._lock = threading.Lock()

    def peek(self, model_sha256: str, cut_id: str) -> Chain | None:
        """:meth:`held` without the lock, nor marking the chain used: never blocks (for the event loop).

        A chain being replaced at the moment may be missed: the caller then
        takes the blocking way.
        """
        chain = self._chains.get(model_sha256)
        if chain is None or cut_id == EDGE_ONLY or cut_id not in chain.manifest.cut_ids:
            return None
        return chain

    def held(self, model_sha256: str, cut_id: str) -> Chain | None:
        """The chain of ``model_sha256`` if it passes through ``cut_id`` (and the cut has a tail)."""
        with self._lock:
            chain = self._chains.get(model_sha256)
            if chain is None or cut_id == EDGE_ONLY or cut_id not in chain.manifest.cut_ids:
                return None
            self._chains.move_to_end(model_sha256)
            return chain

    def current(self, model_sha256: str) -> Chain | None:
        """The chain of ``model_sha256`` as it is now (a grown chain replaces the one before)."""
        with self._lock:
            return self._chains.get(model_sha256)

    def providers(self) -> dict[str, tuple[str, tuple[str, ...]]]:
        """Each chain held: model sha256 to its name and the providers its segments run on (the first each got).

        Without the lock, like :meth:`peek` (the lock is held while sessions
        are created): copies taken in one step each, so a chain being
        replaced shows as it was or as it will be.
        """
        sessions = dict(self._sessions)
        return {
            sha: (chain.manifest.model_id, runs_on(list(sessions.get(sha, {}).values())))
            for sha, chain in list(self._chains.items())
        }

    def extra_cuts(self, model_sha256: str, recent: Collection[str]) -> list[str] | None:
        """The cuts besides its candidates a regrown chain of ``model_sha256`` keeps, or ``None`` if none is held.

        Of the cuts the chain passes through besides its candidates, those in
        ``recent`` (the model's cuts used lately, most recent first), at most
        ``max_extra_cuts - 1`` of them: a new cut joins them.
        """
        with self._lock:
            chain = self._chains.get(model_sha256)
            candidates = self._candidates.get(model_sha256)
            if chain is None or candidates is None:
                return None
            held = set(chain.manifest.cut_ids) - candidates
            return [cut for cut in dict.fromkeys(recent) if cut in held][: self._max_extra_cuts - 1]

    def adopt(self, model_sha256: str, grown: Grown) -> Chain:
        """Hold the chain ``grown`` (split elsewhere), with sessions for the segments not held yet."""
        with self._lock:
            chain = self._keep(model_sha256, grown.manifest, grown.files)
            self._candidates[model_sha256] = grown.candidates
            return chain

    def from_directory(self, directory: Path) -> Chain:
        """The chain in a segments directory (checked against its manifest), kept by its model sha256.

        Raises:
            ModelError: The directory's manifest or files are missing or do not match.
        """
        manifest = SegmentsManifest.load(directory)
        with self._lock:
            chain = self._chains.get(manifest.model_sha256)
            if chain is not None and chain.manifest == manifest:
                return chain
            paths = manifest.checked_files(directory)
            files = {file.sha256: path for file, path in zip(manifest.segments, paths, strict=True)}
            return self._keep(manifest.model_sha256, manifest, files)

    def _keep(self, model_sha256: str, manifest: SegmentsManifest, segments: Mapping[str, Path]) -> Chain:
        """A chain of ``manifest`` (``segments``: each one's file by sha256), reusing the sessions it shares.

        Sessions are made of files, never of bytes: from bytes ONNX Runtime
        parses a model with the GIL held, which stops the hub's event loop.
        """
        before = self._sessions.get(model_sha256, {})
        sessions = {sha: before.get(sha) or self._session(segment) for sha, segment in segments.items()}
        chain = Chain(manifest, [sessions[file.sha256] for file in manifest.segments])
        self._chains[model_sha256] = chain
        self._chains.move_to_end(model_sha256)
        self._sessions[model_sha256] = sessions
        while len(self._chains) > self._max_models:
            dropped, _ = self._chains.popitem(last=False)
            del self._sessions[dropped]
            self._candidates.pop(dropped, None)
        return chain


def runs_on(sessions: Iterable[Runnable]) -> tuple[str, ...]:
    """The providers ``sessions`` run on: the first provider each session got, each named once."""
    return tuple(dict.fromkeys(s.providers[0] for s in sessions if isinstance(s, Session) and s.providers))
