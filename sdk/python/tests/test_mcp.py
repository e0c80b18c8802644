"""The MCP adapter: the MCP Python SDK's own client (mcp 2.3.0, on httpx2) calls the MCP SDK's
own server (MCPServer, streamable HTTP, served by uvicorn at the URL mandate knows as a
[[resources]] URI) protected by mandate.starlette.MandateMiddleware, with a token delegated by
MandateMCPAuth (RFC 8693 exchange with RFC 8707 resource = the server's URL)."""

from __future__ import annotations

import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from mandate import AgentSession, MandateClient
from mandate.mcp import MandateMCPAuth, MandateTokenVerifier, mcp_http_client
from mandate.resource import ResourceServer

from .conftest import RUNTIME, Mandate

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def text(result) -> str:  # type: ignore[no-untyped-def]
    return next(c.text for c in result.content if c.type == "text")


async def test_the_mcp_sdk_client_calls_a_tool_with_a_delegated_token(mandate: Mandate, mcp_server: str, alice_person) -> None:  # type: ignore[no-untyped-def]
    alice = alice_person.token("mcp:tools")
    async with MandateClient(mandate.url, *RUNTIME) as c:
        auth = MandateMCPAuth(AgentSession(c, "planner", mandate.keys["planner"]), alice, server_url=mcp_server, scope="mcp:tools")
        async with mcp_http_client(auth) as http, streamable_http_client(mcp_server, http_client=http, terminate_on_close=False) as streams:
            async with ClientSession(streams[0], streams[1]) as mcp:
                await mcp.initialize()
                tools = [t.name for t in (await mcp.list_tools()).tools]
                assert tools == ["whoami"]
                assert text(await mcp.call_tool("whoami", {})) == "alice → planner"
        # RFC 8707: the token is for the MCP server's URL exactly.
        assert auth.token is not None and auth.token.audience == (mcp_server,)


async def test_without_a_token_the_server_points_to_its_metadata_rfc9728_5_1(mandate: Mandate, mcp_server: str) -> None:
    async with httpx2.AsyncClient() as http:
        r = await http.post(mcp_server, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert r.status_code == 401
        challenge = r.headers["www-authenticate"]
        assert "error=" not in challenge
        metadata_url = mcp_server.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")
        assert f'resource_metadata="{metadata_url}"' in challenge
        doc = (await http.get(metadata_url)).json()
        assert doc["resource"] == mcp_server and doc["authorization_servers"] == [mandate.url]
        assert doc["scopes_supported"] == ["mcp:tools"]


async def test_a_token_for_another_resource_is_refused(mandate: Mandate, mcp_server: str, tokens: dict[str, str]) -> None:
    async with httpx2.AsyncClient() as http:
        r = await http.post(
            mcp_server,
            json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
            headers={"authorization": f"Bearer {tokens['chain']}"},
        )
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]


async def test_token_verifier_for_the_mcp_sdks_own_bearer_middleware(mandate: Mandate, alice_person) -> None:  # type: ignore[no-untyped-def]
    alice = alice_person.token("mcp:tools")
    async with MandateClient(mandate.url, *RUNTIME) as c:
        t = await AgentSession(c, "planner", mandate.keys["planner"]).act_for(alice, resource=mandate.mcp_url)
    verifier = MandateTokenVerifier(ResourceServer(mandate.url, mandate.mcp_url))
    got = await verifier.verify_token(t.access_token)
    assert got is not None and got.subject == "alice" and got.resource == mandate.mcp_url
    assert got.claims is not None and got.claims["act"]["sub"] == "agent:planner"
    assert await verifier.verify_token(t.access_token[:-4] + "AAAA") is None
