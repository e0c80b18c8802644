"""An agent's session with mandate: its agent token, kept fresh, and the delegations it makes
with it. :class:`AgentSession` (async) and its twin :class:`SyncAgentSession`."""

from __future__ import annotations

import threading
from collections.abc import Iterable

import anyio
from joserfc.jwk import ECKey

from ._core import AgentToken, AgentTokenState, ApprovalRequest, DelegatedToken, agent_token_from, attest_op
from ._transport import AsyncEvent
from .client import MandateClient, SyncMandateClient
from .dpop import DPoPKey
from .keys import AgentTokenSource, Attester

__all__ = ["AgentSession", "SyncAgentSession"]


def _dpop_key(dpop: DPoPKey | ECKey | bool | None) -> DPoPKey | None:
    if dpop is None or dpop is False:
        return None
    if dpop is True:
        return DPoPKey.generate()
    if isinstance(dpop, DPoPKey):
        return dpop
    if isinstance(dpop, ECKey):
        return DPoPKey(dpop)
    raise TypeError("dpop is a DPoPKey (or a P-256 joserfc ECKey), True to make one, or None")


class AgentSession:
    """An agent (``agent``, as registered in ``[[agents]]``) proving itself with ``attester``
    (a :class:`~mandate.SoftwareKey`, or a :class:`~mandate.CommandAttester` for a TPM through
    the Rust agent's command line) through ``client``.

    :meth:`token` returns the agent token, attesting again when less than a fifth of its
    lifetime (or 30 s) is left; callers that ask at the same time share one attestation.

    ``dpop`` (RFC 9449, opt-in): a :class:`~mandate.DPoPKey` of this agent's, or ``True`` to
    generate one (:attr:`dpop_key`). Then ``/attest``, the token exchanges and the CIBA
    request and polls carry a fresh proof by it, the agent token and every token this agent
    receives are bound to it (``cnf.jkt``), and a server's ``use_dpop_nonce`` is answered by
    one retry with its ``DPoP-Nonce``. Each agent keeps its own key: never share one between
    sessions of different agents.
    """

    def __init__(
        self,
        client: MandateClient,
        agent: str,
        attester: Attester | AgentTokenSource,
        *,
        dpop: DPoPKey | ECKey | bool | None = None,
    ) -> None:
        self.client = client
        self.agent = agent
        self._attester = attester
        self._state = AgentTokenState()
        self._lock = anyio.Lock()
        self.dpop_key = _dpop_key(dpop)

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
        return await self.client.run(attest_op(self.client.core, self.agent, self._attester, self.dpop_key))

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
        return await self.client.exchange(
            subject_token, actor, scope=scope, audience=audience, resource=resource, dpop=self.dpop_key
        )

    async def delegate(
        self,
        my_token: str | DelegatedToken,
        sub_agent: AgentSession | str,
        *,
        scope: str | Iterable[str] | None = None,
        audience: str | Iterable[str] | None = None,
        resource: str | Iterable[str] | None = None,
        dpop: DPoPKey | None = None,
    ) -> DelegatedToken:
        """A narrower token for a sub-agent: ``my_token`` (delegated to this agent) as the
        subject, the sub-agent's own agent token as the actor.

        ``sub_agent`` is the sub-agent's :class:`AgentSession` (its ``token()`` is the actor,
        and with its own ``dpop_key`` the exchange is signed by that key, so the new token is
        bound to the sub-agent, not to this agent), or its agent token as a string (then
        ``dpop`` is the sub-agent's key, if its agent token is bound)."""
        if isinstance(sub_agent, AgentSession):
            actor, dpop = await sub_agent.token(), sub_agent.dpop_key
        else:
            actor = sub_agent
        return await self.client.exchange(my_token, actor, scope=scope, audience=audience, resource=resource, dpop=dpop)

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
            dpop=self.dpop_key,
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
        return await self.client.run(self.client.core.wait_for_approval(request, timeout, dpop=self.dpop_key), cancel)

    async def revoke(self, token: str | DelegatedToken) -> None:
        """Revoke a token and everything derived from it (RFC 7009)."""
        await self.client.revoke(token)


class SyncAgentSession:
    """The blocking twin of :class:`AgentSession`. ``wait_for_approval`` takes a
    ``threading.Event`` as ``cancel``."""

    def __init__(
        self,
        client: SyncMandateClient,
        agent: str,
        attester: Attester | AgentTokenSource,
        *,
        dpop: DPoPKey | ECKey | bool | None = None,
    ) -> None:
        self.client = client
        self.agent = agent
        self._attester = attester
        self._state = AgentTokenState()
        self._lock = threading.Lock()
        self.dpop_key = _dpop_key(dpop)

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
        return self.client.run(attest_op(self.client.core, self.agent, self._attester, self.dpop_key))

    def act_for(
        self,
        subject_token: str | DelegatedToken,
        *,
        scope: str | Iterable[str] | None = None,
        audience: str | Iterable[str] | None = None,
        resource: str | Iterable[str] | None = None,
    ) -> DelegatedToken:
        actor = self.token()
        return self.client.exchange(subject_token, actor, scope=scope, audience=audience, resource=resource, dpop=self.dpop_key)

    def delegate(
        self,
        my_token: str | DelegatedToken,
        sub_agent: SyncAgentSession | str,
        *,
        scope: str | Iterable[str] | None = None,
        audience: str | Iterable[str] | None = None,
        resource: str | Iterable[str] | None = None,
        dpop: DPoPKey | None = None,
    ) -> DelegatedToken:
        if isinstance(sub_agent, SyncAgentSession):
            actor, dpop = sub_agent.token(), sub_agent.dpop_key
        else:
            actor = sub_agent
        return self.client.exchange(my_token, actor, scope=scope, audience=audience, resource=resource, dpop=dpop)

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
            dpop=self.dpop_key,
        )

    def wait_for_approval(
        self,
        request: ApprovalRequest,
        *,
        timeout: float | None = None,
        cancel: threading.Event | None = None,
    ) -> DelegatedToken:
        return self.client.run(self.client.core.wait_for_approval(request, timeout, dpop=self.dpop_key), cancel)

    def revoke(self, token: str | DelegatedToken) -> None:
        self.client.revoke(token)
