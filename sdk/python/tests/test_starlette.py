"""The Starlette path: MandateMiddleware around an ASGI app (serving the RFC 9728 document
itself) and `requires` on one endpoint, with tokens the real mandate issued."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from mandate.resource import ResourceServer
from mandate.starlette import MandateMiddleware, get_principal, metadata_route, requires

from .conftest import Mandate
from .test_resource import bearer, challenge

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def build(mandate: Mandate) -> Starlette:
    rs = ResourceServer(mandate.url, "orders-api", resource_metadata_url="http://api.test/.well-known/oauth-protected-resource")

    async def who(request: Request) -> Response:
        return JSONResponse({"chain": str(get_principal(request))})

    @requires(rs, "orders:write")
    async def write(request: Request) -> Response:
        return JSONResponse({"chain": str(get_principal(request))})

    inner = Starlette(routes=[Route("/who", who)])
    return Starlette(
        routes=[
            metadata_route(rs),
            Route("/write", write, methods=["POST"]),
            Mount("/api", app=MandateMiddleware(inner, rs, scopes=["orders:read"])),
        ]
    )


async def test_middleware_and_requires_rfc6750(mandate: Mandate, tokens: dict[str, str]) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(build(mandate)), base_url="http://api.test") as http:
        r = await http.get("/api/who", headers=bearer(tokens["chain"]))
        assert r.status_code == 200 and r.json() == {"chain": "alice → planner → payments-bot"}
        r = await http.get("/api/who")
        assert r.status_code == 401 and "error=" not in challenge(r)
        r = await http.get("/api/who", headers=bearer(tokens["other_audience"]))
        assert r.status_code == 401 and 'error="invalid_token"' in challenge(r)
        assert r.json()["error"] == "invalid_token"
        # requires(): its own scope, which this token lacks (RFC 6750 §3.1 insufficient_scope).
        r = await http.post("/write", headers=bearer(tokens["chain"]))
        assert r.status_code == 403 and 'scope="orders:write"' in challenge(r)
        r = await http.get("/.well-known/oauth-protected-resource")
        assert r.status_code == 200 and r.json()["authorization_servers"] == [mandate.url]
