"""A client of one mandate server, as one OAuth client: :class:`MandateClient` (async) and
its twin :class:`SyncMandateClient`. Both run the same sans-IO calls of :mod:`mandate._core`."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

import httpx

from ._core import AgentToken, ApprovalRequest, ClientCore, DelegatedToken, Op, T, token_string
from ._transport import DEFAULT_TIMEOUT, AsyncEvent, run_async, run_sync
from .dpop import DPoPKey

__all__ = ["MandateClient", "SyncMandateClient"]

class _Base:
    def __init__(self, issuer: str, client_id: str, client_secret: str | None = None) -> None:
        self._core = ClientCore(issuer, client_id, client_secret)

    @property
    def issuer(self) -> str:
        return self._core.issuer

    @property
    def client_id(self) -> str:
        return self._core.client_id

    @property
    def core(self) -> ClientCore:
        """The sans-IO protocol object (for the sessions built on this client)."""
        return self._core

    def __repr__(self) -> str:
        return f"{type(self).__name__}(issuer={self.issuer!r}, client_id={self.client_id!r})"


class MandateClient(_Base):
    """An async client of the mandate server at ``issuer``, authenticating at the token,
    revocation, introspection and backchannel endpoints as ``client_id`` with HTTP Basic
    (RFC 6749 §2.3.1). Endpoints come from the RFC 8414 metadata, fetched once.

    ``dpop=`` (a :class:`~mandate.DPoPKey`) on :meth:`attest`, :meth:`exchange`,
    :meth:`backchannel_authorize` and :meth:`poll` sends an RFC 9449 proof by that key (the
    server then binds the token to it); :class:`~mandate.AgentSession` does this for you.

    Pass ``http`` to use your own ``httpx.AsyncClient`` (proxies, TLS settings); otherwise
    the client makes one, closed by :meth:`aclose` or ``async with``.
    """

    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str | None = None,
        *,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(issuer, client_id, client_secret)
        self._own_http = http is None
        self.http = http or httpx.AsyncClient(timeout=DEFAULT_TIMEOUT, follow_redirects=False)

    async def run(self, op: Op[T], cancel: AsyncEvent | None = None) -> T:
        return await run_async(op, self.http, cancel)

    async def aclose(self) -> None:
        if self._own_http:
            await self.http.aclose()

    async def __aenter__(self) -> MandateClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def metadata(self) -> dict[str, Any]:
        """The server's RFC 8414 metadata (fetched once, then cached)."""
        return await self.run(self._core.discover())

    async def challenge(self, agent: str) -> str:
        return await self.run(self._core.challenge(agent))

    async def attest(self, agent: str, nonce: str, evidence: dict[str, Any], *, dpop: DPoPKey | None = None) -> AgentToken:
        return await self.run(self._core.attest(agent, nonce, evidence, dpop))

    async def exchange(
        self,
        subject_token: str | DelegatedToken,
        actor_token: str,
        *,
        scope: str | Iterable[str] | None = None,
        audience: str | Iterable[str] | None = None,
        resource: str | Iterable[str] | None = None,
        dpop: DPoPKey | None = None,
    ) -> DelegatedToken:
        return await self.run(self._core.exchange(token_string(subject_token), actor_token, scope, audience, resource, dpop))

    async def backchannel_authorize(
        self,
        subject_token: str | DelegatedToken,
        actor_token: str,
        *,
        scope: str | Iterable[str] | None = None,
        audience: str | Iterable[str] | None = None,
        resource: str | Iterable[str] | None = None,
        binding_message: str | None = None,
        requested_expiry: int | None = None,
        dpop: DPoPKey | None = None,
    ) -> ApprovalRequest:
        return await self.run(
            self._core.backchannel_authorize(
                token_string(subject_token), actor_token, scope, audience, resource, binding_message, requested_expiry, dpop
            )
        )

    async def poll(self, request: ApprovalRequest | str, *, dpop: DPoPKey | None = None) -> DelegatedToken:
        return await self.run(self._core.poll(request, dpop))

    async def revoke(self, token: str | DelegatedToken) -> None:
        await self.run(self._core.revoke(token_string(token)))

    async def introspect(self, token: str | DelegatedToken) -> dict[str, Any]:
        return await self.run(self._core.introspect(token_string(token)))


class SyncMandateClient(_Base):
    """The blocking twin of :class:`MandateClient`, over ``httpx.Client``."""

    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str | None = None,
        *,
        http: httpx.Client | None = None,
    ) -> None:
        super().__init__(issuer, client_id, client_secret)
        self._own_http = http is None
        self.http = http or httpx.Client(timeout=DEFAULT_TIMEOUT, follow_redirects=False)

    def run(self, op: Op[T], cancel: threading.Event | None = None) -> T:
        return run_sync(op, self.http, cancel)

    def close(self) -> None:
        if self._own_http:
            self.http.close()

    def __enter__(self) -> SyncMandateClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def metadata(self) -> dict[str, Any]:
        return self.run(self._core.discover())

    def challenge(self, agent: str) -> str:
        return self.run(self._core.challenge(agent))

    def attest(self, agent: str, nonce: str, evidence: dict[str, Any], *, dpop: DPoPKey | None = None) -> AgentToken:
        return self.run(self._core.attest(agent, nonce, evidence, dpop))

    def exchange(
        self,
        subject_token: str | DelegatedToken,
        actor_token: str,
        *,
        scope: str | Iterable[str] | None = None,
        audience: str | Iterable[str] | None = None,
        resource: str | Iterable[str] | None = None,
        dpop: DPoPKey | None = None,
    ) -> DelegatedToken:
        return self.run(self._core.exchange(token_string(subject_token), actor_token, scope, audience, resource, dpop))

    def backchannel_authorize(
        self,
        subject_token: str | DelegatedToken,
        actor_token: str,
        *,
        scope: str | Iterable[str] | None = None,
        audience: str | Iterable[str] | None = None,
        resource: str | Iterable[str] | None = None,
        binding_message: str | None = None,
        requested_expiry: int | None = None,
        dpop: DPoPKey | None = None,
    ) -> ApprovalRequest:
        return self.run(
            self._core.backchannel_authorize(
                token_string(subject_token), actor_token, scope, audience, resource, binding_message, requested_expiry, dpop
            )
        )

    def poll(self, request: ApprovalRequest | str, *, dpop: DPoPKey | None = None) -> DelegatedToken:
        return self.run(self._core.poll(request, dpop))

    def revoke(self, token: str | DelegatedToken) -> None:
        self.run(self._core.revoke(token_string(token)))

    def introspect(self, token: str | DelegatedToken) -> dict[str, Any]:
        return self.run(self._core.introspect(token_string(token)))
