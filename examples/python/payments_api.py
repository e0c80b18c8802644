"""A small resource server protected by mandate: FastAPI with the SDK's ``require``.

Every call prints who it acts for, e.g. ``payments-api: GET /payments for alice → planner →
payments-bot (software)``. Run alone with ``uvicorn payments_api:app --port 8001`` (from this
folder), or let ``delegate.py`` and ``approval.py`` start it.
"""

from __future__ import annotations

import os

from fastapi import Depends, FastAPI
from mandate.fastapi import metadata_router, require
from mandate.resource import Principal, ResourceServer

ISSUER = os.environ.get("MANDATE_ISSUER", "http://127.0.0.1:8080")

# Tokens are checked against mandate's JWKS; `mode="introspection"` with the client
# payments-api / payments-secret would see revocations at once instead.
rs = ResourceServer(
    ISSUER,
    "payments-api",
    scopes_supported=["payments:read", "payments:write"],
    resource_name="Payments API (mandate example)",
)
app = FastAPI()
app.include_router(metadata_router(rs))  # RFC 9728: /.well-known/oauth-protected-resource


def said(method: str, who: Principal) -> None:
    print(f"payments-api: {method} /payments for {who} ({who.attestation or 'no agent'})", flush=True)


@app.get("/payments")
async def list_payments(who: Principal = Depends(require(rs, "payments:read"))) -> dict[str, object]:
    said("GET", who)
    return {"for": who.subject, "chain": str(who), "payments": [{"id": 4711, "amount": "42.00 EUR"}]}


@app.post("/payments")
async def pay(who: Principal = Depends(require(rs, "payments:write"))) -> dict[str, object]:
    said("POST", who)
    return {"paid": 4711, "chain": str(who)}
