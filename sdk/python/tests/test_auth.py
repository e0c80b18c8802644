"""MandateAuth (httpx.Auth): attaches a delegated token, exchanges again before it expires and
once on a 401 invalid_token (RFC 6750 §3.1), for AsyncClient and Client, against a FastAPI app
served by uvicorn and verified by introspection (so revocation shows at once)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from fastapi import Depends, FastAPI

from mandate import AgentSession, MandateClient, OAuthError, SyncAgentSession, SyncMandateClient
from mandate.auth import MandateAuth
from mandate.fastapi import require
from mandate.resource import Principal, ResourceServer

from .conftest import ALICE, ORDERS_RS, RUNTIME, SHORT_RS, Mandate, Person, Served

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def api(mandate: Mandate, audience: str, creds: tuple[str, str]) -> FastAPI:
    rs = ResourceServer(mandate.url, audience, mode="introspection", client_id=creds[0], client_secret=creds[1], cache_ttl=0)
    app = FastAPI()

    @app.api_route("/whoami", methods=["GET", "POST"])
    async def whoami(who: Principal = Depends(require(rs, "orders:read"))) -> dict[str, Any]:
        return {"chain": str(who), "jti": who.token_id}

    return app


@pytest.fixture(scope="module")
def servers(mandate: Mandate) -> Iterator[dict[str, str]]:
    orders = Served(api(mandate, "orders-api", ORDERS_RS))
    short = Served(api(mandate, "short-api", SHORT_RS))
    yield {"orders": orders.url, "short": short.url}
    orders.stop()
    short.stop()


async def test_attaches_and_reuses_a_delegated_token(mandate: Mandate, servers: dict[str, str], alice: str) -> None:
    async with MandateClient(mandate.url, *RUNTIME) as c:
        auth = MandateAuth(AgentSession(c, "planner", mandate.keys["planner"]), alice, scope="orders:read", audience="orders-api")
        async with httpx.AsyncClient(auth=auth, base_url=servers["orders"]) as http:
            one = (await http.get("/whoami")).json()
            two = (await http.post("/whoami", json={"x": 1})).json()
    assert one["chain"] == "alice → planner"
    assert one["jti"] == two["jti"], "one exchange while the token is fresh"
    assert auth.token is not None and auth.token.access_token not in repr(auth)


async def test_exchanges_again_before_the_token_expires(mandate: Mandate, servers: dict[str, str], alice: str) -> None:
    # short-api tokens live 2 s; with a 1.5 s margin the token is due again after ~0.5 s.
    async with MandateClient(mandate.url, *RUNTIME) as c:
        auth = MandateAuth(AgentSession(c, "planner", mandate.keys["planner"]), alice, scope="orders:read", audience="short-api", margin=1.5)
        async with httpx.AsyncClient(auth=auth, base_url=servers["short"]) as http:
            one = (await http.get("/whoami")).json()
            await anyio.sleep(0.7)
            r = await http.get("/whoami")
    assert r.status_code == 200 and r.json()["jti"] != one["jti"]


async def test_a_401_invalid_token_exchanges_once_and_retries_rfc6750_3_1(mandate: Mandate, servers: dict[str, str], alice: str) -> None:
    sent: list[int] = []

    async def log(response: httpx.Response) -> None:
        sent.append(response.status_code)

    async with MandateClient(mandate.url, *RUNTIME) as c:
        planner = AgentSession(c, "planner", mandate.keys["planner"])
        auth = MandateAuth(planner, alice, scope="orders:read", audience="orders-api")
        async with httpx.AsyncClient(auth=auth, base_url=servers["orders"], event_hooks={"response": [log]}) as http:
            first = (await http.get("/whoami")).json()
            assert auth.token is not None
            await planner.revoke(auth.token)  # the delegated token only: alice's stays live
            r = await http.get("/whoami")
            assert r.status_code == 200 and r.json()["jti"] != first["jti"]
            assert sent == [200, 401, 200]
            # With alice's own token revoked, the new exchange is refused, and says so.
            # (RFC 7009: by the client it was issued to, the public client `cli`.)
            revoked = await c.http.post(f"{mandate.url}/revoke", data={"token": alice, "client_id": "cli"})
            assert revoked.status_code == 200
            with pytest.raises(OAuthError) as e:
                await http.get("/whoami")
            assert e.value.error == "invalid_grant"


def test_sync_client_with_a_sync_session(mandate: Mandate, servers: dict[str, str]) -> None:
    alice = Person(mandate.url, *ALICE).token("orders:read")
    with SyncMandateClient(mandate.url, *RUNTIME) as c:
        planner = SyncAgentSession(c, "planner", mandate.keys["planner"])
        payer = SyncAgentSession(c, "payments-bot", mandate.keys["payments-bot"])
        mine = planner.act_for(alice, scope="orders:read", audience="orders-api")
        # A sub-agent's auth: its token comes from the planner's delegation.
        auth = MandateAuth(source=lambda: planner.delegate(mine, payer.token()))
        with httpx.Client(auth=auth, base_url=servers["orders"]) as http:
            r = http.get("/whoami")
        assert r.status_code == 200 and r.json()["chain"] == "alice → planner → payments-bot"
        with pytest.raises(TypeError):
            MandateAuth(AgentSession(MandateClient(mandate.url, *RUNTIME), "planner", mandate.keys["planner"]), alice)._sync_current()
