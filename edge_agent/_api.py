"""The agent service's local HTTP API: KServe v2's paths, answered from the service's models.

=====================================  ==========================================================
``GET /v2``                            server metadata
``GET /v2/health/live``                200 while the process answers
``GET /v2/health/ready``               200 once the models are open (offline too), 503 before
``GET /v2/models/{name}``              the model's tensors; in ``parameters`` its cuts, current
                                       cut, last cut used, broker connection and link estimate
``GET /v2/models/{name}/ready``        as ``/v2/health/ready``, for one model
``POST /v2/models/{name}/infer``       a JSON infer request (:mod:`edge_agent._kserve`), or an
                                       image file as the body (``Content-Type: image/png``,
                                       ``image/jpeg``) for a model taking one image
=====================================  ==========================================================

Every refusal is ``{"error": "..."}`` with its status: 400 (a bad request),
404 (no such model), 405, 413 (a body over ``max_body_bytes``, from the
endpoint), 503 (not ready, shutting down, or no answer from the hub and no
fallback). Decoding and encoding run off the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http
import importlib.metadata
import json
from typing import TYPE_CHECKING, Any

from edge_agent._files import decode_image
from edge_agent._kserve import InferRequest, KServeError, decode_infer_request, infer_response
from protocol.errors import ConfigError, EdgecutError, ModelError
from protocol.http import Response

if TYPE_CHECKING:
    from edge_agent._service import AgentService
    from protocol.http import Request

JSON = "application/json"
_OK = http.HTTPStatus.OK
_UNAVAILABLE = http.HTTPStatus.SERVICE_UNAVAILABLE


def json_response(status: http.HTTPStatus, document: object) -> Response:
    """``document`` as a JSON answer."""
    return Response(status, json.dumps(document).encode(), JSON)


def _error(status: http.HTTPStatus, message: str) -> Response:
    return json_response(status, {"error": message})


class KServeApi:
    """Answers KServe v2 requests for ``service``'s models (an :class:`~protocol.http.Endpoint` app).

    Args:
        service: The models, their readiness and their requests.
    """

    def __init__(self, service: AgentService) -> None:
        self._service = service

    async def __call__(self, request: Request) -> Response | None:
        """The answer to ``request``; ``None`` for a path that is not the API's (404)."""
        parts = request.path.strip("/").split("/")
        if parts[0] != "v2":
            return None
        wanted = "POST" if parts[-1] == "infer" and len(parts) == 4 else "GET"  # noqa: PLR2004 - v2/models/NAME/infer
        if request.method.replace("HEAD", "GET") != wanted:
            allow = wanted + (", HEAD" if wanted == "GET" else "")
            return dataclasses.replace(_error(http.HTTPStatus.METHOD_NOT_ALLOWED, f"use {allow}"), allow=allow)
        try:
            return await self._route(parts[1:], request)
        except KServeError as exc:
            return _error(exc.status, str(exc))

    async def _route(self, parts: list[str], request: Request) -> Response | None:  # noqa: PLR0911 - one per route
        match parts:
            case []:
                version = importlib.metadata.version("edgecut")
                return json_response(_OK, {"name": "edgecut-agent", "version": version, "extensions": []})
            case ["health", "live"]:
                return json_response(_OK, {"live": True})
            case ["health", "ready"]:
                return self._readiness()
            case ["models", name]:
                self._check(name, ready=True)
                try:
                    return json_response(_OK, self._service.describe(name))
                except RuntimeError as exc:  # a model whose sizes open at its first request
                    raise KServeError(_UNAVAILABLE, str(exc)) from exc
            case ["models", name, "ready"]:
                self._check(name, ready=False)
                return self._readiness()
            case ["models", name, "infer"]:
                return await self._infer(name, request)
        return None

    def _readiness(self) -> Response:
        why = self._service.not_ready()
        return json_response(_OK, {"ready": True}) if why is None else _error(_UNAVAILABLE, why)

    def _check(self, name: str, *, ready: bool) -> None:
        if self._service.config.model(name) is None:
            served = ", ".join(model.name for model in self._service.config.models)
            raise KServeError(http.HTTPStatus.NOT_FOUND, f"no model named {name!r}; served: {served}")
        why = self._service.not_ready() if ready or name not in self._service.agents else None
        if why is not None:
            raise KServeError(_UNAVAILABLE, why)

    async def _infer(self, name: str, request: Request) -> Response:
        self._check(name, ready=True)
        parsed = await asyncio.to_thread(self._decode, name, request)
        try:
            result = await self._service.infer(name, parsed.inputs)
        except ValueError as exc:  # the inputs do not fit the model
            raise KServeError(http.HTTPStatus.BAD_REQUEST, str(exc)) from exc
        except (ModelError, ConfigError) as exc:
            raise KServeError(http.HTTPStatus.BAD_REQUEST, str(exc)) from exc
        except (EdgecutError, RuntimeError) as exc:  # no answer and no fallback, or shutting down
            raise KServeError(_UNAVAILABLE, str(exc)) from exc
        answer = infer_response(name, result.model_version, parsed, result)  # the version that answered
        return Response(_OK, await asyncio.to_thread(_encode, answer), JSON)

    def _decode(self, name: str, request: Request) -> InferRequest:
        inputs = self._service.agents[name].inputs
        content_type = request.headers.get("content-type", JSON).partition(";")[0].strip().lower()
        if not content_type.startswith("image/"):
            return decode_infer_request(request.body, inputs)
        if len(inputs) != 1:
            msg = f"{name} takes {len(inputs)} inputs: send them as JSON"
            raise KServeError(http.HTTPStatus.BAD_REQUEST, msg)
        try:
            return InferRequest({inputs[0].name: decode_image(request.body, inputs[0])})
        except ConfigError as exc:
            raise KServeError(http.HTTPStatus.BAD_REQUEST, str(exc)) from exc


def _encode(answer: dict[str, Any]) -> bytes:
    return json.dumps(answer).encode()
