"""Runs ``payments_api.app`` in a thread for the examples (uvicorn), on PAYMENTS_API_PORT
(default 8001)."""

from __future__ import annotations

import os
import threading
import time

import uvicorn

from payments_api import app

PORT = int(os.environ.get("PAYMENTS_API_PORT", "8001"))
URL = f"http://127.0.0.1:{PORT}"


def start_payments_api() -> uvicorn.Server:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=PORT, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise SystemExit(f"the payments API did not start on port {PORT}")
        time.sleep(0.05)
    return server
