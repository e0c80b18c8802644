"""The resource-server side: a FastAPI app protected by `mandate.fastapi.require`, in both
verification modes (JWT against the JWKS, RFC 7662 introspection), presented with tokens the
real mandate issued, forged ones, expired ones, ones for another audience; RFC 6750 §3
answers; RFC 9728 metadata."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from fastapi import Depends, FastAPI
from joserfc import jwt
from joserfc.jwk import ECKey
from joserfc.jws import extract_compact

from mandate import MandateClient, SyncAgentSession, SyncMandateClient
from mandate.fastapi import metadata_router, require
from mandate.resource import Principal, ResourceServer

from .conftest import ALICE, MANDATE_BIN, ORDERS_RS, RUNTIME, SHORT_RS, Mandate, Person

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_app(rs: ResourceServer) -> FastAPI:
    app = FastAPI()
    app.include_router(metadata_router(rs))

    @app.get("/orders")
    async def orders(who: Principal = Depends(require(rs, "orders:read"))) -> dict[str, Any]:
        return {
            "chain": str(who),
            "subject": who.subject,
            "agent": who.agent.name if who.agent else None,
            "actors": [a.subject for a in who.actors],
            "attestation": who.attestation,
            "scopes": sorted(who.scopes),
            "session_id": who.session_id,
            "client_id": who.client_id,
            "token_id": who.token_id,
            "audience": list(who.audience),
        }

    @app.post("/orders")
    async def write(who: Principal = Depends(require(rs, "orders:write"))) -> dict[str, str]:
        return {"ok": str(who)}

    return app


def resource_server(mandate: Mandate, mode: str, audience: str = "orders-api", creds: tuple[str, str] = ORDERS_RS, **kw: Any) -> ResourceServer:
    if mode == "introspection":
        kw.update(client_id=creds[0], client_secret=creds[1])
    return ResourceServer(
        mandate.url,
        audience,
        mode=mode,  # type: ignore[arg-type]
        resource_metadata_url="http://orders.test/.well-known/oauth-protected-resource",
        scopes_supported=["orders:read", "orders:write"],
        resource_name="Orders",
        **kw,
    )


@pytest.fixture(params=["jwt", "introspection"])
async def api(request: pytest.FixtureRequest, mandate: Mandate) -> AsyncIterator[tuple[httpx.AsyncClient, ResourceServer]]:
    rs = resource_server(mandate, request.param)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(make_app(rs)), base_url="http://orders.test") as http:
        yield http, rs
    await rs.aclose()


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def challenge(resp: httpx.Response) -> str:
    return resp.headers.get("www-authenticate", "")


async def test_a_delegated_token_reaches_the_route_with_its_principal(api, tokens) -> None:  # type: ignore[no-untyped-def]
    http, _ = api
    r = await http.get("/orders", headers=bearer(tokens["chain"]))
    assert r.status_code == 200, r.text
    who = r.json()
    assert who["chain"] == "alice → planner → payments-bot"
    assert who["subject"] == "alice" and who["agent"] == "payments-bot"
    assert who["actors"] == ["agent:planner", "agent:payments-bot"]
    assert who["scopes"] == ["orders:read"] and who["audience"] == ["orders-api"]
    assert who["session_id"] and who["token_id"] and who["client_id"] == "agent-runtime"
    assert who["attestation"] == "software"  # mandate's `att`: how the acting agent proved itself


async def test_missing_token_is_401_without_error_rfc6750_3_1(api) -> None:  # type: ignore[no-untyped-def]
    http, _ = api
    r = await http.get("/orders")
    assert r.status_code == 401
    c = challenge(r)
    assert c.startswith("Bearer ") and "error=" not in c
    assert 'realm="orders-api"' in c
    # RFC 9728 §5.1: where the resource's metadata is.
    assert 'resource_metadata="http://orders.test/.well-known/oauth-protected-resource"' in c
    # Another scheme is no bearer token either.
    r = await http.get("/orders", headers={"authorization": "Basic YWxpY2U6cHc="})
    assert r.status_code == 401 and "error=" not in challenge(r)


async def test_malformed_authorization_is_400_invalid_request_rfc6750_3_1(api) -> None:  # type: ignore[no-untyped-def]
    http, _ = api
    for value in (b"Bearer", b"Bearer a b", "Bearer ä".encode()):
        r = await http.get("/orders", headers={"authorization": value})
        assert r.status_code == 400, value
        assert 'error="invalid_request"' in challenge(r)


async def test_insufficient_scope_is_403_naming_the_scope_rfc6750_3_1(api, tokens) -> None:  # type: ignore[no-untyped-def]
    http, _ = api
    r = await http.post("/orders", headers=bearer(tokens["chain"]))
    assert r.status_code == 403
    c = challenge(r)
    assert 'error="insufficient_scope"' in c and 'scope="orders:write"' in c


async def test_a_token_for_another_audience_is_invalid_token_rfc9068_4(api, tokens) -> None:  # type: ignore[no-untyped-def]
    http, _ = api
    r = await http.get("/orders", headers=bearer(tokens["other_audience"]))
    assert r.status_code == 401
    assert 'error="invalid_token"' in challenge(r)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged_tokens(real: str) -> dict[str, str]:
    """Tokens with real-looking claims that mandate never signed."""
    obj = extract_compact(real.encode())
    header, claims = obj.headers(), json.loads(obj.payload)
    other = ECKey.generate_key("P-256", private=True)
    none_header = {"alg": "none", "typ": "at+jwt", "kid": header["kid"]}
    return {
        # RFC 7515 §5.2: a signature by another key, under mandate's kid.
        "another key, mandate's kid": jwt.encode(header, claims, other, algorithms=["ES256"]),
        "another key, unknown kid": jwt.encode({**header, "kid": "not-a-mandate-key"}, claims, other, algorithms=["ES256"]),
        # RFC 8725 §2.1 / §3.1: alg none, unsigned.
        "alg none": f"{_b64(json.dumps(none_header).encode())}.{_b64(json.dumps(claims).encode())}.",
        # A real signature with a part changed.
        "claims changed": f"{real.split('.')[0]}.{_b64(json.dumps({**claims, 'scope': 'orders:read orders:write'}).encode())}.{real.split('.')[2]}",
        "not a JWT": "abc.def",
    }


async def test_forged_tokens_are_invalid_token_rfc6750_3_1(api, tokens) -> None:  # type: ignore[no-untyped-def]
    http, _ = api
    for name, token in forged_tokens(tokens["chain"]).items():
        r = await http.get("/orders", headers=bearer(token))
        assert r.status_code == 401, name
        assert 'error="invalid_token"' in challenge(r), name


async def test_a_jwt_that_is_not_an_access_token_is_refused_rfc9068_4(api, tokens) -> None:  # type: ignore[no-untyped-def]
    # The agent token is signed by mandate's key but has typ JWT (it is no access token).
    http, rs = api
    r = await http.get("/orders", headers=bearer(tokens["agent_token"]))
    assert r.status_code == 401 and 'error="invalid_token"' in challenge(r)
    if rs.mode == "jwt":
        assert "at+jwt" in r.json()["detail"]


async def test_expired_tokens_are_invalid_token(mandate: Mandate) -> None:
    # Tokens for short-api live 2 s (the test policy's @max_ttl); no leeway on this verifier.
    alice = Person(mandate.url, *ALICE).token("orders:read")
    async with MandateClient(mandate.url, *RUNTIME) as c:
        from mandate import AgentSession

        t = await AgentSession(c, "planner", mandate.keys["planner"]).act_for(alice, scope="orders:read", audience="short-api")
    # The introspecting one caches for 30 s, but never past the token's exp (RFC 7662 §4).
    verifiers = [resource_server(mandate, m, "short-api", SHORT_RS, leeway=0) for m in ("jwt", "introspection")]
    for rs in verifiers:
        assert (await rs.authenticate(f"Bearer {t.access_token}", ["orders:read"])).subject == "alice"
    await anyio.sleep(max(t.expires_in(), 0) + 1.1)
    for rs in verifiers:
        app = make_app(rs)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://orders.test") as http:
            r = await http.get("/orders", headers=bearer(t.access_token))
        assert r.status_code == 401, rs.mode
        assert 'error="invalid_token"' in challenge(r)
        await rs.aclose()


async def test_revoked_tokens_fail_introspection_at_once_rfc7662(mandate: Mandate, tokens: dict[str, str]) -> None:
    alice = Person(mandate.url, *ALICE).token("orders:read")
    async with MandateClient(mandate.url, *RUNTIME) as c:
        from mandate import AgentSession

        planner = AgentSession(c, "planner", mandate.keys["planner"])
        t = await planner.act_for(alice, scope="orders:read", audience="orders-api")
        await planner.revoke(t)
    introspecting = resource_server(mandate, "introspection")
    with pytest.raises(Exception) as e:
        await introspecting.authenticate(f"Bearer {t.access_token}")
    assert getattr(e.value, "error", None) == "invalid_token"
    # JWT mode cannot know (documented): the signature and claims still hold until exp.
    local = resource_server(mandate, "jwt")
    assert (await local.authenticate(f"Bearer {t.access_token}")).subject == "alice"
    await introspecting.aclose()
    await local.aclose()


async def test_introspection_answers_are_cached_briefly(mandate: Mandate, tokens: dict[str, str]) -> None:
    calls = 0

    async def count(request: httpx.Request) -> None:
        nonlocal calls
        if request.url.path == "/introspect":
            calls += 1

    async with httpx.AsyncClient(event_hooks={"request": [count]}) as http:
        rs = resource_server(mandate, "introspection", http=http)
        for _ in range(3):
            await rs.authenticate(f"Bearer {tokens['chain']}")
        assert calls == 1
        # Negative answers are not cached.
        for _ in range(2):
            with pytest.raises(Exception):
                await rs.authenticate(f"Bearer {tokens['other_audience']}x")
        assert calls == 3


async def test_jwks_is_cached_and_an_unknown_kid_refetches_at_most_every_30s(mandate: Mandate, tokens: dict[str, str]) -> None:
    fetches = 0

    async def count(request: httpx.Request) -> None:
        nonlocal fetches
        if request.url.path == "/jwks.json":
            fetches += 1

    async with httpx.AsyncClient(event_hooks={"request": [count]}) as http:
        rs = resource_server(mandate, "jwt", http=http)
        for _ in range(3):
            await rs.authenticate(f"Bearer {tokens['chain']}")
        assert fetches == 1
        forged = forged_tokens(tokens["chain"])["another key, unknown kid"]
        for _ in range(3):
            with pytest.raises(Exception):
                await rs.authenticate(f"Bearer {forged}")
        assert fetches == 2, "one refetch for the unknown kid, not one per request"


async def test_key_rotation_is_followed_through_the_jwks(mandate_quick_ciba: Mandate) -> None:
    # A separate server (rotating keys changes what every verifier of it sees).
    m = mandate_quick_ciba
    alice = Person(m.url, *ALICE).token("orders:read")
    with SyncMandateClient(m.url, *RUNTIME) as c:
        planner = SyncAgentSession(c, "planner", m.keys["planner"])
        before = planner.act_for(alice, scope="orders:read", audience="orders-api")
        rs = resource_server(m, "jwt")
        await rs.authenticate(f"Bearer {before.access_token}")
        old_kid = extract_compact(before.access_token.encode()).headers()["kid"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MANDATE_")}
        # Twice: the first makes the published next key (already in the JWKS) sign; the second
        # a key no verifier has seen.
        for _ in range(2):
            subprocess.run([MANDATE_BIN, "keys", "rotate", "--config", str(m.dir / "mandate.toml")], env=env, check=True, capture_output=True)
        deadline = time.monotonic() + 10
        while True:
            after = planner.act_for(alice, scope="orders:read", audience="orders-api")
            kid = extract_compact(after.access_token.encode()).headers()["kid"]
            if kid != old_kid and kid not in {k.kid for k in rs._jwks.keys}:  # type: ignore[union-attr]
                break
            assert time.monotonic() < deadline, "the server never signed with a new key"
            await anyio.sleep(0.5)
    assert (await rs.authenticate(f"Bearer {after.access_token}")).subject == "alice"
    # Tokens signed before the rotation still verify (the old key stays published).
    assert (await rs.authenticate(f"Bearer {before.access_token}")).subject == "alice"
    await rs.aclose()


async def test_protected_resource_metadata_rfc9728_3(api, mandate: Mandate) -> None:  # type: ignore[no-untyped-def]
    http, _ = api
    r = await http.get("/.well-known/oauth-protected-resource")
    assert r.status_code == 200
    assert r.json() == {
        "resource": "orders-api",
        "authorization_servers": [mandate.url],
        "bearer_methods_supported": ["header"],
        "scopes_supported": ["orders:read", "orders:write"],
        "resource_name": "Orders",
    }


def test_metadata_path_of_a_resource_uri_with_a_path_rfc9728_3_1(mandate: Mandate) -> None:
    rs = ResourceServer(mandate.url, "https://api.example.com/mcp")
    assert rs.metadata_path == "/.well-known/oauth-protected-resource/mcp"
    assert rs.resource_metadata_url == "https://api.example.com/.well-known/oauth-protected-resource/mcp"
    assert ResourceServer(mandate.url, "https://api.example.com/").metadata_path == "/.well-known/oauth-protected-resource"


def test_sync_verification_for_wsgi_apps(mandate: Mandate, tokens: dict[str, str]) -> None:
    for mode in ("jwt", "introspection"):
        rs = resource_server(mandate, mode)
        assert str(rs.authenticate_sync(f"Bearer {tokens['chain']}", ["orders:read"])) == "alice → planner → payments-bot"
        with pytest.raises(Exception) as e:
            rs.authenticate_sync(f"Bearer {tokens['other_audience']}")
        assert getattr(e.value, "status", None) == 401


async def test_mandate_unreachable_or_refusing_the_rs_is_503_not_invalid_token(mandate: Mandate, tokens) -> None:  # type: ignore[no-untyped-def]
    """When mandate cannot be asked, the token may be fine: 503 with Retry-After (RFC 9110
    §10.2.3) and no Bearer challenge, so a client keeps its token instead of throwing it away
    and asking the same unreachable server for another (RFC 6750 §3.1 `invalid_token` is for
    tokens that are bad)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens once closed
    unreachable = [
        ResourceServer(nowhere, "orders-api"),
        ResourceServer(nowhere, "orders-api", mode="introspection", client_id="orders-api", client_secret="x"),
        # mandate up, but refusing this resource server's introspection credentials.
        resource_server(mandate, "introspection", creds=(ORDERS_RS[0], "not-the-secret")),
    ]
    for rs in unreachable:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(make_app(rs)), base_url="http://orders.test") as http:
            r = await http.get("/orders", headers=bearer(tokens["chain"]))
        await rs.aclose()
        assert r.status_code == 503, (rs, r.text)
        assert r.headers["retry-after"] == "5"
        assert "www-authenticate" not in r.headers
        assert tokens["chain"] not in r.text
