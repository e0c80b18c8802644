"""A high-risk call waits for the human: payments-bot wants to pay (``payments:write``, a
high-risk scope in the demo config), so mandate asks alice first (OpenID CIBA, poll mode). She
approves on mandate's /approvals page; only then does payments-bot get a token and pay.

    cargo run --release                       # mandate with the demo config, in one terminal
    pip install './sdk/python[fastapi]' uvicorn
    python examples/python/approval.py        # in another: sign in, then approve in the browser
"""

from __future__ import annotations

import asyncio
import os
import webbrowser
from pathlib import Path

import httpx

from _server import URL, start_payments_api
from mandate import AgentSession, ApprovalDenied, MandateClient, OAuthError, SoftwareKey
from signin import sign_in

ISSUER = os.environ.get("MANDATE_ISSUER", "http://127.0.0.1:8080")
KEYS = Path(__file__).resolve().parent.parent / "keys"


async def main() -> None:
    start_payments_api()
    alice_token = sign_in(ISSUER, "payments:read payments:write")
    async with MandateClient(ISSUER, "agent-runtime", "s3cret") as client:
        bot = AgentSession(client, "payments-bot", SoftwareKey.from_pem((KEYS / "payments-bot.pem").read_bytes()))

        try:
            await bot.act_for(alice_token, scope="payments:write", audience="payments-api")
        except OAuthError as e:
            print(f"straight exchange refused, as policy says: {e.error}")

        request = await bot.request_approval(
            alice_token, scope="payments:write", audience="payments-api", binding_message="Pay invoice 4711: 42.00 EUR"
        )
        approvals = f"{ISSUER}/approvals"
        print(f"Waiting for alice to approve at {approvals}", flush=True)
        if os.environ.get("EXAMPLE_BROWSER") != "none":
            webbrowser.open(approvals)
        try:
            token = await bot.wait_for_approval(request, timeout=300)
        except ApprovalDenied:
            print("alice said no: nothing paid")
            return
        print(f"approved: {token}")
        async with httpx.AsyncClient() as http:
            r = await http.post(f"{URL}/payments", headers={"Authorization": f"Bearer {token.access_token}"})
            r.raise_for_status()
            print(f"payments-bot paid: {r.json()}")


if __name__ == "__main__":
    asyncio.run(main())
