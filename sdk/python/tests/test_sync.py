"""The sync twins (SyncMandateClient, SyncAgentSession) against the real mandate: the same
protocol core as the async classes, driven by httpx.Client."""

from __future__ import annotations

import threading
import time

import pytest

from mandate import (
    ApprovalCancelled,
    ApprovalDenied,
    ApprovalTimeout,
    OAuthError,
    SoftwareKey,
    SyncAgentSession,
    SyncMandateClient,
)

from .conftest import ORDERS_RS, RUNTIME, Mandate, Person


@pytest.fixture
def client(mandate: Mandate):
    with SyncMandateClient(mandate.url, *RUNTIME) as c:
        yield c


def session(client: SyncMandateClient, mandate: Mandate, name: str) -> SyncAgentSession:
    return SyncAgentSession(client, name, mandate.keys[name])


def test_sync_attest_act_for_delegate_revoke(client: SyncMandateClient, mandate: Mandate, alice: str) -> None:
    planner, payer = session(client, mandate, "planner"), session(client, mandate, "payments-bot")
    assert planner.token() == planner.token()
    mine = planner.act_for(alice, scope="orders:read", audience="orders-api")
    sub = planner.delegate(mine, payer.token())
    assert str(sub.chain) == "alice → planner → payments-bot"
    with SyncMandateClient(mandate.url, *ORDERS_RS) as rs:
        assert rs.introspect(sub)["active"] is True
        planner.revoke(mine)  # RFC 7009: the subtree goes too
        assert rs.introspect(sub)["active"] is False


def test_sync_refusals_rfc6749_5_2(client: SyncMandateClient, mandate: Mandate, alice: str) -> None:
    planner = session(client, mandate, "planner")
    mine = planner.act_for(alice, scope="orders:read", audience="orders-api")
    with pytest.raises(OAuthError) as e:
        planner.delegate(mine, session(client, mandate, "payments-bot").token(), scope="orders:write")
    assert e.value.error == "invalid_scope"
    with pytest.raises(OAuthError) as e:
        SyncAgentSession(client, "helper", SoftwareKey.generate()).token()
    assert "helper" not in repr(SoftwareKey.generate())


def test_sync_ciba_denied(client: SyncMandateClient, mandate: Mandate, alice: str, alice_person: Person) -> None:
    payer = session(client, mandate, "payments-bot")
    req = payer.request_approval(alice, scope="payments:write", audience="orders-api", binding_message="Deny me (sync)")
    alice_person.decide("Deny me (sync)", "Deny")
    with pytest.raises(ApprovalDenied):
        payer.wait_for_approval(req, timeout=20)


def test_sync_ciba_approved(client: SyncMandateClient, mandate: Mandate, alice: str, alice_person: Person) -> None:
    payer = session(client, mandate, "payments-bot")
    req = payer.request_approval(alice, scope="payments:write", audience="orders-api", binding_message="Approve me (sync)")
    alice_person.decide("Approve me (sync)", "Approve")
    t = payer.wait_for_approval(req, timeout=20)
    assert t.scope == ("payments:write",) and str(t.chain) == "alice → payments-bot"


def test_sync_ciba_timeout_and_cancel_event(client: SyncMandateClient, mandate: Mandate, alice: str) -> None:
    payer = session(client, mandate, "payments-bot")
    req = payer.request_approval(alice, scope="payments:write", audience="orders-api", binding_message="cancel (sync)")
    start = time.monotonic()
    with pytest.raises(ApprovalTimeout):
        payer.wait_for_approval(req, timeout=1.2)
    assert 1.1 <= time.monotonic() - start < 5
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    start = time.monotonic()
    with pytest.raises(ApprovalCancelled):
        payer.wait_for_approval(req, timeout=30, cancel=cancel)
    assert time.monotonic() - start < 2, "stopped at the event, not at the timeout"
