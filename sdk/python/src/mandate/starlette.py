"""Protecting Starlette apps (and any ASGI app, such as an MCP server's) with mandate's tokens.

- :class:`MandateMiddleware` wraps an ASGI app: every HTTP request needs a valid bearer token
  with ``scopes``; it also serves the RFC 9728 metadata document at its well-known path.
- :func:`requires` protects one Starlette endpoint with its own scopes.
- :func:`metadata_route` is a ``Route`` serving the RFC 9728 document.
- :func:`get_principal` reads the verified :class:`~mandate.resource.Principal` in a handler.
- :func:`ssf_route` is a ``Route`` receiving mandate's pushed security events (RFC 8935) for an
  :class:`~mandate.ssf.SsfReceiver`, so revoked tokens are refused at once.

Refusals follow RFC 6750 §3: 401 with ``WWW-Authenticate: Bearer ...`` (no ``error`` when there
was no token), 403 ``insufficient_scope`` with the ``scope`` needed, 400 ``invalid_request``.
A DPoP-bound token (RFC 9449) must come as ``Authorization: DPoP`` with a proof for the request's
method and URL (``ResourceServer(external_url=...)`` behind a reverse proxy); refusals are then
401 with a ``WWW-Authenticate: DPoP`` challenge.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

try:
    from starlette.requests import HTTPConnection, Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route
    from starlette.types import ASGIApp, Receive, Scope, Send
except ImportError as e:  # pragma: no cover
    raise ImportError("mandate.starlette needs the `fastapi` extra: pip install 'mandate-sdk[fastapi]'") from e

from .resource import BearerError, Principal, ResourceServer
from .ssf import SsfReceiver, SsfResponse

__all__ = [
    "MandateMiddleware",
    "error_response",
    "get_principal",
    "metadata_response",
    "metadata_route",
    "requires",
    "ssf_endpoint",
    "ssf_route",
]

STATE_KEY = "mandate_principal"


def error_response(resource_server: ResourceServer, error: BearerError) -> JSONResponse:
    """The RFC 6750 §3 answer to a refusal."""
    body: dict[str, Any] = {"error": error.error} if error.error else {}
    body["error_description"] = error.description or "a bearer token is required"
    return JSONResponse(
        body,
        status_code=error.status,
        headers=resource_server.response_headers(error),
    )


def metadata_response(resource_server: ResourceServer) -> JSONResponse:
    """RFC 9728 §3.2: the metadata document (public; any origin may read it)."""
    return JSONResponse(
        resource_server.metadata(),
        headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "max-age=300"},
    )


def metadata_route(resource_server: ResourceServer) -> Route:
    """A ``Route`` at the RFC 9728 §3.1 well-known path of ``resource_server``'s resource."""

    async def endpoint(request: Request) -> Response:
        return metadata_response(resource_server)

    return Route(resource_server.metadata_path, endpoint, methods=["GET"], name="oauth-protected-resource")


def get_principal(conn: HTTPConnection) -> Principal:
    """The principal :class:`MandateMiddleware` or :func:`requires` verified for this request."""
    p = conn.scope.get("state", {}).get(STATE_KEY)
    if not isinstance(p, Principal):
        raise LookupError("no mandate principal: this route is not behind MandateMiddleware or requires()")
    return p


def _with_principal(scope: Scope, principal: Principal) -> Scope:
    # A copy of the state: the app's lifespan state is shared between requests.
    return {**scope, "state": {**scope.get("state", {}), STATE_KEY: principal}}


class MandateMiddleware:
    """ASGI middleware: HTTP requests to ``app`` need a bearer token mandate issued for
    ``resource_server``'s audience, carrying every one of ``scopes``.

    ``GET`` of the RFC 9728 metadata path is answered here without a token (unless
    ``serve_metadata=False``). Lifespan events pass through; a WebSocket without a valid token
    is closed (1008, policy violation) before the app sees it.
    """

    def __init__(
        self,
        app: ASGIApp,
        resource_server: ResourceServer,
        scopes: Iterable[str] = (),
        serve_metadata: bool = True,
    ) -> None:
        self.app = app
        self.resource_server = resource_server
        self.scopes = tuple(scopes)
        self.serve_metadata = serve_metadata

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        rs = self.resource_server
        if (
            self.serve_metadata
            and scope["type"] == "http"
            and scope.get("method") in ("GET", "HEAD")
            and scope["path"] == rs.metadata_path
        ):
            await metadata_response(rs)(scope, receive, send)
            return
        try:
            principal = await rs.authenticate(
                conn.headers.get("authorization"),
                self.scopes,
                method=scope.get("method", "GET"),
                url=str(conn.url),
                dpop=conn.headers.getlist("dpop"),
            )
        except BearerError as e:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await error_response(rs, e)(scope, receive, send)
            return
        await self.app(_with_principal(scope, principal), receive, send)


def requires(
    resource_server: ResourceServer, *scopes: str
) -> Callable[[Callable[[Request], Awaitable[Response]]], Callable[[Request], Awaitable[Response]]]:
    """Protect one Starlette endpoint ``async def endpoint(request)``: a valid token with every
    one of ``scopes``; :func:`get_principal` then gives who it is."""

    def wrap(endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(endpoint)
        async def inner(request: Request) -> Response:
            try:
                principal = await resource_server.authenticate(
                    request.headers.get("authorization"),
                    scopes,
                    method=request.method,
                    url=str(request.url),
                    dpop=request.headers.getlist("dpop"),
                )
            except BearerError as e:
                return error_response(resource_server, e)
            request.scope["state"] = {**request.scope.get("state", {}), STATE_KEY: principal}
            if hasattr(request, "_state"):
                del request._state
            return await endpoint(request)

        return inner

    return wrap


# --- security events (RFC 8935 push) ----------------------------------------------------------


def _ssf_response(answer: SsfResponse) -> Response:
    if answer.body is None:
        return Response(status_code=answer.status, headers=answer.headers)
    return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)


def ssf_endpoint(receiver: SsfReceiver) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint for pushed SETs: the credential and the media type are checked
    before the body is read, and the body is read only up to ``receiver.max_body`` bytes."""

    async def endpoint(request: Request) -> Response:
        authorization = request.headers.get("authorization")
        content_type = request.headers.get("content-type")
        early = receiver.check_request(authorization, content_type, request.headers.get("content-length"))
        if early is not None:
            return _ssf_response(early)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > receiver.max_body:
                return _ssf_response(receiver.too_large())
        return _ssf_response(await receiver.receive(authorization, content_type, bytes(body)))

    return endpoint


def ssf_route(receiver: SsfReceiver, path: str = "/ssf/events") -> Route:
    """A ``POST`` ``Route`` at ``path`` (the stream's ``endpoint_url``) for pushed SETs. Mount
    it outside :class:`MandateMiddleware`: mandate authenticates with the stream's credential,
    not with an access token."""
    return Route(path, ssf_endpoint(receiver), methods=["POST"], name="ssf-events")
