"""Delegation in four steps: alice signs in, the planner agent acts for her, hands a narrower
token to its sub-agent payments-bot, and payments-bot calls the payments API (FastAPI), which
prints who acts for whom: ``alice → planner → payments-bot``.

    cargo run --release                       # mandate with the demo config, in one terminal
    pip install './sdk/python[fastapi]' uvicorn
    python examples/python/delegate.py        # in another: sign in as alice when the browser opens
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx

from _server import URL, start_payments_api
from mandate import AgentSession, MandateAuth, MandateClient, SoftwareKey
from signin import sign_in

ISSUER = os.environ.get("MANDATE_ISSUER", "http://127.0.0.1:8080")
KEYS = Path(__file__).resolve().parent.parent / "keys"  # the demo agents' keys (development only)


def agent(client: MandateClient, name: str) -> AgentSession:
    return AgentSession(client, name, SoftwareKey.from_pem((KEYS / f"{name}.pem").read_bytes()))


async def main() -> None:
    start_payments_api()
    alice_token = sign_in(ISSUER, "payments:read")
    async with MandateClient(ISSUER, "agent-runtime", "s3cret") as client:
        planner, payments_bot = agent(client, "planner"), agent(client, "payments-bot")

        # The planner proves what it is (attestation) and acts for alice (RFC 8693).
        mine = await planner.act_for(alice_token, scope="payments:read", audience="payments-api")
        print(f"planner holds {mine}")

        # payments-bot calls the API with a token the planner's hands down to it: exchanged
        # with payments-bot's own agent token as the actor, and again before it expires.
        auth = MandateAuth(payments_bot, mine, scope="payments:read", audience="payments-api")
        async with httpx.AsyncClient(auth=auth) as http:
            r = await http.get(f"{URL}/payments")
            r.raise_for_status()
            print(f"payments-bot got {r.json()}")

        # Revoking the planner's token revokes everything delegated from it.
        await planner.revoke(mine)
        print("planner's session revoked: payments-bot's token is dead too")


if __name__ == "__main__":
    asyncio.run(main())
