"""``httpx.Auth`` that calls a resource server with a delegated token and keeps it fresh.

.. code-block:: python

    auth = MandateAuth(session, alice_token, scope="orders:read", audience="orders-api")
    async with httpx.AsyncClient(auth=auth) as http:
        await http.get("https://orders.example/orders")

Before each request the token is exchanged again (RFC 8693, through the agent's
:class:`~mandate.AgentSession`) when less than ``margin`` seconds of it are left, and once more
when the resource server answers 401 with ``error="invalid_token"`` (RFC 6750 §3.1: expired or
revoked); the request is then sent again, once. A failed exchange raises its
:class:`~mandate.OAuthError` (e.g. ``invalid_grant`` once the human's token is revoked).

A DPoP-bound token (the session has a ``dpop`` key, RFC 9449) goes as ``Authorization: DPoP``
with a fresh ``DPoP`` proof for each request's method and URL (with ``ath``). A resource
server's ``DPoP-Nonce`` is remembered and put in later proofs, and a 401 ``use_dpop_nonce``
challenge (RFC 9449 §9) is answered by sending the request again, once, with the new nonce.

The same logic serves :class:`mandate.mcp.MandateMCPAuth` (for the MCP SDK's ``httpx2``).
"""

from __future__ import annotations

import inspect
import re
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterable
from typing import Any, Union

import anyio
import httpx

from ._core import DelegatedToken
from .dpop import NonceCache
from .session import AgentSession, SyncAgentSession

__all__ = ["MandateAuth", "TokenSource"]

#: Something that returns a fresh delegated token: sync, or async (a coroutine function).
TokenSource = Callable[[], Union[DelegatedToken, Awaitable[DelegatedToken]]]

_ERROR = re.compile(r'(?:^|[\s,])error\s*=\s*"?([A-Za-z_]+)"?', re.I)


def _challenge_error(response: Any) -> str | None:
    """The ``error`` of a 401's Bearer (RFC 6750 §3) or DPoP (RFC 9449 §7.1) challenge."""
    if response.status_code != 401:
        return None
    challenge = response.headers.get("www-authenticate", "")
    m = _ERROR.search(challenge)
    if m and challenge.lower().lstrip().startswith(("bearer", "dpop")):
        return m.group(1)
    return None


def _invalid_token(response: Any) -> bool:
    """RFC 6750 §3: a 401 whose challenge says ``error="invalid_token"``."""
    return _challenge_error(response) == "invalid_token"


class _DelegatedTokenFlow:
    """The auth flow, written once for any httpx-like library (httpx, httpx2): it only sets a
    header on the request and reads the status and one header of the response."""

    def __init__(
        self,
        session: AgentSession | SyncAgentSession | None = None,
        subject_token: str | DelegatedToken | None = None,
        *,
        scope: str | Iterable[str] | None = None,
        audience: str | Iterable[str] | None = None,
        resource: str | Iterable[str] | None = None,
        source: TokenSource | None = None,
        margin: float = 30.0,
    ) -> None:
        if source is None:
            if session is None or subject_token is None:
                raise TypeError("give a session and a subject_token, or a source")

            if isinstance(session, AgentSession):

                async def exchange() -> DelegatedToken:
                    return await session.act_for(subject_token, scope=scope, audience=audience, resource=resource)

                source = exchange
            else:
                sync_session = session

                def exchange_sync() -> DelegatedToken:
                    return sync_session.act_for(subject_token, scope=scope, audience=audience, resource=resource)

                source = exchange_sync
        self._source = source
        self._is_async = inspect.iscoroutinefunction(source)
        self.margin = margin
        self._token: DelegatedToken | None = None
        self._async_lock = anyio.Lock()
        self._sync_lock = threading.Lock()
        self._nonces = NonceCache()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(token={self._token!r})"

    @property
    def token(self) -> DelegatedToken | None:
        """The delegated token in use (``None`` before the first request)."""
        return self._token

    def _usable(self, stale: DelegatedToken | None) -> DelegatedToken | None:
        t = self._token
        if t is None or t is stale or t.expires_in() <= self.margin:
            return None
        return t

    async def _async_current(self, stale: DelegatedToken | None = None) -> DelegatedToken:
        async with self._async_lock:
            t = self._usable(stale)
            if t is None:
                got = self._source()
                t = await got if inspect.isawaitable(got) else got
                self._token = t
            return t

    def _sync_current(self, stale: DelegatedToken | None = None) -> DelegatedToken:
        if self._is_async:
            raise TypeError("this auth exchanges through an async AgentSession: use it with an AsyncClient")
        with self._sync_lock:
            t = self._usable(stale)
            if t is None:
                got = self._source()
                if not isinstance(got, DelegatedToken):
                    raise TypeError("the token source did not return a DelegatedToken (is it async?)")
                t = self._token = got
            return t

    def _authorize(self, request: Any, token: DelegatedToken) -> None:
        url = str(request.url)
        for name, value in token.headers(request.method, url, nonce=self._nonces.get(url)).items():
            request.headers[name] = value
        if not token.dpop_bound and "dpop" in request.headers:
            del request.headers["dpop"]

    def _nonce_retry(self, request: Any, token: DelegatedToken, response: Any) -> bool:
        """Remember the resource server's ``DPoP-Nonce``; whether the answer is RFC 9449 §9's
        401 ``use_dpop_nonce`` challenge with a nonce to retry with."""
        fresh = self._nonces.update(str(request.url), response.headers)
        return token.dpop_bound and fresh is not None and _challenge_error(response) == "use_dpop_nonce"

    def sync_auth_flow(self, request: Any) -> Generator[Any, Any, None]:
        request.read()  # so that the retry can send the body again
        token = self._sync_current()
        self._authorize(request, token)
        response = yield request
        if self._nonce_retry(request, token, response):
            self._authorize(request, token)
            response = yield request
            self._nonces.update(str(request.url), response.headers)
        if _invalid_token(response):
            # Expired early or revoked: one new exchange, one retry.
            self._authorize(request, self._sync_current(stale=token))
            response = yield request
            self._nonces.update(str(request.url), response.headers)

    async def async_auth_flow(self, request: Any) -> AsyncGenerator[Any, Any]:
        await request.aread()
        token = await self._async_current()
        self._authorize(request, token)
        response = yield request
        if self._nonce_retry(request, token, response):
            self._authorize(request, token)
            response = yield request
            self._nonces.update(str(request.url), response.headers)
        if _invalid_token(response):
            self._authorize(request, await self._async_current(stale=token))
            response = yield request
            self._nonces.update(str(request.url), response.headers)


class MandateAuth(_DelegatedTokenFlow, httpx.Auth):
    """``httpx.Auth`` attaching a delegated token, exchanged again before it expires and once
    on a 401 ``invalid_token``.

    :param session: the acting agent's :class:`~mandate.AgentSession` (for an
        ``httpx.AsyncClient``) or :class:`~mandate.SyncAgentSession` (for an ``httpx.Client``).
    :param subject_token: the human's token (or one delegated to this agent) to exchange.
    :param scope: the scopes to ask for (only narrows).
    :param audience: the audiences to ask for (only narrows).
    :param resource: the resource URIs to ask for (RFC 8707; only narrows).
    :param source: instead of the above, a callable returning a fresh
        :class:`~mandate.DelegatedToken` (sync or async), e.g. a sub-agent's delegation.
    :param margin: exchange again when fewer seconds than this are left.

    With a DPoP-bound token (RFC 9449) each request carries ``Authorization: DPoP`` and a fresh
    proof by the token's key for its method and URL; a 401 ``use_dpop_nonce`` with a
    ``DPoP-Nonce`` is retried once with that nonce.
    """
