"""The Python SDK client (PyPI `mcp` 2.x, its `mcp.client.auth.OAuthClientProvider`): sign in
through mandate, list the tools, call them, refresh, call again.

The registration mode decides what the SDK is given: preregistered: client information already
in its token storage (so it does not register); dcr: nothing stored (it registers at the
metadata's registration_endpoint); cimd: a client_metadata_url (used when mandate's metadata says
client_id_metadata_document_supported).

The browser step is done headlessly, like tests/mcp/lib/signin.ts: follow redirects on mandate's
origin, post the login form (its hidden inputs, CSRF token included, plus username and password),
press Approve, and catch the redirect to the loopback redirect URI with code, state and iss.

Usage: python_client.py '{"serverUrl": ..., "mode": ..., ...}'  (see lib/client-common.ts)
"""

import asyncio
import html
import json
import re
import sys
import time
from urllib.parse import parse_qs, urljoin, urlparse

import httpx2
from mcp import ClientSession
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)


def log(msg: str) -> None:
    sys.stderr.write(f"  {msg}\n")


class Failure(Exception):
    pass


def _attr(tag: str, name: str) -> str | None:
    m = re.search(rf"\s{name}\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s>]+))", tag, re.I)
    if not m:
        return None
    return html.unescape(m.group(1) or m.group(2) or m.group(3) or "")


def forms(page: str) -> list[dict]:
    out = []
    for m in re.finditer(r"<form\b([^>]*)>(.*?)</form>", page, re.I | re.S):
        head, body = m.group(1), m.group(2)
        form = {
            "method": (_attr(head, "method") or "get").lower(),
            "action": _attr(head, "action"),
            "hidden": [],
            "inputs": [],
            "buttons": [],
        }
        for i in re.finditer(r"<input\b[^>]*>", body, re.I):
            name = _attr(i.group(0), "name")
            if not name:
                continue
            form["inputs"].append(name)
            if (_attr(i.group(0), "type") or "").lower() == "hidden":
                form["hidden"].append((name, _attr(i.group(0), "value") or ""))
        for b in re.finditer(r"<button\b([^>]*)>(.*?)</button>", body, re.I | re.S):
            text = html.unescape(re.sub(r"<[^>]*>", "", b.group(2))).strip()
            form["buttons"].append({"name": _attr(b.group(1), "name") or "", "value": _attr(b.group(1), "value") or "", "text": text})
        out.append(form)
    return out


async def sign_in(authorization_url: str, username: str, password: str) -> str:
    """Signs in and approves at mandate; returns the URL mandate redirected the browser to."""
    origin = "{0.scheme}://{0.netloc}".format(urlparse(authorization_url))
    url = authorization_url
    method, data = "GET", None
    signed_in = approved = False
    # A cookie jar per client; mandate's cookies are host-only and path `/`.
    async with httpx2.AsyncClient(follow_redirects=False) as http:
        for _ in range(12):
            resp = await http.request(method, url, data=data, headers={"accept": "text/html"})
            if 300 <= resp.status_code < 400:
                nxt = urljoin(url, resp.headers["location"])
                if "{0.scheme}://{0.netloc}".format(urlparse(nxt)) != origin:
                    return nxt
                url, method, data = nxt, "GET", None
                continue
            page = resp.text
            visible = re.sub(r"\s+", " ", re.sub(r"<[^>]*>", " ", page))[:300]
            summary = f"HTTP {resp.status_code} at {urlparse(url).path}: {visible}"
            all_forms = forms(page)
            login = next((f for f in all_forms if f["method"] == "post" and "password" in f["inputs"]), None)
            if login:
                if signed_in:
                    raise Failure(f"signing in as {username} failed: {summary}")
                signed_in = True
                data = dict(login["hidden"]) | {"username": username, "password": password}
                url, method = urljoin(url, login["action"] or ""), "POST"
                continue
            consent = next((f for f in all_forms if any(b["text"] == "Approve" for b in f["buttons"])), None)
            if consent:
                if approved:
                    raise Failure(f"the consent page came back after Approve: {summary}")
                approved = True
                button = next(b for b in consent["buttons"] if b["text"] == "Approve")
                data = dict(consent["hidden"])
                if button["name"]:
                    data[button["name"]] = button["value"]
                url, method = urljoin(url, consent["action"] or ""), "POST"
                continue
            raise Failure(f"neither a login nor a consent page, nor a redirect: {summary}")
    raise Failure("no redirect back to the client after 12 steps")


class MemoryStorage:
    def __init__(self, client_info: OAuthClientInformationFull | None, client_metadata_url: str | None):
        self.tokens: OAuthToken | None = None
        self.client_info = client_info
        self.client_metadata_url = client_metadata_url
        # Whether client information was stored from nothing with a new id (a registration).
        self.registered = False

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        if self.client_info is None and client_info.client_id != self.client_metadata_url:
            self.registered = True
        self.client_info = client_info


class Person:
    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.sign_ins = 0
        self.callback_url: str | None = None

    async def redirect(self, authorization_url: str) -> None:
        self.sign_ins += 1
        q = parse_qs(urlparse(authorization_url).query)
        if q.get("resource") != [self.cfg["serverUrl"]]:
            raise Failure(f"the authorization request's resource is {q.get('resource')}, not {self.cfg['serverUrl']}")
        if q.get("code_challenge_method") != ["S256"]:
            raise Failure("the authorization request does not use PKCE S256")
        log(f"sign-in: client_id={q.get('client_id')} scope={q.get('scope')}")
        self.callback_url = await sign_in(authorization_url, self.cfg["username"], self.cfg["password"])

    async def callback(self) -> AuthorizationCodeResult:
        if not self.callback_url:
            raise Failure("the SDK asked for the callback before the browser step")
        parsed = urlparse(self.callback_url)
        if f"{parsed.scheme}://{parsed.netloc}{parsed.path}" != self.cfg["redirectUri"]:
            raise Failure(f"redirected to {self.callback_url}, not {self.cfg['redirectUri']}")
        q = parse_qs(parsed.query)
        if "error" in q:
            raise Failure(f"mandate redirected back with error={q['error']}: {self.callback_url}")
        one = lambda k: q[k][0] if k in q else None  # noqa: E731
        # The SDK checks state and (RFC 9207) iss against the metadata; iss is checked here too.
        if one("iss") != self.cfg["issuer"]:
            raise Failure(f"iss came back as {one('iss')}, not {self.cfg['issuer']}")
        return AuthorizationCodeResult(code=one("code") or "", state=one("state"), iss=one("iss"))


def whoami(result) -> dict:
    if result.is_error:
        raise Failure(f"whoami answered an error: {result}")
    text = next((c.text for c in result.content if c.type == "text"), None)
    if not text:
        raise Failure(f"whoami answered no text: {result}")
    return json.loads(text)


def check_whoami(me: dict, cfg: dict, client_id: str) -> None:
    if me.get("sub") != cfg["username"]:
        raise Failure(f"whoami says sub={me.get('sub')}, not {cfg['username']}")
    if me.get("client_id") != client_id:
        raise Failure(f"whoami says client_id={me.get('client_id')}, not {client_id}")
    if not me.get("jti"):
        raise Failure("whoami says no jti")


def check_identity(cfg: dict, client_id: str, registered: bool) -> None:
    """The client identity matches the mode (see checkIdentity in lib/client-common.ts)."""
    mode = cfg["mode"]
    if mode == "preregistered" and client_id != cfg["clientId"]:
        raise Failure(f"client_id {client_id}, not the configured {cfg['clientId']}")
    if mode == "cimd" and client_id != cfg.get("clientMetadataUrl"):
        raise Failure(f"client_id {client_id}, not the metadata document URL {cfg.get('clientMetadataUrl')}")
    if mode == "dcr" and (not registered or client_id == cfg.get("clientMetadataUrl")):
        raise Failure(f"client_id {client_id} did not come from a registration")
    if mode != "dcr" and registered:
        raise Failure(f"the SDK registered itself in mode {mode}")


async def main() -> None:
    cfg = json.loads(sys.argv[1])
    mode = cfg["mode"]
    metadata = OAuthClientMetadata(
        client_name="mandate test: Python mcp 2.x",
        redirect_uris=[cfg["redirectUri"]],
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="none",
    )
    stored = None
    if mode == "preregistered":
        stored = OAuthClientInformationFull(client_id=cfg["clientId"], **metadata.model_dump(exclude_none=True))
    person = Person(cfg)
    client_metadata_url = cfg.get("clientMetadataUrl") if mode == "cimd" else None
    storage = MemoryStorage(stored, client_metadata_url)
    provider = OAuthClientProvider(
        server_url=cfg["serverUrl"],
        client_metadata=metadata,
        storage=storage,
        redirect_handler=person.redirect,
        callback_handler=person.callback,
        client_metadata_url=client_metadata_url,
    )
    grants: list[str] = []

    async def on_request(request: httpx2.Request) -> None:
        if request.method == "POST" and request.url.path == "/token":
            body = parse_qs(request.content.decode())
            # grant_type, and whether the RFC 8707 resource (the MCP server's URL) came along.
            grants.append(body.get("grant_type", ["?"])[0] + (" +resource" if body.get("resource") else ""))

    async with httpx2.AsyncClient(auth=provider, event_hooks={"request": [on_request]}, timeout=30) as http:
        async with streamable_http_client(cfg["serverUrl"], http_client=http, terminate_on_close=False) as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write) as session:
                await session.initialize()
                log(f"signed in (grants so far: {grants})")
                storage_info = provider.context.client_info
                if storage_info is None:
                    raise Failure("no client information after sign-in")
                client_id = storage_info.client_id
                check_identity(cfg, client_id, storage.registered)
                tools = sorted(t.name for t in (await session.list_tools()).tools)
                if "whoami" not in tools or "add" not in tools:
                    raise Failure(f"tools/list gave {tools}")
                me1 = whoami(await session.call_tool("whoami", {}))
                check_whoami(me1, cfg, client_id)
                added = await session.call_tool("add", {"a": 2, "b": 3})
                if next((c.text for c in added.content if c.type == "text"), None) != "5":
                    raise Failure(f"add(2, 3) answered {added}")
                log(f"whoami: {me1}")

                # Refresh: this SDK refreshes before a request when the token is due (by the
                # expires_in it was issued with); make it due now.
                tokens = provider.context.current_tokens
                if tokens is None or not tokens.refresh_token:
                    raise Failure("mandate issued no refresh token")
                provider.context.token_expiry_time = time.time() - 1
                me2 = whoami(await session.call_tool("whoami", {}))
                check_whoami(me2, cfg, client_id)
                if me2["jti"] == me1["jti"]:
                    raise Failure("the call after refresh carried the same token")
                if person.sign_ins != 1:
                    raise Failure(f"signed in {person.sign_ins} times, not once")
                if not any(g.startswith("refresh_token") for g in grants):
                    raise Failure(f"no refresh_token grant; token requests: {grants}")
    result = {"client_id": client_id, "tools": tools, "sub": me1["sub"], "grants": grants, "registered": storage.registered, "signIns": person.sign_ins}
    print(f"RESULT {json.dumps(result)}", flush=True)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except BaseException as e:  # an ExceptionGroup from anyio's task groups included
        import traceback

        sys.stderr.write("FAILED: " + "".join(traceback.format_exception(e)))
        sys.exit(1)
