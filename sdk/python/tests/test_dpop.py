"""RFC 9449 DPoP through the SDK, against the real mandate of conftest.py: each hop of
alice → planner → payments-bot bound to its own agent's key, a FastAPI route that takes the
sub-agent's call with its proof and refuses the same token without the key, CIBA with a bound
agent token, and the nonce dance with a server that requires nonces."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from fastapi import Depends, FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.applications import Starlette
from joserfc import jwt

from mandate import (
    AgentSession,
    DelegatedToken,
    DPoPKey,
    MandateAuth,
    MandateClient,
    OAuthError,
    SyncAgentSession,
    SyncMandateClient,
    read_chain,
)
from mandate.chain import unverified_claims
from mandate.dpop import access_token_hash
from mandate.fastapi import require
from mandate.resource import Principal, ResourceServer

from .conftest import ALICE, ORDERS_RS, RUNTIME, Mandate, Person, Served

pytestmark = pytest.mark.anyio

ORDERS = "http://orders.test/orders"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_app(rs: ResourceServer) -> FastAPI:
    app = FastAPI()

    @app.get("/orders")
    async def orders(who: Principal = Depends(require(rs, "orders:read"))) -> dict[str, Any]:
        return {"chain": str(who), "jkt": who.dpop_jkt}

    @app.post("/orders")
    async def write(who: Principal = Depends(require(rs, "orders:read"))) -> dict[str, Any]:
        return {"chain": str(who), "jkt": who.dpop_jkt}

    return app


@pytest.fixture
async def client(mandate: Mandate) -> AsyncIterator[MandateClient]:
    async with MandateClient(mandate.url, *RUNTIME) as c:
        yield c


class Hops:
    def __init__(self, planner: AgentSession, payer: AgentSession, mine: DelegatedToken, sub: DelegatedToken) -> None:
        self.planner, self.payer, self.mine, self.sub = planner, payer, mine, sub


@pytest.fixture
async def hops(client: MandateClient, mandate: Mandate, alice: str) -> Hops:
    """alice → planner → payments-bot, each agent with a DPoP key of its own."""
    planner = AgentSession(client, "planner", mandate.keys["planner"], dpop=True)
    payer = AgentSession(client, "payments-bot", mandate.keys["payments-bot"], dpop=DPoPKey.generate())
    mine = await planner.act_for(alice, scope="orders:read orders:write", audience="orders-api")
    sub = await planner.delegate(mine, payer, scope="orders:read")
    return Hops(planner, payer, mine, sub)


def jkt_of(token: str) -> str | None:
    cnf = unverified_claims(token).get("cnf")
    return cnf.get("jkt") if isinstance(cnf, dict) else None


def challenge(r: httpx.Response) -> str:
    return r.headers.get("www-authenticate", "")


# --- the agent side ------------------------------------------------------------------------


async def test_rfc9449_s5_s6_each_hop_of_the_chain_is_bound_to_its_own_agents_key(
    hops: Hops, mandate: Mandate
) -> None:
    planner, payer, mine, sub = hops.planner, hops.payer, hops.mine, hops.sub
    assert planner.dpop_key is not None and payer.dpop_key is not None
    assert planner.dpop_key.jkt != payer.dpop_key.jkt
    # /attest with a proof: the agent tokens carry cnf.jkt of their own agent's key.
    assert jkt_of(await planner.token()) == planner.dpop_key.jkt
    assert jkt_of(await payer.token()) == payer.dpop_key.jkt
    # RFC 9449 §5: token_type DPoP; §6.1: cnf.jkt of the exchange proof's key.
    assert mine.token_type == "DPoP" and mine.dpop_bound and mine.dpop_key is planner.dpop_key
    assert jkt_of(mine.access_token) == planner.dpop_key.jkt
    # The sub-agent's token is bound to the sub-agent's key, not its parent's.
    assert sub.token_type == "DPoP" and sub.dpop_key is payer.dpop_key
    assert jkt_of(sub.access_token) == payer.dpop_key.jkt
    assert str(sub.chain) == "alice → planner → payments-bot"
    # RFC 9449 §6.2: introspection says so too.
    async with MandateClient(mandate.url, *ORDERS_RS) as rs:
        i = await rs.introspect(sub)
    assert i["active"] is True and i["token_type"] == "DPoP" and i["cnf"] == {"jkt": payer.dpop_key.jkt}
    # The key never shows.
    assert "DPoPKey(jkt=" in repr(payer.dpop_key) and sub.access_token not in repr(sub)


async def test_rfc9449_s7_1_a_bound_token_makes_dpop_headers_with_ath_htm_htu(hops: Hops) -> None:
    h = hops.sub.headers("POST", ORDERS + "?page=2#top")
    assert h["Authorization"] == f"DPoP {hops.sub.access_token}"
    proof = h["DPoP"]
    claims = unverified_claims(proof)
    assert claims["htm"] == "POST" and claims["htu"] == ORDERS, "§4.2: htu without query and fragment"
    assert claims["ath"] == access_token_hash(hops.sub.access_token)
    assert abs(claims["iat"] - time.time()) < 5 and claims["jti"]
    header = jwt.decode(proof, _public(hops.sub)).header
    assert header["typ"] == "dpop+jwt" and header["alg"] == "ES256" and "d" not in header["jwk"]
    assert hops.sub.headers("POST", ORDERS)["DPoP"] != proof, "a fresh jti each time"
    # A bearer token keeps the Bearer scheme and no proof.
    plain = DelegatedToken(hops.sub.access_token, hops.sub.expires_at, (), (), None, hops.sub.chain)
    assert plain.headers("GET", ORDERS) == {"Authorization": f"Bearer {hops.sub.access_token}"}


def _public(token: DelegatedToken) -> Any:
    from joserfc.jwk import ECKey

    assert token.dpop_key is not None
    return ECKey.import_key(token.dpop_key.public_jwk())


async def test_rfc9449_s5_a_bound_agent_token_copied_without_its_key_delegates_nothing(
    client: MandateClient, mandate: Mandate, alice: str
) -> None:
    planner = AgentSession(client, "planner", mandate.keys["planner"], dpop=True)
    stolen = await planner.token()
    # Without a proof, and with a proof by another key: invalid_grant.
    for key in (None, DPoPKey.generate()):
        with pytest.raises(OAuthError) as e:
            await client.exchange(alice, stolen, scope="orders:read", audience="orders-api", dpop=key)
        assert (e.value.error, e.value.status) == ("invalid_grant", 400)


async def test_rfc9449_s5_a_sub_agent_without_its_own_key_cannot_use_the_parents(
    hops: Hops, client: MandateClient, mandate: Mandate
) -> None:
    # The sub-agent's bound agent token with the planner's key signing the exchange: refused.
    with pytest.raises(OAuthError) as e:
        await hops.planner.delegate(hops.mine, await hops.payer.token(), dpop=hops.planner.dpop_key)
    assert e.value.error == "invalid_grant"


async def test_rfc9449_ciba_request_and_polls_are_signed_by_the_bound_agents_key(
    client: MandateClient, mandate: Mandate, alice: str, alice_person: Person
) -> None:
    payer = AgentSession(client, "payments-bot", mandate.keys["payments-bot"], dpop=True)
    req = await payer.request_approval(alice, scope="payments:write", audience="orders-api", binding_message="DPoP invoice 9449")
    await anyio.to_thread.run_sync(alice_person.decide, "DPoP invoice 9449", "Approve")
    # Approved, but a poll without the bound agent token's key gets no token.
    for key in (None, DPoPKey.generate()):
        with pytest.raises(OAuthError) as e:
            await client.poll(req, dpop=key)
        assert e.value.status == 400 and e.value.error != "authorization_pending", e.value
    t = await payer.wait_for_approval(req, timeout=20)
    assert payer.dpop_key is not None
    assert t.token_type == "DPoP" and jkt_of(t.access_token) == payer.dpop_key.jkt
    assert str(t.chain) == "alice → payments-bot"


def test_rfc9449_the_sync_twin_binds_each_hop_and_mandate_auth_calls_with_proofs(mandate: Mandate) -> None:
    alice = Person(mandate.url, *ALICE).token("orders:read")
    rs = ResourceServer(mandate.url, "orders-api")
    served = Served(make_app(rs))
    try:
        with SyncMandateClient(mandate.url, *RUNTIME) as c:
            planner = SyncAgentSession(c, "planner", mandate.keys["planner"], dpop=True)
            payer = SyncAgentSession(c, "payments-bot", mandate.keys["payments-bot"], dpop=True)
            mine = planner.act_for(alice, scope="orders:read", audience="orders-api")
            assert payer.dpop_key is not None and planner.dpop_key is not None
            auth = MandateAuth(source=lambda: planner.delegate(mine, payer))
            with httpx.Client(auth=auth, base_url=served.url) as http:
                r = http.get("/orders")
                assert r.status_code == 200, r.text
                assert r.json() == {"chain": "alice → planner → payments-bot", "jkt": payer.dpop_key.jkt}
                assert http.post("/orders").status_code == 200, "a proof per request: htm POST"
                # The same token as Bearer at the real server: refused (RFC 9449 §7.1).
                assert auth.token is not None
                r = httpx.get(served.url + "/orders", headers={"authorization": f"Bearer {auth.token.access_token}"})
                assert r.status_code == 401 and challenge(r).startswith("DPoP ")
    finally:
        served.stop()


# --- the resource server side --------------------------------------------------------------


@pytest.fixture(params=["jwt", "introspection"])
async def api(request: pytest.FixtureRequest, mandate: Mandate) -> AsyncIterator[httpx.AsyncClient]:
    kw: dict[str, Any] = {"client_id": ORDERS_RS[0], "client_secret": ORDERS_RS[1]} if request.param == "introspection" else {}
    rs = ResourceServer(mandate.url, "orders-api", mode=request.param, **kw)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(make_app(rs)), base_url="http://orders.test") as http:
        yield http
    await rs.aclose()


def refused(r: httpx.Response, error: str) -> None:
    assert r.status_code == 401, r.text
    c = challenge(r)
    # RFC 9449 §7.1: the DPoP scheme, its error, the algorithms accepted.
    assert c.startswith("DPoP "), c
    assert f'error="{error}"' in c, c
    assert 'algs="ES256' in c, c


async def test_rfc9449_s7_1_the_route_takes_the_sub_agents_call_with_its_proof(api: httpx.AsyncClient, hops: Hops) -> None:
    assert hops.payer.dpop_key is not None
    r = await api.get("/orders", headers=hops.sub.headers("GET", ORDERS))
    assert r.status_code == 200, r.text
    assert r.json() == {"chain": "alice → planner → payments-bot", "jkt": hops.payer.dpop_key.jkt}
    # Through MandateAuth: a fresh proof per request, for its method.
    async with httpx.AsyncClient(
        transport=api._transport, base_url="http://orders.test", auth=MandateAuth(source=lambda: hops.sub)
    ) as http:
        for _ in range(2):
            assert (await http.get("/orders")).status_code == 200
        assert (await http.post("/orders")).status_code == 200


async def test_rfc9449_s7_1_a_bound_token_sent_as_bearer_is_refused(api: httpx.AsyncClient, hops: Hops) -> None:
    refused(await api.get("/orders", headers={"authorization": f"Bearer {hops.sub.access_token}"}), "invalid_token")


async def test_rfc9449_s7_1_a_bound_token_without_a_proof_is_refused(api: httpx.AsyncClient, hops: Hops) -> None:
    refused(await api.get("/orders", headers={"authorization": f"DPoP {hops.sub.access_token}"}), "invalid_token")


async def test_rfc9449_s7_1_a_proof_by_another_key_is_refused(api: httpx.AsyncClient, hops: Hops) -> None:
    token = hops.sub.access_token
    thief = DPoPKey.generate()
    r = await api.get("/orders", headers={"authorization": f"DPoP {token}", "dpop": thief.proof("GET", ORDERS, access_token=token)})
    refused(r, "invalid_token")
    # Nor by the parent agent's key: the sub-agent's token is bound to the sub-agent.
    assert hops.planner.dpop_key is not None
    parent = hops.planner.dpop_key.proof("GET", ORDERS, access_token=token)
    refused(await api.get("/orders", headers={"authorization": f"DPoP {token}", "dpop": parent}), "invalid_token")


async def test_rfc9449_s4_3_a_proof_for_another_url_or_method_is_refused(api: httpx.AsyncClient, hops: Hops) -> None:
    refused(await api.get("/orders", headers=hops.sub.headers("GET", "http://orders.test/other")), "invalid_dpop_proof")
    refused(await api.get("/orders", headers=hops.sub.headers("GET", "https://orders.test/orders")), "invalid_dpop_proof")
    refused(await api.get("/orders", headers=hops.sub.headers("POST", ORDERS)), "invalid_dpop_proof")
    # The query is no part of htu (§4.3 check 9): a proof for the path alone is good.
    assert (await api.get("/orders?page=2", headers=hops.sub.headers("GET", ORDERS))).status_code == 200


async def test_rfc9449_s11_1_a_replayed_proof_is_refused(api: httpx.AsyncClient, hops: Hops) -> None:
    h = hops.sub.headers("GET", ORDERS)
    assert (await api.get("/orders", headers=h)).status_code == 200
    refused(await api.get("/orders", headers=h), "invalid_dpop_proof")


async def test_rfc9449_s4_3_a_proof_with_the_ath_of_another_token_is_refused(api: httpx.AsyncClient, hops: Hops) -> None:
    assert hops.payer.dpop_key is not None
    wrong = hops.payer.dpop_key.proof("GET", ORDERS, access_token=hops.mine.access_token)
    r = await api.get("/orders", headers={"authorization": f"DPoP {hops.sub.access_token}", "dpop": wrong})
    refused(r, "invalid_dpop_proof")
    no_ath = hops.payer.dpop_key.proof("GET", ORDERS)
    r = await api.get("/orders", headers={"authorization": f"DPoP {hops.sub.access_token}", "dpop": no_ath})
    refused(r, "invalid_dpop_proof")


async def test_rfc9449_s4_3_stale_malformed_and_doubled_proofs_are_refused(api: httpx.AsyncClient, hops: Hops) -> None:
    key = hops.payer.dpop_key
    assert key is not None
    token = hops.sub.access_token
    auth = {"authorization": f"DPoP {token}"}

    def signed(header: dict[str, Any], claims: dict[str, Any]) -> str:
        return jwt.encode(header, claims, key._key, algorithms=["ES256"])

    good_claims = {"jti": "x" * 20, "htm": "GET", "htu": ORDERS, "iat": int(time.time()), "ath": access_token_hash(token)}
    hdr = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.public_jwk()}
    # §4.3 check 11: iat too old, or too far ahead.
    for iat in (int(time.time()) - 600, int(time.time()) + 600):
        r = await api.get("/orders", headers={**auth, "dpop": signed(hdr, {**good_claims, "jti": f"t{iat}", "iat": iat})})
        refused(r, "invalid_dpop_proof")
    # §4.3 check 4: typ dpop+jwt.
    r = await api.get("/orders", headers={**auth, "dpop": signed({**hdr, "typ": "JWT"}, {**good_claims, "jti": "typ"})})
    refused(r, "invalid_dpop_proof")
    # §4.3 check 7: the jwk must not hold a private key.
    private = {**hdr, "jwk": key._key.as_dict(private=True)}
    refused(await api.get("/orders", headers={**auth, "dpop": signed(private, {**good_claims, "jti": "priv"})}), "invalid_dpop_proof")
    # Not a JWT at all.
    refused(await api.get("/orders", headers={**auth, "dpop": "not-a-proof"}), "invalid_dpop_proof")
    # §4.3 check 1: exactly one DPoP header.
    two = [("authorization", auth["authorization"]), ("dpop", hops.sub.headers("GET", ORDERS)["DPoP"]), ("dpop", hops.sub.headers("GET", ORDERS)["DPoP"])]
    refused(await api.get("/orders", headers=two), "invalid_dpop_proof")
    # And the well-formed one goes through.
    assert (await api.get("/orders", headers={**auth, "dpop": signed(hdr, good_claims)})).status_code == 200


async def test_rfc9449_s7_2_an_unbound_token_keeps_bearer_and_is_refused_as_dpop(
    api: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    assert (await api.get("/orders", headers={"authorization": f"Bearer {tokens['chain']}"})).status_code == 200
    proof = DPoPKey.generate().proof("GET", ORDERS, access_token=tokens["chain"])
    r = await api.get("/orders", headers={"authorization": f"DPoP {tokens['chain']}", "dpop": proof})
    refused(r, "invalid_token")


async def test_rfc9449_s7_1_the_external_url_behind_a_proxy_is_what_htu_names(mandate: Mandate, hops: Hops) -> None:
    # The app sees http://10.0.0.5:8080/orders; clients reach it at https://api.example/shop/orders.
    rs = ResourceServer(mandate.url, "orders-api", external_url="https://api.example/shop")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(make_app(rs)), base_url="http://10.0.0.5:8080") as http:
        r = await http.get("/orders", headers=hops.sub.headers("GET", "https://api.example/shop/orders"))
        assert r.status_code == 200, r.text
        refused(await http.get("/orders", headers=hops.sub.headers("GET", "http://10.0.0.5:8080/orders")), "invalid_dpop_proof")
    await rs.aclose()


# --- nonces --------------------------------------------------------------------------------


async def test_rfc9449_s8_use_dpop_nonce_is_retried_once_and_the_nonce_cached(mandate_dpop_nonce: Mandate) -> None:
    m = mandate_dpop_nonce
    alice = Person(m.url, *ALICE).token("orders:read orders:write")
    seen: list[tuple[str, int, str | None, bool]] = []

    async def record(response: httpx.Response) -> None:
        await response.aread()
        error = None
        if response.status_code == 400:
            error = response.json().get("error")
        proof = response.request.headers.get("dpop")
        has_nonce = proof is not None and "nonce" in unverified_claims(proof)
        seen.append((response.request.url.path, response.status_code, error, has_nonce))

    async with MandateClient(m.url, *RUNTIME) as c:
        c.http.event_hooks["response"].append(record)
        planner = AgentSession(c, "planner", m.keys["planner"], dpop=True)
        payer = AgentSession(c, "payments-bot", m.keys["payments-bot"], dpop=True)
        mine = await planner.act_for(alice, scope="orders:read orders:write", audience="orders-api")
        sub = await planner.delegate(mine, payer, scope="orders:read")
    assert planner.dpop_key is not None and payer.dpop_key is not None
    assert jkt_of(mine.access_token) == planner.dpop_key.jkt and jkt_of(sub.access_token) == payer.dpop_key.jkt
    attests = [s for s in seen if s[0] == "/attest"]
    # The first proof had no nonce: 400 use_dpop_nonce, then once more with the DPoP-Nonce
    # (and a new attestation challenge: mandate spends the first even when it refuses the proof).
    assert [s[0] for s in seen[:4]] == ["/attest/challenge", "/attest", "/attest/challenge", "/attest"], seen
    assert attests[0] == ("/attest", 400, "use_dpop_nonce", False), seen
    assert attests[1] == ("/attest", 200, None, True), seen
    # Later proofs carry the cached nonce from the start: no more use_dpop_nonce.
    assert all(s[3] for s in seen if s[0] in ("/attest", "/token") and s != attests[0]), seen
    assert [s for s in seen if s[2] == "use_dpop_nonce"] == [attests[0]], seen
    assert [s for s in seen if s[0] == "/token"] == [("/token", 200, None, True)] * 2, seen


async def test_rfc9449_s9_mandate_auth_retries_once_on_a_resource_servers_nonce_challenge(hops: Hops) -> None:
    """A resource server that wants nonces (§9): 401 DPoP error="use_dpop_nonce" with a
    DPoP-Nonce; MandateAuth sends the request again with that nonce in a new proof."""
    issued = ["n-1"]
    calls: list[str | None] = []

    async def endpoint(request: Request) -> Response:
        nonce = unverified_claims(request.headers["dpop"]).get("nonce")
        calls.append(nonce)
        if nonce != issued[-1]:
            return Response(
                status_code=401,
                headers={"WWW-Authenticate": 'DPoP error="use_dpop_nonce", algs="ES256"', "DPoP-Nonce": issued[-1]},
            )
        issued.append(f"n-{len(issued) + 1}")
        return JSONResponse({"ok": True}, headers={"DPoP-Nonce": issued[-1]})

    app = Starlette(routes=[Route("/orders", endpoint)])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://orders.test", auth=MandateAuth(source=lambda: hops.sub)
    ) as http:
        assert (await http.get("/orders")).status_code == 200
        # The nonce of the last answer goes in the next proof: no challenge this time.
        assert (await http.get("/orders")).status_code == 200
    assert calls == [None, "n-1", "n-2"]


def test_rfc9449_s8_use_dpop_nonce_is_retried_once_only_sans_io() -> None:
    """The sans-IO core: a second use_dpop_nonce is the answer (no loop), each try has a fresh
    proof with the nonce the server last sent, and that nonce is kept for the next call."""
    from mandate._core import ClientCore, HttpRequest, HttpResponse

    core = ClientCore("https://as.example", "c", "s")
    key = DPoPKey.generate()
    op = core.send(HttpRequest("POST", "https://as.example/token", {}, b""), key)
    first = next(op)
    assert isinstance(first, HttpRequest) and "nonce" not in unverified_claims(first.headers["dpop"])
    jti1 = unverified_claims(first.headers["dpop"])["jti"]
    nonce_answer = b'{"error":"use_dpop_nonce"}'
    second = op.send(HttpResponse(400, {"dpop-nonce": "n1"}, nonce_answer))
    assert isinstance(second, HttpRequest)
    claims = unverified_claims(second.headers["dpop"])
    assert claims["nonce"] == "n1" and claims["jti"] != jti1
    with pytest.raises(StopIteration) as done:
        op.send(HttpResponse(400, {"dpop-nonce": "n2"}, nonce_answer))
    assert done.value.value.status == 400
    assert core.nonces.get("https://as.example/attest") == "n2"
