"""Where a hub gets the tail for (model sha256, cut): loaded once, cached, misses remembered.

Lookup order: a split directory (``manifest.json`` + ``tail.onnx``) whose
manifest names that model hash and cut; else a chain the hub holds that
passes through the cut; else a segments directory of that model through the
cut; else the full model with that hash (a file under the models directory,
or a zoo model), held as a chain grown to pass through the cut
(:mod:`cloud_hub._chains`: the weights once, whatever the cuts). The sha256
decides; the request's model name is only a hint (see
:mod:`cloud_hub._catalog`), so a cold hub and a warm one answer alike.

Loaded tails live in a bounded least-recently-used cache, and a chain passes
through a bounded number of cuts besides its candidates (those used most
recently: :mod:`cloud_hub._chains`). Loading runs on the store's own
executor, never on the event loop, and a tail of a chain already held is
made on the spot without it. A request that
cannot be served (unknown model or cut, halves that do not match) is
remembered for ``miss_ttl_s``, so a repeated miss costs a dictionary lookup,
not a search and a split; the cut ids of every model split once are kept, so
an unknown cut of a known model is refused without loading anything.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from cloud_hub._catalog import ModelCatalog, preload_key
from cloud_hub._chains import HubChains, runs_on
from cloud_hub._splitter import Splitter
from models import (
    EDGE_ONLY,
    TAIL_FILE,
    Chain,
    ChainPart,
    Manifest,
    Session,
    file_sha256_hex,
    resolve_providers,
    short_names,
)
from protocol import ErrorCode
from protocol.errors import ModelError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from concurrent.futures import Executor
    from pathlib import Path

    from cloud_hub._splitter import ModelSource

logger = logging.getLogger("edgecut.hub")

_MAX_MISSES = 1024
"""Most remembered misses (and models whose cuts in use are remembered); the oldest go first."""
_MAX_CUTS_REMEMBERED = 64
"""Most cuts of one model remembered as in use lately."""


class TailUnavailableError(ModelError):
    """No tail can be had for a request; ``code`` says why, for the error reply."""

    def __init__(self, message: str, *, code: ErrorCode) -> None:
        super().__init__(message)
        self.code = code


@dataclasses.dataclass(frozen=True, slots=True)
class Tail:
    """A loaded tail: its manifest, and a ready session or the stretch of a chain from the cut on."""

    manifest: Manifest
    session: Session | ChainPart


class TailStore:
    """Finds, loads and caches tail sessions.

    Args:
        models_dir: Searched recursively for split directories and ``.onnx`` models.
        use_zoo: Serve zoo models too.
        max_sessions: Tails kept loaded at once, and models held as chains.
        max_extra_cuts: Cuts besides its candidates a model's chain may pass through.
        threads: ONNX Runtime intra-op threads per session.
        executor: Where loading (hashing, splitting, session creation) runs:
            best a thread of its own, so that loads never hold up tail runs.
        miss_ttl_s: How long a miss is remembered, and the least time between
            two scans of ``models_dir``.
        max_extra_cuts: Cuts besides its candidates a model's chain may pass through.
        providers: ONNX Runtime execution providers to run tails on, short or
            ORT names in order of preference; empty: the best available
            (:func:`models.resolve_providers`).

    Raises:
        ProviderUnavailableError: A provider in ``providers`` is not in the installed onnxruntime.
    """

    def __init__(
        self,
        *,
        models_dir: Path | None,
        use_zoo: bool,
        max_sessions: int,
        threads: int | None,
        executor: Executor,
        miss_ttl_s: float = 10.0,
        max_extra_cuts: int = 8,
        providers: Sequence[str] = (),
    ) -> None:
        self.providers = resolve_providers(providers)
        """ORT's names of the providers sessions are created with, in order (what was asked, or the best available)."""
        self._splitter = Splitter()
        self.catalog = ModelCatalog(
            models_dir=models_dir, use_zoo=use_zoo, rescan_after_s=miss_ttl_s, splitter=self._splitter
        )
        self.chains = HubChains(
            session=self._session,
            max_models=max_sessions,
            max_extra_cuts=max_extra_cuts,
        )
        self._max_sessions = max_sessions
        self._threads = threads
        self._executor = executor
        self._miss_ttl_s = miss_ttl_s
        self._tails: OrderedDict[tuple[str, str], Tail] = OrderedDict()
        self._loading: dict[tuple[str, str], asyncio.Future[Tail]] = {}
        self._loading_since: dict[tuple[str, str], float] = {}  # monotonic start of each load in progress
        # Keyed by (name, sha256, cut): the error message quotes the request's name.
        self._misses: OrderedDict[tuple[str, str, str], tuple[float, TailUnavailableError]] = OrderedDict()
        self._cut_ids: dict[str, frozenset[str]] = {}
        self._tail_sha256s: dict[tuple[str, str], str | None] = {}  # fused tails' hashes, for pinned requests
        self._pinning: dict[tuple[str, str], asyncio.Future[str | None]] = {}
        self._cuts_used: OrderedDict[str, OrderedDict[str, None]] = OrderedDict()  # sha256 -> cuts, most recent last
        self._preloaded: set[tuple[str, str]] = set()

    def __len__(self) -> int:
        return len(self._tails)

    def _session(self, model: Path) -> Session:
        """A session of a tail or segment file on the hub's providers (blocking); a fallback is logged.

        Of a file, never of bytes: from bytes ONNX Runtime parses a model
        with the GIL held, and the hub's event loop stops meanwhile.
        """
        session = Session(model, threads=self._threads, release_memory=True, providers=self.providers)
        if session.providers[:1] != self.providers[:1]:
            logger.warning(
                "a session asked for %s got %s: ONNX Runtime could not start %s (see its messages above)",
                ",".join(short_names(self.providers)),
                ",".join(short_names(session.providers)),
                short_names(self.providers[:1])[0],
            )
        return session

    def loaded_providers(self) -> dict[str, tuple[str, tuple[str, ...]]]:
        """Each model with a tail loaded or a chain held: its sha256 to its name and the providers it runs on.

        The providers are those its sessions actually got, the one running
        each named first (``Session.providers``), so a provider ONNX Runtime
        fell back from shows. Never blocks for long: for status and metrics.
        """
        loaded = self.chains.providers()
        for (sha, _), tail in list(self._tails.items()):
            if isinstance(tail.session, Session):
                name, before = loaded.get(sha, (tail.manifest.model_id, ()))
                loaded[sha] = (name, tuple(dict.fromkeys((*before, *runs_on([tail.session])))))
        return loaded

    def ready_now(self, model_sha256: str, cut_id: str, *, pinned: bool) -> Tail | None:
        """The tail if it is loaded, or made on the spot from a chain held (and, when ``pinned``, its hash known).

        Never blocks: for the event loop.
        """
        key = (model_sha256, cut_id)
        self._note_use(model_sha256, cut_id)
        tail = self._tails.get(key)
        if tail is None:
            chain = self.chains.peek(model_sha256, cut_id)
            if chain is None:
                return None
            tail = self._cache(key, _chain_tail(chain, cut_id))
        self._tails.move_to_end(key)
        if not pinned or tail.manifest.tail_sha256 is not None:
            return tail
        if key not in self._tail_sha256s:
            return None
        return dataclasses.replace(
            tail, manifest=dataclasses.replace(tail.manifest, tail_sha256=self._tail_sha256s[key])
        )

    async def ready(self, model_id: str, model_sha256: str, cut_id: str, *, pinned: bool) -> Tail:
        """:meth:`get`, then :meth:`pin` when ``pinned``: all a request's first use of a tail may wait for."""
        tail = await self.get(model_id, model_sha256, cut_id)
        return await self.pin(tail, model_id) if pinned else tail

    async def get(self, model_id: str, model_sha256: str, cut_id: str) -> Tail:
        """The tail of ``model_sha256`` at ``cut_id``, loading it on first use.

        Args:
            model_id: The model's name as the request gives it: a hint only.
            model_sha256: Which model.
            cut_id: Which cut.

        Raises:
            TailUnavailableError: Unknown model or cut, halves that do not match,
                or (``internal``) a load that failed otherwise: each is
                remembered for ``miss_ttl_s``, whoever waited for it.
        """
        key = (model_sha256, cut_id)
        tail = self._tails.get(key)
        if tail is not None:
            self._tails.move_to_end(key)
            return tail
        miss_key = (model_id, model_sha256, cut_id)
        self._raise_if_missed(miss_key)
        pending = self._loading.get(key)
        if pending is None:
            loop = asyncio.get_running_loop()
            recent = self._recent_cuts(model_sha256)
            pending = loop.run_in_executor(self._executor, self._load, model_id, model_sha256, cut_id, recent)
            self._loading[key] = pending
            self._loading_since[key] = time.monotonic()
            pending.add_done_callback(lambda fut: self._loaded(key, fut))
        try:
            return await asyncio.shield(pending)
        except TailUnavailableError as exc:
            self._remember_miss(miss_key, exc)
            raise
        except Exception as exc:  # not the model's fault as far as anyone knows: out of memory, a provider
            message = f"loading {model_id} at cut {cut_id!r} failed: {type(exc).__name__}: {exc}"
            if miss_key not in self._misses:  # once, whoever else waited for the same load
                logger.exception("%s", message)
            error = TailUnavailableError(message, code=ErrorCode.INTERNAL)
            self._remember_miss(miss_key, error)  # no new load per request while it would fail again
            raise error from exc

    def model_name(self, model_sha256: str, cut_id: str) -> str | None:
        """The model's name if its tail at ``cut_id`` is loaded or a chain held passes through it; else ``None``.

        Never blocks, and changes nothing (no use is noted): for labels.
        """
        tail = self._tails.get((model_sha256, cut_id))
        if tail is not None:
            return tail.manifest.model_id
        chain = self.chains.peek(model_sha256, cut_id)
        return None if chain is None else chain.manifest.model_id

    @property
    def loading_count(self) -> int:
        """Tails being loaded now."""
        return len(self._loading)

    def is_loading(self, model_sha256: str, cut_id: str) -> bool:
        """Whether this tail is being loaded now (a request for it waits for that load, starting none)."""
        return (model_sha256, cut_id) in self._loading

    def models_changed(self) -> None:
        """The models directory changed (a version published): forget the misses, and scan it at the next look-up."""
        self._misses.clear()
        self.catalog.mark_stale()

    def is_missed(self, model_id: str, model_sha256: str, cut_id: str) -> bool:
        """Whether this tail is a remembered miss (a request for it is refused at once, loading nothing)."""
        missed = self._misses.get((model_id, model_sha256, cut_id))
        return missed is not None and time.monotonic() < missed[0]

    def _note_use(self, model_sha256: str, cut_id: str) -> None:
        cuts = self._cuts_used.setdefault(model_sha256, OrderedDict())
        self._cuts_used.move_to_end(model_sha256)
        cuts[cut_id] = None
        cuts.move_to_end(cut_id)
        while len(cuts) > _MAX_CUTS_REMEMBERED:
            cuts.popitem(last=False)
        while len(self._cuts_used) > _MAX_MISSES:
            self._cuts_used.popitem(last=False)

    def _recent_cuts(self, model_sha256: str) -> list[str]:
        """The model's cuts used lately, most recent first."""
        return list(reversed(self._cuts_used.get(model_sha256, {})))

    def _raise_if_missed(self, miss_key: tuple[str, str, str]) -> None:
        missed = self._misses.get(miss_key)
        if missed is None:
            return
        expires, error = missed
        if time.monotonic() < expires:
            raise error
        del self._misses[miss_key]

    def _remember_miss(self, miss_key: tuple[str, str, str], error: TailUnavailableError) -> None:
        self._misses[miss_key] = (time.monotonic() + self._miss_ttl_s, error)
        while len(self._misses) > _MAX_MISSES:
            self._misses.popitem(last=False)

    def loading(self, now_s: float) -> dict[str, dict[str, float]]:
        """The tails loading now: model sha256 to cut id to seconds since the load began (``time.monotonic()``)."""
        loading: dict[str, dict[str, float]] = {}
        for (sha, cut_id), since in self._loading_since.items():
            loading.setdefault(sha, {})[cut_id] = round(max(0.0, now_s - since), 3)
        return loading

    def loading_since(self, model_sha256: str, cut_id: str) -> float | None:
        """When the load of this tail began (``time.monotonic()``), while it is loading; else ``None``."""
        return self._loading_since.get((model_sha256, cut_id))

    def _loaded(self, key: tuple[str, str], future: asyncio.Future[Tail]) -> None:
        del self._loading[key]
        self._loading_since.pop(key, None)
        if future.cancelled() or future.exception() is not None:
            return
        tail = future.result()
        if isinstance(tail.session, ChainPart):
            tail = self._on_current_chain(key, tail)
        self._cache(key, tail)

    def _cache(self, key: tuple[str, str], tail: Tail) -> Tail:
        self._tails[key] = tail
        evictable = (held for held in list(self._tails) if held not in self._preloaded)
        while len(self._tails) > self._max_sessions and (evicted := next(evictable, None)) is not None:
            del self._tails[evicted]
            logger.info("unloaded tail %s (cache holds %d)", evicted, self._max_sessions)
        return tail

    def _on_current_chain(self, key: tuple[str, str], tail: Tail) -> Tail:
        """Move ``tail`` and the cached tails of its model onto the model's chain as it is now.

        Two cuts loaded at once may each grow the chain; a tail of an older
        form of it would keep that form's sessions alive, and the weights in
        memory twice. Cached tails of other forms are dropped (the next
        request at their cut makes a tail of the current one, loading nothing).
        """
        current = self.chains.current(key[0])
        if current is None or not isinstance(tail.session, ChainPart):
            return tail
        if tail.session.chain is not current and key[1] in current.manifest.cut_ids:
            tail = _chain_tail(current, key[1])
        stale = [
            other
            for other, held in self._tails.items()
            if other[0] == key[0] and isinstance(held.session, ChainPart) and held.session.chain is not current
        ]
        for other in stale:
            del self._tails[other]
        return tail

    async def preload(self, spec: str) -> Tail:
        """Load the tail named ``MODEL:CUT`` now, so that no request pays for it; it stays loaded.

        Raises:
            ModelError: No single model of that name, or no such cut.
        """
        loop = asyncio.get_running_loop()
        name, sha, cut = await loop.run_in_executor(self._executor, preload_key, self.catalog, spec)
        tail = await self.get(name, sha, cut)
        self._preloaded.add((sha, cut))  # never evicted: a hub that loads nothing else could not load it again
        return tail

    async def pin(self, tail: Tail, model_id: str) -> Tail:
        """``tail`` with the sha256 its fused tail file would have, for a request that names one.

        A chain's tail has no single file; its hash is the tail :func:`split`
        would write at that cut, computed once per model and cut (``None``
        when the hub has no full model to split).
        """
        if tail.manifest.tail_sha256 is not None:
            return tail
        key = (tail.manifest.model_sha256, tail.manifest.cut_id)
        if key not in self._tail_sha256s:
            pending = self._pinning.get(key)
            if pending is None:  # one split per model and cut, however many requests wait for it
                loop = asyncio.get_running_loop()
                pending = loop.run_in_executor(self._executor, self._fused_tail_sha256, model_id, key)
                self._pinning[key] = pending
                pending.add_done_callback(lambda _: self._pinning.pop(key, None))
            sha = await asyncio.shield(pending)
            self._tail_sha256s[key] = sha
        return dataclasses.replace(
            tail, manifest=dataclasses.replace(tail.manifest, tail_sha256=self._tail_sha256s[key])
        )

    def close(self) -> None:
        """Stop splitting models (the child process that does it)."""
        self._splitter.close()

    def _fused_tail_sha256(self, model_id: str, key: tuple[str, str]) -> str | None:
        source = self.catalog.source(key[0], model_id)
        return None if source is None else self._splitter.fused_tail_sha256(source, key[0], model_id, key[1])

    def _load(self, model_id: str, model_sha256: str, cut_id: str, recent: list[str]) -> Tail:
        split_dir = self.catalog.split_dir(model_sha256, cut_id)
        if split_dir is not None:
            manifest, tail_file = _read_split(split_dir)
            logger.info("loaded tail of %s at cut %s", manifest.model_id, cut_id)
            return Tail(manifest=manifest, session=self._session(tail_file))
        chain = self.chains.held(model_sha256, cut_id)
        if chain is None:
            segments_dir = self.catalog.segments_dir(model_sha256, cut_id)
            if segments_dir is not None:
                chain = self.chains.from_directory(segments_dir)
                logger.info("loaded the chain of %s from %s", chain.manifest.model_id, segments_dir)
        if chain is None:
            chain = self._grow(model_id, model_sha256, cut_id, recent)
        return _chain_tail(chain, cut_id)

    def _grow(self, model_id: str, model_sha256: str, cut_id: str, recent: list[str]) -> Chain:
        """The chain of the full model, (re)split in the child process to pass through ``cut_id``."""
        known_cuts = self._cut_ids.get(model_sha256)
        if known_cuts is not None and cut_id not in known_cuts:
            raise _unknown_cut(model_id, cut_id)  # without loading the model again
        source = self._source(model_id, model_sha256, cut_id)
        also = self.chains.extra_cuts(model_sha256, recent)
        outcome = self._splitter.grow(source, model_sha256, model_id, cut_id, also=also)
        if outcome.cut_ids:
            self._cut_ids[model_sha256] = outcome.cut_ids
        if outcome.grown is None:
            code, message = outcome.error or (ErrorCode.INTERNAL, "the split failed")
            raise TailUnavailableError(message, code=ErrorCode(code))
        try:
            chain = self.chains.adopt(model_sha256, outcome.grown)
        finally:
            self._splitter.discard(outcome.grown)  # the sessions hold what they need
        logger.info("%s's chain passes through %s", model_id, ", ".join(chain.manifest.cut_ids))
        return chain

    def _source(self, model_id: str, model_sha256: str, cut_id: str) -> ModelSource:
        source = self.catalog.source(model_sha256, model_id)
        if source is not None:
            return source
        split_cuts = self.catalog.split_cuts(model_sha256)
        if split_cuts:
            msg = f"this hub holds {model_id!r} split at {', '.join(split_cuts)} only, not at cut {cut_id!r}"
            raise TailUnavailableError(msg, code=ErrorCode.UNKNOWN_CUT)
        msg = f"no model with sha256 {model_sha256[:12]}... ({model_id!r} to the agent) on this hub"
        namesakes = self.catalog.names_for(model_id)
        if namesakes:  # the name is only a hint, but a helpful one
            msg += f"; its {model_id!r} has sha256 {', '.join(sha[:12] + '...' for sha in namesakes)}"
            msg += " (another version, seed or export of the model?)"
        raise TailUnavailableError(msg, code=ErrorCode.UNKNOWN_MODEL)


def _chain_tail(chain: Chain, cut_id: str) -> Tail:
    return Tail(manifest=chain.manifest.manifest(cut_id), session=chain.part(cut_id, EDGE_ONLY))


def _unknown_cut(model_id: str, cut_id: str) -> TailUnavailableError:
    msg = f"{model_id!r} has no usable cut {cut_id!r} (see `edgecut models cuts {model_id}`)"
    return TailUnavailableError(msg, code=ErrorCode.UNKNOWN_CUT)


def _read_split(split_dir: Path) -> tuple[Manifest, Path]:
    """A split directory's manifest and its tail file, checked against the manifest's sha256."""
    manifest = Manifest.load(split_dir)
    tail = split_dir / TAIL_FILE
    if file_sha256_hex(tail) != manifest.tail_sha256:
        msg = f"{tail} does not match the sha256 in its manifest"
        raise TailUnavailableError(msg, code=ErrorCode.MODEL_MISMATCH)
    return manifest, tail
