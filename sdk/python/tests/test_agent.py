"""The agent side (async): discovery, attestation, delegation, sub-agents, refusals, CIBA
approval, revocation, the chain. Every call against the real mandate of conftest.py."""

from __future__ import annotations

import time

import anyio
import httpx
import pytest

from mandate import (
    AgentSession,
    ApprovalCancelled,
    ApprovalDenied,
    ApprovalExpired,
    ApprovalPending,
    ApprovalTimeout,
    MandateClient,
    OAuthError,
    SoftwareKey,
    read_chain,
)

from .conftest import ALICE, ORDERS_RS, RUNTIME, Mandate, Person

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def client(mandate: Mandate):
    async with MandateClient(mandate.url, *RUNTIME) as c:
        yield c


def session(client: MandateClient, mandate: Mandate, name: str) -> AgentSession:
    return AgentSession(client, name, mandate.keys[name])


async def test_discovers_endpoints_from_rfc8414_metadata(client: MandateClient, mandate: Mandate) -> None:
    md = await client.metadata()
    # RFC 8414 §3.3: the issuer in the document is the one the client was given.
    assert md["issuer"] == mandate.url
    assert md["token_endpoint"].startswith(mandate.url)
    assert await client.metadata() is md, "fetched once, then cached"


async def test_software_attestation_gives_an_agent_token_and_reuses_it(client: MandateClient, mandate: Mandate) -> None:
    attests = 0

    async def count(request: httpx.Request) -> None:
        nonlocal attests
        if request.url.path == "/attest":
            attests += 1

    client.http.event_hooks["request"].append(count)
    planner = session(client, mandate, "planner")
    # Concurrent callers share one attestation.
    tokens: list[str] = []
    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(lambda: _append(tokens, planner.token()))
    assert len(set(tokens)) == 1 and attests == 1
    claims = read_chain(tokens[0])
    assert claims.human == "agent:planner"
    assert planner.attestation == "software"
    assert await planner.token() == tokens[0], "fresh: not attested again"
    assert attests == 1


async def _append(out: list[str], coro) -> None:  # type: ignore[no-untyped-def]
    out.append(await coro)


async def test_agent_token_is_renewed_when_a_fifth_of_its_life_is_left(client: MandateClient, mandate: Mandate) -> None:
    planner = session(client, mandate, "planner")
    first = await planner.token()
    # The server's agent tokens live 5 minutes; pretend only 20 s are left (< 30 s margin).
    planner._state._expires = time.monotonic() + 20
    second = await planner.token()
    assert second != first
    assert await planner.token() == second


async def test_an_unregistered_key_is_refused(client: MandateClient, mandate: Mandate) -> None:
    impostor = AgentSession(client, "planner", SoftwareKey.generate())
    with pytest.raises(OAuthError) as e:
        await impostor.token()
    assert e.value.status in (400, 401)


async def test_act_for_rfc8693_delegates_a_narrowed_token(client: MandateClient, mandate: Mandate, alice: str) -> None:
    planner = session(client, mandate, "planner")
    t = await planner.act_for(alice, scope="orders:read", audience="orders-api")
    assert t.scope == ("orders:read",)
    assert t.audience == ("orders-api",)
    assert t.session_id
    assert str(t.chain) == "alice → planner"
    # mandate's `att`: how the acting agent proved itself (a software key here).
    assert t.chain.agent is not None and t.chain.attestation == "software"
    assert not t.expired and 0 < t.expires_in() <= 600
    # RFC 8693 §4.1: act names the agent; the server agrees (RFC 7662 introspection).
    async with MandateClient(mandate.url, *ORDERS_RS) as rs:
        i = await rs.introspect(t)
    assert i["active"] is True and i["sub"] == "alice" and i["act"]["sub"] == "agent:planner"
    # Never the token in repr/str.
    assert t.access_token not in repr(t) and t.access_token not in str(t)


async def test_delegate_to_a_sub_agent_nests_the_chain(client: MandateClient, mandate: Mandate, alice: str) -> None:
    planner, payer = session(client, mandate, "planner"), session(client, mandate, "payments-bot")
    mine = await planner.act_for(alice, scope="orders:read orders:write", audience="orders-api")
    sub = await planner.delegate(mine, await payer.token(), scope=["orders:read"])
    assert str(sub.chain) == "alice → planner → payments-bot"
    assert str(read_chain(sub.access_token)) == "alice → planner → payments-bot"
    assert [a.name for a in sub.chain.actors] == ["planner", "payments-bot"]
    assert read_chain(sub.access_token).attestation == "software"
    # A human's own token has no actor, so no attestation.
    assert read_chain(alice).actors == () and read_chain(alice).attestation is None
    assert sub.scope == ("orders:read",)
    assert sub.session_id != mine.session_id


async def test_wider_scope_is_refused_invalid_scope_rfc8693_2_2_2(client: MandateClient, mandate: Mandate, alice: str) -> None:
    planner, payer = session(client, mandate, "planner"), session(client, mandate, "payments-bot")
    mine = await planner.act_for(alice, scope="orders:read", audience="orders-api")
    with pytest.raises(OAuthError) as e:
        await planner.delegate(mine, await payer.token(), scope="orders:read orders:write")
    assert e.value.error == "invalid_scope" and e.value.status == 400
    # RFC 6749 §5.2 shape, and nothing secret in the message.
    assert mine.access_token not in str(e.value) and mine.access_token not in repr(e.value)


async def test_unknown_audience_is_refused_invalid_target_rfc8707(client: MandateClient, mandate: Mandate, alice: str) -> None:
    with pytest.raises(OAuthError) as e:
        await session(client, mandate, "planner").act_for(alice, audience="no-such-api")
    assert e.value.error == "invalid_target"


async def test_delegation_deeper_than_the_limit_is_refused(client: MandateClient, mandate: Mandate, alice: str) -> None:
    # tokens.max_delegation_depth = 2: alice → planner → payments-bot, and no further.
    planner, payer, helper = (session(client, mandate, n) for n in ("planner", "payments-bot", "helper"))
    one = await planner.act_for(alice, scope="orders:read", audience="orders-api")
    two = await planner.delegate(one, await payer.token())
    with pytest.raises(OAuthError) as e:
        await payer.delegate(two, await helper.token())
    assert e.value.error == "invalid_grant"
    assert "depth" in (e.value.description or "")


async def test_revoking_a_parent_revokes_its_subtree_rfc7009(client: MandateClient, mandate: Mandate, alice: str) -> None:
    planner, payer, helper = (session(client, mandate, n) for n in ("planner", "payments-bot", "helper"))
    mine = await planner.act_for(alice, scope="orders:read", audience="orders-api")
    child = await planner.delegate(mine, await payer.token())
    await planner.revoke(mine)
    async with MandateClient(mandate.url, *ORDERS_RS) as rs:
        assert (await rs.introspect(mine))["active"] is False
        assert (await rs.introspect(child))["active"] is False, "the subtree goes with it"
    # A revoked parent delegates nothing more.
    with pytest.raises(OAuthError) as e:
        await planner.delegate(mine, await helper.token())
    assert e.value.error == "invalid_grant"


async def test_an_expired_parent_delegates_nothing(client: MandateClient, mandate: Mandate, alice: str) -> None:
    # Tokens for short-api live 2 s (@max_ttl in the test policy).
    planner, payer = session(client, mandate, "planner"), session(client, mandate, "payments-bot")
    short = await planner.act_for(alice, scope="orders:read", audience="short-api")
    assert short.expires_in() <= 2.5
    sub_token = await payer.token()
    await anyio.sleep(max(short.expires_in(), 0) + 1.1)
    assert short.expired
    with pytest.raises(OAuthError) as e:
        await planner.delegate(short, sub_token)
    assert e.value.error == "invalid_grant"


async def test_high_risk_scope_needs_approval(client: MandateClient, mandate: Mandate, alice: str) -> None:
    with pytest.raises(OAuthError) as e:
        await session(client, mandate, "payments-bot").act_for(alice, scope="payments:write", audience="orders-api")
    assert e.value.error == "invalid_scope"
    assert "/bc-authorize" in (e.value.description or "")


async def test_ciba_approved_request_yields_the_token_ciba_7_and_10(
    client: MandateClient, mandate: Mandate, alice: str, alice_person: Person
) -> None:
    payer = session(client, mandate, "payments-bot")
    req = await payer.request_approval(alice, scope="payments:write", audience="orders-api", binding_message="Pay invoice 4711")
    assert req.interval == 1 and req.auth_req_id not in repr(req)
    # Pending until the human decides (CIBA Core §11).
    with pytest.raises(ApprovalPending) as e:
        await client.poll(req)
    assert e.value.error == "authorization_pending"
    await anyio.sleep(1)

    async def human() -> None:
        await anyio.sleep(0.5)
        await anyio.to_thread.run_sync(alice_person.decide, "Pay invoice 4711", "Approve")

    async with anyio.create_task_group() as tg:
        tg.start_soon(human)
        t = await payer.wait_for_approval(req, timeout=20)
    assert t.scope == ("payments:write",)
    assert str(t.chain) == "alice → payments-bot"


async def test_ciba_denied_request_raises_approval_denied_ciba_11(
    client: MandateClient, mandate: Mandate, alice: str, alice_person: Person
) -> None:
    payer = session(client, mandate, "payments-bot")
    req = await payer.request_approval(alice, scope="payments:write", audience="orders-api", binding_message="Deny me (async)")
    await anyio.to_thread.run_sync(alice_person.decide, "Deny me (async)", "Deny")
    with pytest.raises(ApprovalDenied) as e:
        await payer.wait_for_approval(req, timeout=20)
    assert e.value.error == "access_denied"


async def test_ciba_expired_request_raises_approval_expired_ciba_11(mandate_quick_ciba: Mandate) -> None:
    # [ciba] expiry = "2s" on this server.
    alice = Person(mandate_quick_ciba.url, *ALICE).token("orders:read payments:write")
    client = MandateClient(mandate_quick_ciba.url, *RUNTIME)
    payer = session(client, mandate_quick_ciba, "payments-bot")
    req = await payer.request_approval(alice, scope="payments:write", audience="orders-api", binding_message="expires")
    with pytest.raises(ApprovalExpired) as e:
        await payer.wait_for_approval(req, timeout=20)
    assert e.value.error == "expired_token"


async def test_ciba_wait_gives_up_after_its_timeout(client: MandateClient, mandate: Mandate, alice: str) -> None:
    payer = session(client, mandate, "payments-bot")
    req = await payer.request_approval(alice, scope="payments:write", audience="orders-api", binding_message="timeout (async)")
    start = time.monotonic()
    with pytest.raises(ApprovalTimeout):
        await payer.wait_for_approval(req, timeout=1.5)
    assert 1.4 <= time.monotonic() - start < 5


async def test_ciba_wait_stops_on_its_cancel_event_and_on_task_cancellation(
    client: MandateClient, mandate: Mandate, alice: str
) -> None:
    payer = session(client, mandate, "payments-bot")
    req = await payer.request_approval(alice, scope="payments:write", audience="orders-api", binding_message="cancel (async)")
    cancel = anyio.Event()

    async def later() -> None:
        await anyio.sleep(0.3)
        cancel.set()

    start = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(later)
        with pytest.raises(ApprovalCancelled):
            await payer.wait_for_approval(req, timeout=30, cancel=cancel)
    assert time.monotonic() - start < 2, "stopped at the event, not at the timeout"
    # Plain task cancellation (asyncio/anyio) stops the wait too.
    with anyio.move_on_after(0.3) as scope:
        await payer.wait_for_approval(req, timeout=30)
    assert scope.cancelled_caught


async def test_ciba_slow_down_adds_five_seconds_ciba_11(
    client: MandateClient, mandate: Mandate, alice: str, alice_person: Person
) -> None:
    payer = session(client, mandate, "payments-bot")
    req = await payer.request_approval(alice, scope="payments:write", audience="orders-api", binding_message="slow down")
    polls: list[float] = []

    async def stamp(request: httpx.Request) -> None:
        if request.url.path == "/token" and b"ciba" in request.content:
            polls.append(time.monotonic())

    client.http.event_hooks["request"].append(stamp)
    # Two polls at once: the second is told to slow down, and the server's interval is now 6 s.
    for _ in range(2):
        try:
            await client.poll(req)
        except ApprovalPending:
            pass

    async def human() -> None:
        await anyio.sleep(2.5)
        await anyio.to_thread.run_sync(alice_person.decide, "slow down", "Approve")

    async with anyio.create_task_group() as tg:
        tg.start_soon(human)
        t = await payer.wait_for_approval(req, timeout=30)
    assert t.scope == ("payments:write",)
    # wait_for_approval: a poll after 1 s (slow_down again, still pending), then one 1 + 5 s later.
    assert len(polls) >= 4, polls
    assert polls[3] - polls[2] >= 5.9, polls


STAND_IN = """
import json, sys
from mandate import SoftwareKey, SyncAgentSession, SyncMandateClient
issuer, name, pem, client_id, secret_env = sys.argv[1:6]
import os
with SyncMandateClient(issuer, client_id, os.environ[secret_env]) as c:
    print(json.dumps({"agent_token": SyncAgentSession(c, name, SoftwareKey.from_pem(open(pem).read())).token()}))
"""


async def test_command_attester_takes_the_agent_token_a_command_prints(
    client: MandateClient, mandate: Mandate, alice: str, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    # A stand-in for `mandate-agent attest --tpm ...` (same output: {"agent_token": ...}),
    # attesting with the helper's software key; the secret goes through the environment.
    import sys

    from mandate import CommandAttester, MandateError

    (tmp_path / "helper.pem").write_bytes(mandate.keys["helper"].to_pem())
    (tmp_path / "attest.py").write_text(STAND_IN)
    argv = [sys.executable, str(tmp_path / "attest.py"), mandate.url, "helper", str(tmp_path / "helper.pem"), RUNTIME[0], "SECRET"]
    helper = AgentSession(client, "helper", CommandAttester(argv, env={"SECRET": RUNTIME[1]}))
    t = await helper.act_for(alice, scope="orders:read", audience="orders-api")
    assert str(t.chain) == "alice → helper" and helper.attestation == "software"
    assert await helper.token() == await helper.token(), "run once while the token is fresh"
    broken = AgentSession(client, "helper", CommandAttester([sys.executable, "-c", "import sys; sys.exit('no TPM here')"]))
    with pytest.raises(MandateError) as e:
        await broken.token()
    assert e.value.error == "attestation_failed" and "no TPM here" in str(e.value)
