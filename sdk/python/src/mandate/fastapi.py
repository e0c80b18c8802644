"""FastAPI: per-route scope requirements and the RFC 9728 metadata route.

.. code-block:: python

    from fastapi import Depends, FastAPI
    from mandate.fastapi import metadata_router, require
    from mandate.resource import Principal, ResourceServer

    rs = ResourceServer("https://mandate.example", "orders-api")
    app = FastAPI()
    app.include_router(metadata_router(rs))

    @app.get("/orders")
    async def orders(who: Principal = Depends(require(rs, "orders:read"))):
        return {"for": who.subject, "chain": str(who)}

Security events: ``app.include_router(ssf_router(rs.ssf_receiver(authorization=...)))`` receives
mandate's pushed SETs at ``POST /ssf/events``, after which a revoked token is refused at once
(see :mod:`mandate.ssf`).

Refusals are ``HTTPException``s with the RFC 6750 §3 status and ``WWW-Authenticate`` header.
DPoP-bound tokens (RFC 9449) are checked against the request's method and URL; behind a reverse
proxy give the :class:`~mandate.resource.ResourceServer` its ``external_url``.
The Starlette pieces (:class:`~mandate.starlette.MandateMiddleware`, ...) work in FastAPI too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

try:
    from fastapi import APIRouter, HTTPException, Request, Security
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
except ImportError as e:  # pragma: no cover
    raise ImportError("mandate.fastapi needs the `fastapi` extra: pip install 'mandate-sdk[fastapi]'") from e

from .resource import BearerError, Principal, ResourceServer
from .ssf import SsfReceiver
from .starlette import MandateMiddleware, get_principal, metadata_response, metadata_route, requires, ssf_endpoint

__all__ = [
    "MandateMiddleware",
    "get_principal",
    "metadata_route",
    "metadata_router",
    "require",
    "requires",
    "ssf_router",
]

# Only so that OpenAPI documents the routes as bearer-protected; the header is read below.
_bearer_scheme = HTTPBearer(auto_error=False, description="An access token issued by mandate")


def require(resource_server: ResourceServer, *scopes: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the request's :class:`Principal`, once its token is verified (with its
    DPoP proof when it is bound, RFC 9449 §7) and carries every one of ``scopes``; else
    401/403/400 as RFC 6750 §3 and RFC 9449 §7.1 say."""

    async def dependency(
        request: Request,
        _: HTTPAuthorizationCredentials | None = Security(_bearer_scheme),
    ) -> Principal:
        try:
            return await resource_server.authenticate(
                request.headers.get("authorization"),
                scopes,
                method=request.method,
                url=str(request.url),
                dpop=request.headers.getlist("dpop"),
            )
        except BearerError as e:
            raise HTTPException(
                status_code=e.status,
                detail=e.description or "a bearer token is required",
                headers=resource_server.response_headers(e),
            ) from None

    return dependency


def metadata_router(resource_server: ResourceServer) -> APIRouter:
    """An ``APIRouter`` serving the RFC 9728 document at its well-known path."""
    router = APIRouter()

    @router.get(resource_server.metadata_path, include_in_schema=False)
    async def protected_resource_metadata() -> Any:
        return metadata_response(resource_server)

    return router


def ssf_router(receiver: SsfReceiver, path: str = "/ssf/events") -> APIRouter:
    """An ``APIRouter`` receiving mandate's pushed SETs (RFC 8935) at ``POST path`` (the
    stream's ``endpoint_url``): 202, 400 ``{"err": ...}``, 401 for a wrong credential, 400 for a
    body over ``receiver.max_body``. Not behind :func:`require`: mandate authenticates with the
    stream's credential."""
    router = APIRouter()
    router.add_api_route(path, ssf_endpoint(receiver), methods=["POST"], include_in_schema=False)
    return router
