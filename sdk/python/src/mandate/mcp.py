"""MCP (the ``mcp`` package, 2.x): an MCP client that calls a server with a delegated token,
and an MCP server that takes mandate's tokens.

**Client.** The MCP Python SDK's HTTP transports run on ``httpx2``, and their authentication is
whatever ``httpx2.Auth`` the ``httpx2.AsyncClient`` carries. Its own
``mcp.client.auth.OAuthClientProvider`` signs a person in through a browser (authorization code
flow); an agent acting for a person has no browser: it already holds the person's token and
exchanges it (RFC 8693) for one naming itself, for the MCP server's URL (RFC 8707
``resource``). :class:`MandateMCPAuth` is that ``httpx2.Auth``: same behaviour as
:class:`mandate.MandateAuth` (a new exchange before expiry, and once on a 401
``invalid_token``), no browser, no dynamic registration.

.. code-block:: python

    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mandate.mcp import MandateMCPAuth, mcp_http_client

    auth = MandateMCPAuth(session, alice_token, server_url="https://mcp.example/mcp", scope="files:read")
    async with mcp_http_client(auth) as http, streamable_http_client(auth.server_url, http_client=http) as (read, write, *_):
        async with ClientSession(read, write) as mcp:
            await mcp.initialize()

**Server.** Wrap the MCP server's ASGI app in :class:`mandate.starlette.MandateMiddleware`, or give
``MCPServer(token_verifier=MandateTokenVerifier(rs), auth=AuthSettings(...))`` the verifier
below to use the SDK's own bearer middleware.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

try:
    import httpx2
    from mcp.server.auth.provider import AccessToken
except ImportError as e:  # pragma: no cover
    raise ImportError("mandate.mcp needs the `mcp` extra: pip install 'mandate-sdk[mcp]'") from e

from ._core import DelegatedToken
from .auth import TokenSource, _DelegatedTokenFlow
from .resource import BearerError, ResourceServer
from .session import AgentSession

__all__ = ["MandateMCPAuth", "MandateTokenVerifier", "mcp_http_client"]


class MandateMCPAuth(_DelegatedTokenFlow, httpx2.Auth):
    """``httpx2.Auth`` for the MCP SDK's transports: a token delegated to the agent of
    ``session`` from ``subject_token``, for ``server_url`` (sent as the RFC 8707 ``resource``,
    as the MCP authorization spec asks), exchanged again before it expires and once on a 401
    ``invalid_token``.

    :param session: the acting agent's async :class:`~mandate.AgentSession`.
    :param subject_token: the person's token (or one delegated to this agent).
    :param server_url: the MCP server's URL, which mandate knows as a ``[[resources]]`` URI.
    :param scope: the scopes to ask for (only narrows).
    :param resource: override the ``resource`` sent (default ``server_url``).
    :param source: instead, any callable returning a fresh :class:`~mandate.DelegatedToken`.
    """

    def __init__(
        self,
        session: AgentSession | None = None,
        subject_token: str | DelegatedToken | None = None,
        *,
        server_url: str,
        scope: str | Iterable[str] | None = None,
        resource: str | Iterable[str] | None = None,
        source: TokenSource | None = None,
        margin: float = 30.0,
    ) -> None:
        self.server_url = server_url
        super().__init__(
            session,
            subject_token,
            scope=scope,
            resource=resource if resource is not None else server_url,
            source=source,
            margin=margin,
        )


def mcp_http_client(auth: MandateMCPAuth, **kwargs: Any) -> httpx2.AsyncClient:
    """An ``httpx2.AsyncClient`` with the MCP SDK's default timeouts (30 s, 300 s to read a
    stream) and ``auth``: pass it to ``streamable_http_client(url, http_client=...)``."""
    from mcp.shared._httpx_utils import create_mcp_http_client

    client = create_mcp_http_client(auth=auth, **kwargs)
    client.auth = auth  # create_mcp_http_client takes auth; set it for every version alike
    return client


class MandateTokenVerifier:
    """``mcp.server.auth.provider.TokenVerifier`` over a :class:`~mandate.resource.ResourceServer`,
    for an ``MCPServer`` that uses the MCP SDK's own bearer middleware. The ``AccessToken``'s
    ``claims`` hold the verified claims (``act`` included), its ``resource`` the audience."""

    def __init__(self, resource_server: ResourceServer) -> None:
        self.resource_server = resource_server

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            p = await self.resource_server.verify(token)
        except BearerError:
            return None
        if p.dpop_jkt is not None:
            # The MCP SDK's middleware only takes Bearer: a DPoP-bound token (RFC 9449 §7.1)
            # without its proof is refused. Use MandateMiddleware for DPoP.
            return None
        return AccessToken(
            token=token,
            client_id=p.client_id or "",
            scopes=sorted(p.scopes),
            expires_at=int(p.expires_at.timestamp()) if p.expires_at else None,
            resource=self.resource_server.audience,
            subject=p.subject,
            claims=dict(p.claims),
        )
