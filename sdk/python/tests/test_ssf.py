"""The SSF receiver (RFC 8935 push of RFC 8417 SETs, CAEP 1.0 session-revoked) in the
resource-server middleware, against a real mandate that pushes to it: a revoked token is
refused at once in JWT mode (no introspection) and dropped from the introspection cache; the
attacks a push endpoint faces are refused with RFC 8935 §2.3 errors and revoke nothing; and the
revocation list stays bounded without forgetting silently (the eviction watermark).

The world of this module: its own mandate (the suite's config plus a client_credentials client
and three streams: `orders-jwt` and `orders-introspection` pushing to the two receivers of the
FastAPI app below, `orders-poll` and `other-poll` polled by the tests to hold genuine SETs),
and a FastAPI app served by uvicorn on a loopback port bound before mandate starts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import pytest
from fastapi import Depends, FastAPI
from joserfc import jws
from joserfc.jwk import ECKey, KeySet
from joserfc.jws import extract_compact

from mandate import SoftwareKey, SyncAgentSession, SyncMandateClient
from mandate.fastapi import require, ssf_router
from mandate.resource import InvalidToken, Principal, ResourceServer
from mandate.ssf import SESSION_REVOKED, VERIFICATION, RevocationList, SsfReceiver

from .conftest import AGENTS, ALICE, CLI_REDIRECT, MANDATE_BIN, ORDERS_RS, RUNTIME, Person, Served, config_text, start_mandate

CREDENTIAL = "Bearer " + secrets.token_urlsafe(24)
POLL_CREDENTIAL = "Bearer " + secrets.token_urlsafe(24)
CC = ("cc-client", "cc-secret")

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class World:
    issuer: str
    dir: Path
    config: Path
    #: MANDATE_* variables the server and its CLI run with.
    env: dict[str, str]
    keys: dict[str, SoftwareKey]
    rs_url: str
    rs: dict[str, ResourceServer]
    receivers: dict[str, SsfReceiver]
    #: Every request the resource servers sent to mandate (which one, method, path).
    rs_calls: list[tuple[str, str, str]]


def stream_toml(d: Path, rs_url: str) -> str:
    (d / "orders.credential").write_text(CREDENTIAL + "\n")
    (d / "poll.credential").write_text(POLL_CREDENTIAL + "\n")
    return f"""
[[clients]]
client_id = "{CC[0]}"
client_secret = "{CC[1]}"
grant_types = ["client_credentials"]
scopes = ["orders:read"]

[notifications]
timeout = "1s"
retry_initial = "1s"
retry_max = "2s"

[[ssf.streams]]
name = "orders-jwt"
endpoint_url = "{rs_url}/ssf/jwt"
audience = "orders-api"
authorization_header_file = "orders.credential"

[[ssf.streams]]
name = "orders-introspection"
endpoint_url = "{rs_url}/ssf/introspection"
audience = "orders-api"
authorization_header_file = "orders.credential"

[[ssf.streams]]
name = "api-jwt"
endpoint_url = "{rs_url}/ssf/api"
audience = "orders-api"
authorization_header_file = "orders.credential"

[[ssf.streams]]
name = "orders-poll"
delivery = "poll"
audience = "orders-api"
authorization_header_file = "poll.credential"

[[ssf.streams]]
name = "other-poll"
delivery = "poll"
audience = "other-api"
authorization_header_file = "poll.credential"

[registration]
enabled = true
grant_types = ["client_credentials"]
confidential = true
scopes = ["orders:read"]

[[resources]]
uri = "{rs_url}/api"
scopes = ["orders:read"]
"""


def make_app(rs: dict[str, ResourceServer], receivers: dict[str, SsfReceiver]) -> FastAPI:
    app = FastAPI()
    for mode, server in rs.items():

        def route(server: ResourceServer = server) -> Callable[..., Any]:
            async def orders(who: Principal = Depends(require(server, "orders:read"))) -> dict[str, Any]:
                return {"chain": str(who), "sid": who.session_id, "jti": who.token_id}

            return orders

        app.get(f"/{mode}/orders")(route())
        app.include_router(ssf_router(receivers[mode], f"/ssf/{mode}"))
    return app


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    keys = {name: SoftwareKey.generate() for name in AGENTS}
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    rs_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with tempfile.TemporaryDirectory(prefix="mandate-sdk-py-ssf-") as tmp:
        d = Path(tmp)
        config = config_text(d, keys, "http://127.0.0.1:9/mcp", extra=stream_toml(d, rs_url))
        # The issuer is named, not derived from the bound listener: the CLI (another process)
        # stamps its SETs with the configured issuer, or `http://{listen}` without one, which
        # for port 0 is not the server's (reported as a server bug).
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        env = {"MANDATE_LISTEN": f"127.0.0.1:{port}", "MANDATE_ISSUER": f"http://127.0.0.1:{port}"}
        proc, issuer = start_mandate(d, config, overrides=env)
        assert issuer == env["MANDATE_ISSUER"]
        calls: list[tuple[str, str, str]] = []

        def clients(name: str) -> dict[str, Any]:
            """HTTP clients for resource server `name` that record its requests to mandate."""

            async def record(request: httpx.Request) -> None:
                calls.append((name, request.method, request.url.path))

            def record_sync(request: httpx.Request) -> None:
                calls.append((name, request.method, request.url.path))

            return {
                "http": httpx.AsyncClient(event_hooks={"request": [record]}),
                "sync_http": httpx.Client(event_hooks={"request": [record_sync]}),
            }

        rs = {
            "jwt": ResourceServer(issuer, "orders-api", **clients("jwt")),
            "introspection": ResourceServer(
                issuer,
                "orders-api",
                mode="introspection",
                client_id=ORDERS_RS[0],
                client_secret=ORDERS_RS[1],
                **clients("introspection"),
            ),
        }
        # A resource server named by its URL (where registered clients' tokens go); its stream's
        # SETs still say `aud` orders-api, so its receiver is told that audience.
        rs["api"] = ResourceServer(issuer, f"{rs_url}/api", **clients("api"))
        receivers = {mode: server.ssf_receiver(authorization=CREDENTIAL, audience="orders-api") for mode, server in rs.items()}
        served = Served(make_app(rs, receivers), sock)
        try:
            yield World(issuer, d, d / "mandate.toml", env, keys, rs_url, rs, receivers, calls)
        finally:
            served.stop()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
            sock.close()


# --- helpers ----------------------------------------------------------------------------------


def cc_token(w: World) -> str:
    r = httpx.post(f"{w.issuer}/token", data={"grant_type": "client_credentials", "scope": "orders:read", "audience": "orders-api"}, auth=CC)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def revoke(w: World, token: str, client: tuple[str, str] | str = CC) -> None:
    """RFC 7009 at mandate, as a confidential client (id, secret) or a public one (its id)."""
    if isinstance(client, str):
        r = httpx.post(f"{w.issuer}/revoke", data={"token": token, "client_id": client})
    else:
        r = httpx.post(f"{w.issuer}/revoke", data={"token": token}, auth=client)
    assert r.status_code == 200, r.text


def get_orders(w: World, token: str, mode: str = "jwt") -> int:
    return httpx.get(f"{w.rs_url}/{mode}/orders", headers={"authorization": f"Bearer {token}"}).status_code


def refused_within(w: World, token: str, mode: str = "jwt", limit: float = 5.0) -> float:
    """Polls the resource server's verify until it refuses `token` (then checks that its route
    answers 401 too); the seconds that took. The verify is called in this thread, not through
    HTTP: a keep-alive round trip to uvicorn costs ~40 ms here (delayed ACKs), which would
    measure the poll, not the revocation."""
    rs = w.rs[mode]
    start = time.perf_counter()
    while True:
        try:
            rs.verify_sync(token)
        except InvalidToken:
            took = time.perf_counter() - start
            break
        took = time.perf_counter() - start
        assert took < limit, f"still accepted {took:.2f}s after the revocation"
        time.sleep(0.0005)
    assert get_orders(w, token, mode) == 401
    return took


def claims_of(token: str) -> dict[str, Any]:
    return dict(json.loads(extract_compact(token.encode()).payload))


def poll(w: World, stream: str) -> list[str]:
    """Genuine SETs mandate signed for `stream` (RFC 8936), acknowledged."""
    r = httpx.post(
        f"{w.issuer}/ssf/poll/{stream}", json={"maxEvents": 100}, headers={"authorization": POLL_CREDENTIAL}
    )
    assert r.status_code == 200, r.text
    sets = r.json()["sets"]
    if sets:
        httpx.post(f"{w.issuer}/ssf/poll/{stream}", json={"ack": list(sets), "maxEvents": 0}, headers={"authorization": POLL_CREDENTIAL})
    return list(sets.values())


def genuine_set(w: World, stream: str = "orders-poll") -> str:
    """A SET mandate signed for `stream`, of a fresh revocation, once the push streams have
    delivered theirs too (so that the receivers' lists no longer change under a test)."""
    token = cc_token(w)
    revoke(w, token)
    claims = claims_of(token)
    deadline = time.monotonic() + 5
    found: str | None = None
    while time.monotonic() < deadline:
        if found is None:
            got = poll(w, stream)
            found = got[-1] if got else None
        if found is not None and all(r.revocations.revoked(claims) for r in w.receivers.values()):
            return found
        time.sleep(0.02)
    raise AssertionError(f"no SET on {stream}, or not pushed to every receiver")


def push(w: World, body: bytes | str, *, authorization: str | None = CREDENTIAL, content_type: str = "application/secevent+jwt", mode: str = "jwt") -> httpx.Response:
    headers = {"content-type": content_type}
    if authorization is not None:
        headers["authorization"] = authorization
    return httpx.post(f"{w.rs_url}/ssf/{mode}", content=body if isinstance(body, bytes) else body.encode(), headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def person_tokens(issuer: str) -> tuple[str, str, str]:
    """alice signs in at `cli` (code + PKCE): access token, refresh token, and a second access
    token from the refresh (the same session, `sid`)."""
    p = Person(issuer, *ALICE)
    verifier = secrets.token_urlsafe(32)
    challenge = b64(hashlib.sha256(verifier.encode()).digest())
    q = {
        "response_type": "code",
        "client_id": "cli",
        "redirect_uri": CLI_REDIRECT,
        "state": "s",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "scope": "orders:read",
        "resource": "orders-api",
    }
    code = parse_qs(urlparse(p.follow(f"{issuer}/authorize?{urlencode(q)}")).query)["code"][0]
    p.close()
    r = httpx.post(
        f"{issuer}/token",
        data={"grant_type": "authorization_code", "client_id": "cli", "code": code, "redirect_uri": CLI_REDIRECT, "code_verifier": verifier},
    )
    assert r.status_code == 200, r.text
    first = r.json()
    r = httpx.post(f"{issuer}/token", data={"grant_type": "refresh_token", "client_id": "cli", "refresh_token": first["refresh_token"]})
    assert r.status_code == 200, r.text
    return first["access_token"], first["refresh_token"], r.json()["access_token"]


# --- end to end -------------------------------------------------------------------------------


def test_a_revoked_token_is_refused_by_a_jwt_resource_server_well_under_a_second(world: World) -> None:
    """RFC 7009 /revoke at mandate → RFC 8935 push → the JWT-mode resource server refuses the
    token, without introspecting: the time from /revoke answering to the first refusal."""
    took = []
    # The first revocation is timed apart: it also pays for the receivers' first fetch of
    # mandate's keys.
    for _ in range(6):
        token = cc_token(world)
        assert get_orders(world, token) == 200
        revoke(world, token)
        took.append(refused_within(world, token))
    first = took.pop(0)
    took.sort()
    median = statistics.median(took)
    print(
        f"\nSSF revocation → JWT resource server refusing (python, 5 revocations after a first one): "
        f"median {median * 1000:.1f} ms, max {took[-1] * 1000:.1f} ms; the first {first * 1000:.1f} ms"
    )
    assert first < 1.0 and took[-1] < 1.0, (first, took)
    assert median < 0.5, took
    # JWT mode asked mandate for its metadata and keys, never to introspect.
    jwt_calls = [path for rs, _, path in world.rs_calls if rs == "jwt"]
    assert "/jwks.json" in jwt_calls and not [p for p in jwt_calls if p.endswith("/introspect")], jwt_calls


def test_a_revoked_token_leaves_the_introspection_cache_at_once(world: World) -> None:
    """Introspection mode caches an active answer for 30 s; the SET drops it."""
    rs = world.rs["introspection"]
    assert rs.cache_ttl == 30
    took = []
    for _ in range(3):
        token = cc_token(world)
        assert get_orders(world, token, "introspection") == 200
        assert get_orders(world, token, "introspection") == 200  # from the cache
        revoke(world, token)
        took.append(refused_within(world, token, "introspection"))
    print(f"\nSSF revocation → introspecting resource server refusing (python): median {statistics.median(took) * 1000:.1f} ms")
    assert max(took) < 1.0, took


def test_a_set_names_the_session_so_a_sibling_token_of_it_is_refused(world: World) -> None:
    """CAEP session-revoked names what mandate revoked: one access token revoked alone (RFC 7009
    §2.1) by its `jti`, so its sibling of the same sign-in stays accepted, as mandate accepts it;
    the refresh token (the grant) by the session's `sid`, so every token of the session (two
    access tokens, before and after a refresh) is refused, and another sign-in is not."""
    first, refresh, second = person_tokens(world.issuer)
    assert claims_of(first)["sid"] == claims_of(second)["sid"]
    other, _, _ = person_tokens(world.issuer)  # another sign-in, another session
    for t in (first, second, other):
        assert get_orders(world, t) == 200
    revoke(world, first, client="cli")
    refused_within(world, first)
    assert get_orders(world, second) == 200, "only the token was revoked"
    revoke(world, refresh, client="cli")
    refused_within(world, second)
    assert get_orders(world, other) == 200, "another session is untouched"


def test_a_sessionless_set_does_not_touch_other_tokens(world: World) -> None:
    """A SET naming one token's `jti` (a client_credentials token has no session) leaves every
    other token of the same client and subject alone."""
    a, b = cc_token(world), cc_token(world)
    revoke(world, a)
    refused_within(world, a)
    assert get_orders(world, b) == 200


def test_a_disabled_agent_is_cut_off_everywhere_in_the_chain_iss_sub(world: World) -> None:
    """`mandate agents disable helper` (the CLI, another process) → `iss_sub` `agent:helper`:
    every token whose `act` chain names it, at any depth, issued before the event, is refused;
    alice's own token is not."""
    alice = Person(world.issuer, *ALICE).token("orders:read orders:write", extra={"resource": "orders-api"})
    with SyncMandateClient(world.issuer, *RUNTIME) as c:
        helper = SyncAgentSession(c, "helper", world.keys["helper"])
        payer = SyncAgentSession(c, "payments-bot", world.keys["payments-bot"])
        mine = helper.act_for(alice, scope="orders:read orders:write", audience="orders-api")
        theirs = helper.delegate(mine, payer.token(), scope="orders:read")
    assert claims_of(theirs.access_token)["act"]["act"]["sub"] == "agent:helper"
    for t in (mine.access_token, theirs.access_token, alice):
        assert get_orders(world, t) == 200
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANDATE_")} | world.env
    out = subprocess.run([MANDATE_BIN, "--config", str(world.config), "agents", "disable", "helper"], env=env, capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    # The CLI writes the SET to the outbox; the server picks it up within a second or so.
    refused_within(world, mine.access_token, limit=10)
    refused_within(world, theirs.access_token, limit=10)
    assert get_orders(world, alice) == 200


def test_a_deleted_client_is_cut_off_by_its_application_id(world: World) -> None:
    """RFC 7592 DELETE of a registered client → `complex` `application` = its client_id: every
    token issued to it before the event is refused."""
    r = httpx.post(
        f"{world.issuer}/register",
        json={"client_name": "ssf test", "grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_basic", "scope": "orders:read"},
    )
    assert r.status_code == 201, r.text
    reg = r.json()
    r = httpx.post(
        f"{world.issuer}/token",
        data={"grant_type": "client_credentials", "scope": "orders:read", "resource": f"{world.rs_url}/api"},
        auth=(reg["client_id"], reg["client_secret"]),
    )
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    assert get_orders(world, token, "api") == 200
    r = httpx.delete(reg["registration_client_uri"], headers={"authorization": f"Bearer {reg['registration_access_token']}"})
    assert r.status_code == 204, r.text
    refused_within(world, token, "api")
    # By the application entry itself (not only by the token's own jti).
    assert world.receivers["api"].revocations.revoked({"client_id": reg["client_id"], "iat": 0})


def test_revoking_a_delegated_token_cuts_off_the_sub_agent_token_derived_from_it(world: World) -> None:
    alice = Person(world.issuer, *ALICE).token("orders:read orders:write", extra={"resource": "orders-api"})
    with SyncMandateClient(world.issuer, *RUNTIME) as c:
        planner = SyncAgentSession(c, "planner", world.keys["planner"])
        payer = SyncAgentSession(c, "payments-bot", world.keys["payments-bot"])
        mine = planner.act_for(alice, scope="orders:read orders:write", audience="orders-api")
        theirs = planner.delegate(mine, payer.token(), scope="orders:read")
    revoke(world, mine.access_token, client=RUNTIME)
    refused_within(world, mine.access_token)
    r = httpx.post(f"{world.issuer}/introspect", data={"token": theirs.access_token}, auth=ORDERS_RS)
    assert r.json()["active"] is False, "mandate revoked the derived token"
    refused_within(world, theirs.access_token, limit=2)


# --- attackers (RFC 8935 §2, RFC 8417) ---------------------------------------------------------


def sizes(w: World) -> tuple[int, int]:
    return len(w.receivers["jwt"].revocations), len(w.receivers["introspection"].revocations)


def test_rfc8935_s2_a_push_without_the_credential_is_401_and_revokes_nothing(world: World) -> None:
    set_ = genuine_set(world)
    before = sizes(world)
    for auth in (None, "Bearer wrong", CREDENTIAL + "x", CREDENTIAL[:-1], "Basic " + CREDENTIAL):
        r = push(world, set_, authorization=auth)
        assert r.status_code == 401, auth
        assert r.json()["err"] == "authentication_failed"
        assert CREDENTIAL.split()[1] not in r.text
    assert sizes(world) == before


def test_rfc8417_a_set_signed_by_another_key_is_400_and_revokes_nothing(world: World) -> None:
    set_ = genuine_set(world)
    obj = extract_compact(set_.encode())
    header, claims = obj.headers(), json.loads(obj.payload)
    other = ECKey.generate_key("P-256", private=True)
    before = sizes(world)
    # Under mandate's kid: the signature does not verify (the transmitter is not authenticated).
    forged = jws.serialize_compact(header, json.dumps(claims).encode(), other, algorithms=["ES256"])
    r = push(world, forged)
    assert (r.status_code, r.json()["err"]) == (400, "authentication_failed"), r.text
    # A real signature over other claims.
    changed = f"{set_.split('.')[0]}.{b64(json.dumps({**claims, 'jti': 'x'}).encode())}.{set_.split('.')[2]}"
    r = push(world, changed)
    assert (r.status_code, r.json()["err"]) == (400, "authentication_failed"), r.text
    assert sizes(world) == before


async def test_rfc8417_a_set_under_a_kid_mandate_does_not_publish_is_400_invalid_key(world: World) -> None:
    # A fresh resource server, so that the unknown kid makes it fetch the key set again now.
    rs = ResourceServer(world.issuer, "orders-api")
    receiver = rs.ssf_receiver(authorization=CREDENTIAL)
    set_ = genuine_set(world)
    obj = extract_compact(set_.encode())
    other = ECKey.generate_key("P-256", private=True)
    forged = jws.serialize_compact({**obj.headers(), "kid": "not-mandates"}, obj.payload, other, algorithms=["ES256"])
    answer = await receiver.receive(CREDENTIAL, "application/secevent+jwt", forged.encode())
    assert (answer.status, answer.body and answer.body["err"]) == (400, "invalid_key")
    assert len(receiver.revocations) == 0
    # The same kid again within 30 s: the key set is not fetched again; mandate is asked to retry.
    again = await receiver.receive(CREDENTIAL, "application/secevent+jwt", forged.encode())
    assert again.status == 503 and again.headers["Retry-After"]
    # The genuine one is accepted by the same receiver.
    ok = await receiver.receive(CREDENTIAL, "application/secevent+jwt", set_.encode())
    assert ok.status == 202 and len(receiver.revocations) == 1
    await rs.aclose()


def test_rfc8417_an_unsigned_set_alg_none_is_400_invalid_key(world: World) -> None:
    set_ = genuine_set(world)
    obj = extract_compact(set_.encode())
    header = {**obj.headers(), "alg": "none"}
    before = sizes(world)
    for body in (f"{b64(json.dumps(header).encode())}.{set_.split('.')[1]}.", f"{b64(json.dumps(header).encode())}.{set_.split('.')[1]}.{set_.split('.')[2]}"):
        r = push(world, body)
        assert (r.status_code, r.json()["err"]) == (400, "invalid_key"), r.text
    assert sizes(world) == before


def test_rfc8935_a_set_for_another_audience_is_400_invalid_audience(world: World) -> None:
    """A genuine SET mandate signed for another stream (`aud` other-api)."""
    set_ = genuine_set(world, "other-poll")
    assert claims_of(set_)["aud"] == "other-api"
    before = sizes(world)
    r = push(world, set_)
    assert (r.status_code, r.json()["err"]) == (400, "invalid_audience"), r.text
    assert sizes(world) == before


def test_rfc8417_a_replayed_set_is_harmless(world: World) -> None:
    """The same `jti` twice: 202 both times (mandate may send a SET twice), applied once."""
    set_ = genuine_set(world)
    assert push(world, set_).status_code == 202
    after_first = sizes(world)
    for _ in range(3):
        assert push(world, set_).status_code == 202
    assert sizes(world) == after_first


def test_rfc8935_an_oversized_or_mistyped_push_is_refused_and_revokes_nothing(world: World) -> None:
    set_ = genuine_set(world)
    before = sizes(world)
    r = push(world, set_ + "A" * (64 * 1024))
    assert r.status_code == 400 and r.json()["err"] == "invalid_request"
    # A chunked body (no Content-Length) is cut off at the bound too.
    r = httpx.post(
        f"{world.rs_url}/ssf/jwt",
        content=iter([set_.encode(), b"A" * (70 * 1024)]),
        headers={"authorization": CREDENTIAL, "content-type": "application/secevent+jwt"},
    )
    assert r.status_code == 400
    r = push(world, set_, content_type="application/json")
    assert (r.status_code, r.json()["err"]) == (400, "invalid_request")
    r = push(world, "not a jws")
    assert (r.status_code, r.json()["err"]) == (400, "invalid_request")
    assert sizes(world) == before


# --- the claims, against an issuer the test holds the key of ----------------------------------

ISSUER = "https://as.test"
KEY = ECKey.generate_key("P-256", private=True, parameters={"kid": "k1"})


def fake_issuer_handler(request: httpx.Request) -> httpx.Response:
    """An issuer (RFC 8414 metadata and a JWKS) that only this test can sign for."""
    if request.url.path == "/.well-known/oauth-authorization-server":
        return httpx.Response(200, json={"issuer": ISSUER, "jwks_uri": f"{ISSUER}/jwks.json"})
    if request.url.path == "/jwks.json":
        return httpx.Response(200, json=KeySet([KEY]).as_dict(private=False))
    return httpx.Response(404)


def fake_issuer() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(fake_issuer_handler))


def signed(claims: dict[str, Any], **header: Any) -> bytes:
    """Signed ES256 by the test issuer's key; a header `alg` other than ES256 is only named."""
    h = {"alg": "ES256", "typ": "secevent+jwt", "kid": "k1", **header}
    body = jws.serialize_compact({**h, "alg": "ES256"}, json.dumps(claims).encode(), KEY, algorithms=["ES256"])
    if h["alg"] != "ES256":
        parts = body.split(".")
        body = ".".join([b64(json.dumps(h).encode()), parts[1], parts[2]])
    return body.encode()


def set_claims(sub_id: dict[str, Any] | None, events: dict[str, Any] | None = None, **over: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "iss": ISSUER,
        "aud": "orders-api",
        "iat": 1_800_000_000,
        "jti": secrets.token_urlsafe(8),
        "sub_id": sub_id,
        "events": events if events is not None else {SESSION_REVOKED: {"event_timestamp": 1_800_000_000, "initiating_entity": "admin"}},
    }
    c.update(over)
    return c


def receiver_for_tests() -> tuple[ResourceServer, SsfReceiver]:
    rs = ResourceServer(ISSUER, "orders-api", http=fake_issuer())
    return rs, rs.ssf_receiver(authorization="Bearer t")


async def send(receiver: SsfReceiver, body: bytes) -> tuple[int, str | None]:
    a = await receiver.receive("Bearer t", "application/secevent+jwt", body)
    return a.status, (a.body or {}).get("err")


SESSION = {"format": "complex", "session": {"format": "opaque", "id": "sid-1"}}


async def test_rfc8935_s2_3_claim_checks_each_have_their_err() -> None:
    rs, r = receiver_for_tests()
    cases = {
        "iss": (signed(set_claims(SESSION, iss="https://evil.test")), "invalid_issuer"),
        "aud": (signed(set_claims(SESSION, aud="billing-api")), "invalid_audience"),
        "typ JWT": (signed(set_claims(SESSION), typ="JWT"), "invalid_request"),
        "typ at+jwt (an access token pushed as a SET)": (signed(set_claims(SESSION), typ="at+jwt"), "invalid_request"),
        "no iat": (signed({k: v for k, v in set_claims(SESSION).items() if k != "iat"}), "invalid_request"),
        "no jti": (signed({k: v for k, v in set_claims(SESSION).items() if k != "jti"}), "invalid_request"),
        "no events": (signed(set_claims(SESSION, events={})), "invalid_request"),
        "no sub_id": (signed(set_claims(None)), "invalid_request"),
        "iss_sub of another issuer": (signed(set_claims({"format": "iss_sub", "iss": "https://evil.test", "sub": "alice"})), "access_denied"),
        "a subject format it cannot apply": (signed(set_claims({"format": "email", "email": "a@b.c"})), "invalid_request"),
        "ES384 named": (signed(set_claims(SESSION), alg="ES384"), "invalid_key"),
    }
    for name, (body, err) in cases.items():
        assert await send(r, body) == (400, err), name
    assert len(r.revocations) == 0
    await rs.aclose()


async def test_ssf_verification_and_unknown_events_are_accepted_and_change_nothing() -> None:
    rs, r = receiver_for_tests()
    assert await send(r, signed(set_claims({"format": "opaque", "id": "stream-1"}, events={VERIFICATION: {"state": "x"}}))) == (202, None)
    # mandate's own `refused` event (docs/ssf.md#refusals) names a session too: it revokes nothing.
    refused = {"urn:x-mandate:secevent:event-type:refused": {"event_timestamp": 1_800_000_000, "initiating_entity": "policy", "policies": ["p"]}}
    assert await send(r, signed(set_claims(SESSION, events=refused))) == (202, None)
    assert await send(r, signed(set_claims(SESSION, events={"https://example.com/unknown": {}}))) == (202, None)
    assert len(r.revocations) == 0
    await rs.aclose()


async def test_each_subject_revokes_what_it_names() -> None:
    rs, r = receiver_for_tests()
    t = 1_800_000_000

    def token(**c: Any) -> dict[str, Any]:
        return {"iss": ISSUER, "aud": "orders-api", "sub": "bob", "client_id": "c0", "iat": t - 10, "jti": secrets.token_urlsafe(6), **c}

    ev = {SESSION_REVOKED: {"event_timestamp": t}}
    assert await send(r, signed(set_claims(SESSION))) == (202, None)
    assert await send(r, signed(set_claims({"format": "complex", "session": {"format": "opaque", "id": "jti-9"}}))) == (202, None)
    assert await send(r, signed(set_claims({"format": "iss_sub", "iss": ISSUER, "sub": "agent:helper"}, events=ev))) == (202, None)
    assert await send(r, signed(set_claims({"format": "complex", "application": {"format": "opaque", "id": "app-1"}}, events=ev))) == (202, None)
    revoked = r.revocations.revoked
    assert revoked(token(sid="sid-1")) and not revoked(token(sid="sid-2"))
    assert revoked(token(jti="jti-9"))
    # An agent anywhere in the act chain, issued before the event; not after.
    assert revoked(token(act={"sub": "agent:bot", "act": {"sub": "agent:helper"}}))
    assert revoked(token(sub="agent:helper"))
    # A token issued more than CLOCK_SKEW seconds after the event is not covered.
    assert revoked(token(act={"sub": "agent:helper"}, iat=t + 5))
    assert not revoked(token(act={"sub": "agent:helper"}, iat=t + 6))
    assert not revoked(token(act={"sub": "agent:other"}))
    assert revoked(token(client_id="app-1")) and not revoked(token(client_id="app-1", iat=t + 6))
    assert not revoked(token())
    await rs.aclose()


def test_the_blocking_receiver_for_wsgi_apps_does_the_same() -> None:
    rs = ResourceServer(ISSUER, "orders-api", sync_http=httpx.Client(transport=httpx.MockTransport(fake_issuer_handler)))
    r = rs.ssf_receiver(authorization="Bearer t")
    ok = r.receive_sync("Bearer t", "application/secevent+jwt", signed(set_claims(SESSION)))
    assert ok.status == 202 and len(r.revocations) == 1
    bad = r.receive_sync("Bearer t", "application/secevent+jwt", signed(set_claims(SESSION, aud="x")))
    assert (bad.status, bad.body) == (400, {"err": "invalid_audience", "description": "the SET is for another audience"})
    assert r.receive_sync("Bearer u", "application/secevent+jwt", b"x").status == 401
    assert r.receive_sync("Bearer t", "application/secevent+jwt", b"x" * (64 * 1024 + 1)).status == 400


# --- the bounds ---------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_revocation_list_evicts_the_oldest_and_fails_closed_below_the_watermark() -> None:
    clock = Clock()
    rl = RevocationList(retention=600, max_entries=2, clock=clock)
    rl.add("session", "s1", 100)
    rl.add("session", "s2", 200)
    assert rl.watermark is None and len(rl) == 2
    rl.add("session", "s3", 300)  # full: s1 is evicted, its time becomes the watermark
    assert len(rl) == 2 and rl.evicted == 1 and rl.watermark == 100
    # s1's tokens were all issued by then: still refused, as is anything as old.
    assert rl.revoked({"sid": "s1", "iat": 90})
    assert rl.revoked({"sid": "zz", "iat": 100})
    assert rl.revoked({"sid": "zz"}), "no iat: fail closed"
    assert rl.revoked({"sid": "zz", "iat": 105}), "issued within CLOCK_SKEW of it"
    assert not rl.revoked({"sid": "zz", "iat": 106})
    assert rl.revoked({"sid": "s3", "iat": 250})
    # After `retention` every token issued by the watermark has expired: both are forgotten.
    clock.now += 601
    assert rl.watermark is None and len(rl) == 0
    assert not rl.revoked({"sid": "s3", "iat": 250})


def test_the_revocation_list_forgets_after_retention_and_the_same_entry_is_kept_once() -> None:
    clock = Clock()
    rl = RevocationList(retention=60, max_entries=10, clock=clock)
    rl.add("subject", "alice", 100)
    clock.now += 30
    rl.add("subject", "alice", 50)  # again, older: the later time is kept, the clock restarts
    assert len(rl) == 1
    assert rl.revoked({"sub": "alice", "iat": 105}) and not rl.revoked({"sub": "alice", "iat": 106})
    clock.now += 59
    assert len(rl) == 1
    clock.now += 2
    assert len(rl) == 0
    with pytest.raises(ValueError):
        RevocationList(retention=0)


def test_the_receiver_never_shows_its_credential() -> None:
    rs = ResourceServer(ISSUER, "orders-api")
    r = rs.ssf_receiver(authorization="Bearer sekrit-value")
    assert "sekrit" not in repr(r) and "sekrit" not in repr(rs)
    # RFC 7235 §4.1: the challenge to a wrong credential is fixed, even for a configured value
    # that is a bare secret with no scheme.
    bare = rs.ssf_receiver(authorization="sekrit-value")
    refused = bare.receive_sync("Bearer guess", "application/secevent+jwt", b"x")
    assert refused.status == 401 and "sekrit" not in str(refused.headers), refused.headers
    with pytest.raises(ValueError):
        rs.ssf_receiver(authorization="  ")

