"""The human's part, shared by the examples: alice signs in at mandate in her browser and the
example gets her access token (OAuth 2.0 authorization code with PKCE, RFC 6749 §4.1 and RFC
7636, through a loopback redirect, RFC 8252 §7.3).

This is the app's side of sign-in, not the SDK's: an agent acts for a person with whatever
token that person handed it. The demo config's public client ``example-agent`` redirects to
http://127.0.0.1:9901/callback.

Set ``EXAMPLE_BROWSER=none`` to have the URL printed instead of opened (the examples' tests play
the person by following it).
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import os
import secrets
import sys
import threading
import webbrowser
from urllib.parse import parse_qs, urlencode, urlparse

import httpx

CLIENT_ID = "example-agent"
REDIRECT_PORT = 9901
REDIRECT_URI = f"http://127.0.0.1:{REDIRECT_PORT}/callback"


def sign_in(issuer: str, scope: str, timeout: float = 300.0) -> str:
    """Alice's access token for ``scope``, after she signs in and consents in her browser."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    state = secrets.token_urlsafe(16)
    metadata = httpx.get(f"{issuer}/.well-known/oauth-authorization-server").raise_for_status().json()
    url = metadata["authorization_endpoint"] + "?" + urlencode(
        {
            "response_type": "code",
            "client_id": CLIENT_ID,
            "redirect_uri": REDIRECT_URI,
            "scope": scope,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    got: dict[str, str] = {}
    done = threading.Event()

    class Callback(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            query = parse_qs(urlparse(self.path).query)
            got.update({k: v[0] for k, v in query.items()})
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.end_headers()
            self.wfile.write("Signed in. You can close this tab.\n".encode())
            done.set()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", REDIRECT_PORT), Callback)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        print(f"Sign in as alice (password alice-password) at:\n  {url}", flush=True)
        if os.environ.get("EXAMPLE_BROWSER") != "none":
            webbrowser.open(url)
        if not done.wait(timeout):
            sys.exit("nobody signed in in time")
    finally:
        server.shutdown()
        server.server_close()
    if got.get("state") != state:
        sys.exit("the sign-in came back with another state: refused (RFC 6749 §10.12)")
    if "code" not in got:
        sys.exit(f"sign-in refused: {got.get('error', 'no code')}")
    token = httpx.post(
        metadata["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": got["code"],
            "redirect_uri": REDIRECT_URI,
            "client_id": CLIENT_ID,
            "code_verifier": verifier,
        },
    )
    token.raise_for_status()
    return str(token.json()["access_token"])
