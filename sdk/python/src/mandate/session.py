"""An agent's session with mandate: its agent token, kept fresh, and the delegations it makes
with it. :class:`AgentSession` (async) and its twin :class:`SyncAgentSession`."""

from __future__ import annotations

import threading
from collections.abc import Iterable

import anyio

from ._core import AgentToken, AgentTokenState, ApprovalRequest, DelegatedToken, agent_token_from, attest_op
from ._transport import AsyncEvent
from .client import MandateClient, SyncMandateClient
from .keys import AgentTokenSource, Attester

__all__ = ["AgentSession", "SyncAgentSession"]


class AgentSession:
    """An agent (``agent``, as registered in ``[[agents]]``) proving itself with ``attester``
    (a :class:`~mandate.SoftwareKey`, or a :class:`~mandate.CommandAttester` for a TPM through
    the Rust agent's command line) through ``client``.

    :meth:`token` returns the agent token, attesting again when less than a fifth of its
    lifetime (or 30 s) is left; callers that ask at the same time share one attestation.
    """

    def __init__(self, client: MandateClient, agent: str, attester: Attester | AgentTokenSource) -> None:
        self.client = client
        self.agent = agent
        self._attester = attester
        self._state = AgentTokenState()
        self._lock = anyio.Lock()

    def __repr__(self) -> str:
        return f"AgentSession(agent={self.agent!r}, issuer={self.client.issuer!r})"

    @property
    def attestation(self) -> str | None:
        """How the server says this agent was attested (``"software"``, ``"tpm"``), once known."""
        return self._state.attestation

    async def attest(self) -> str:
        """Attest now (challenge, evidence, ``/attest``): a fresh agent token."""
        async with self._lock:
            return self._state.set(await self._attest())

    async def token(self) -> str:
        """The agent token, attesting first when there is none or it is close to expiry."""
        async with self._lock:
            current = self._state.fresh()
            if current is not None:
                return current
            return self._state.set(await self._attest())

    async def _attest(self) -> AgentToken:
        if isinstance(self._attester, AgentTokenSource):
            return agent_token_from(await anyio.to_thread.run_sync(self._attester.agent_token))
        return await self.client.run(attest_op(self.client.core, self.agent, self._attester))

    async def act_for(
        self,
        subject_token: str | DelegatedToken,
        *,
        scope: str | Iterable[str] | None = None,
        audience: str | Iterable[str] | None = None,
        resource: str | Iterable[str] | None = None,
    ) -> DelegatedToken:
        """RFC 8693 delegation to this agent: ``subject_token`` (a human's token, or one
        delegated to this agent) in, a token this agent acts with out. ``scope``, ``audience``
        and ``resource`` (RFC 8707) only narrow; a wider scope raises ``OAuthError``
        ``invalid_scope``, a high-risk one too (use :meth:`request_approval`)."""
        actor = await self.token()
        return await self.client.exchange(subject_token, actor, scope=scope, audience=audience, resource=resource)

    async def delegate(
        self,
        my_token: str | DelegatedToken,
        sub_agent_token: str,
        *,
        scope: str | Iterable[str] | None = None,
        audience: str | Iterable[str] | None = None,
        resource: str | Iterable[str] | None = None,
    ) -> DelegatedToken:
        """A narrower token for a sub-agent: ``my_token`` (delegated to this agent) as the
        subject, the sub-agent's own agent token as the actor (the sub-agent's ``token()``)."""
        return await self.client.exchange(my_token, sub_agent_token, scope=scope, audience=audience, resource=resource)

    async def request_approval(
        self,
        subject_token: str | DelegatedToken,
        *,
        scope: str | Iterable[str] | None = None,
        audience: str | Iterable[str] | None = None,
        resource: str | Iterable[str] | None = None,
        binding_message: str | None = None,
        requested_expiry: int | None = None,
    ) -> ApprovalRequest:
        """Ask the human to approve a delegation (CIBA Core §7.1, poll mode); they see it on
        mandate's ``/approvals`` page. Wait for the answer with :meth:`wait_for_approval`."""
        actor = await self.token()
        return await self.client.backchannel_authorize(
            subject_token,
            actor,
            scope=scope,
            audience=audience,
            resource=resource,
            binding_message=binding_message,
            requested_expiry=requested_expiry,
        )

    async def wait_for_approval(
        self,
        request: ApprovalRequest,
        *,
        timeout: float | None = None,
        cancel: AsyncEvent | None = None,
    ) -> DelegatedToken:
        """Poll until the human decides: the delegated token, or ``ApprovalDenied``,
        ``ApprovalExpired``, ``ApprovalTimeout`` (after ``timeout`` seconds) or
        ``ApprovalCancelled`` (when ``cancel`` is set). Polls every ``interval`` seconds and 5 s
        slower after each ``slow_down`` (CIBA Core §11). Cancelling the task works too."""
        return await self.client.run(self.client.core.wait_for_approval(request, timeout), cancel)

    async def revoke(self, token: str | DelegatedToken) -> None:
        """Revoke a token and everything derived from it (RFC 7009)."""
        await self.client.revoke(token)


class SyncAgentSession:
    """The blocking twin of :class:`AgentSession`. ``wait_for_approval`` takes a
    ``threading.Event`` as ``cancel``."""

    def __init__(self, client: SyncMandateClient, agent: str, attester: Attester | AgentTokenSource) -> None:
        self.client = client
        self.agent = agent
        self._attester = attester
        self._state = AgentTokenState()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SyncAgentSession(agent={self.agent!r}, issuer={self.client.issuer!r})"

    @property
    def attestation(self) -> str | None:
        return self._state.attestation

    def attest(self) -> str:
        with self._lock:
            return self._state.set(self._attest())

    def token(self) -> str:
        with self._lock:
            current = self._state.fresh()
            if current is not None:
                return current
            return self._state.set(self._attest())

    def _attest(self) -> AgentToken:
        if isinstance(self._attester, AgentTokenSource):
            return agent_token_from(self._attester.agent_token())
        return self.client.run(attest_op(self.client.core, self.agent, self._attester))

    def act_for(
        self,
        subject_token: str | DelegatedToken,
        *,
        scope: str | Iterable[str] | None = None,
        audience: str | Iterable[str] | None = None,
        resource: str | Iterable[str] | None = None,
    ) -> DelegatedToken:
        actor = self.token()
        return self.client.exchange(subject_token, actor, scope=scope, audience=audience, resource=resource)

    def delegate(
        self,
        my_token: str | DelegatedToken,
        sub_agent_token: str,
        *,
        scope: str | Iterable[str] | None = None,
        audience: str | Iterable[str] | None = None,
        resource: str | Iterable[str] | None = None,
    ) -> DelegatedToken:
        return self.client.exchange(my_token, sub_agent_token, scope=scope, audience=audience, resource=resource)

    def request_approval(
        self,
        subject_token: str | DelegatedToken,
        *,
        scope: str | Iterable[str] | None = None,
        audience: str | Iterable[str] | None = None,
        resource: str | Iterable[str] | None = None,
        binding_message: str | None = None,
        requested_expiry: int | None = None,
    ) -> ApprovalRequest:
        actor = self.token()
        return self.client.backchannel_authorize(
            subject_token,
            actor,
            scope=scope,
            audience=audience,
            resource=resource,
            binding_message=binding_message,
            requested_expiry=requested_expiry,
        )

    def wait_for_approval(
        self,
        request: ApprovalRequest,
        *,
        timeout: float | None = None,
        cancel: threading.Event | None = None,
    ) -> DelegatedToken:
        return self.client.run(self.client.core.wait_for_approval(request, timeout), cancel)

    def revoke(self, token: str | DelegatedToken) -> None:
        self.client.revoke(token)
