"""A real mandate server for the suite (never a mock): the binary from $MANDATE_BIN (default
/work/bin/mandate), a config written to a temp dir, SQLite, `listen = "127.0.0.1:0"`, its
address read from the `listening on http://...` line it prints.

The world: alice (a human, signed in through the public client `cli` like a person at the
login and consent pages), the confidential client `agent-runtime` (token exchange and CIBA),
three agents with software keys (planner, payments-bot, helper), resource servers
`orders-api`, `other-api` and `short-api` (tokens for it live 2 s, by a Cedar `@max_ttl`),
`payments:write` high risk (needs the human's approval), delegation depth at most 2, and an
MCP server's URL as a `[[resources]]` entry (its socket is bound before mandate starts).
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import html
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urljoin, urlparse

import httpx
import pytest
from mcp.server.mcpserver import Context, MCPServer

from mandate import SoftwareKey, SyncAgentSession, SyncMandateClient
from mandate.resource import ResourceServer
from mandate.starlette import MandateMiddleware, get_principal

MANDATE_BIN = os.environ.get("MANDATE_BIN", "/work/bin/mandate")

ALICE = ("alice", "alice-password")
BOB = ("bob", "bob-password")
CLI_REDIRECT = "http://127.0.0.1:9/callback"
RUNTIME = ("agent-runtime", "agent-runtime-secret")
ORDERS_RS = ("orders-api", "orders-api-secret")
SHORT_RS = ("short-api", "short-api-secret")
MCP_RS = ("mcp-server", "mcp-server-secret")
AGENTS = ("planner", "payments-bot", "helper")
TE = "urn:ietf:params:oauth:grant-type:token-exchange"
CIBA = "urn:openid:params:grant-type:ciba"

POLICY = """
@id("delegate-within-the-token-rules")
permit (principal, action == Mandate::Action::"delegate", resource);

@id("short-api-tokens-live-2s")
@max_ttl("2s")
permit (principal, action == Mandate::Action::"delegate", resource)
when { context.audiences.contains("short-api") };
"""


def toml_jwk(jwk: dict[str, str]) -> str:
    return "{ " + ", ".join(f'{k} = "{v}"' for k, v in jwk.items()) + " }"


def config_text(d: Path, keys: dict[str, SoftwareKey], mcp_url: str, ciba_expiry: str = "5m", extra: str = "") -> str:
    agents = "".join(
        f'\n[[agents]]\nname = "{name}"\npublic_jwk = {toml_jwk(key.public_jwk())}\n' for name, key in keys.items()
    )
    return f"""# Written by sdk/python/tests/conftest.py for one run.
listen = "127.0.0.1:0"
database_url = "sqlite://{d}/mandate.db"
kek_file = "{d}/kek"

[tokens]
max_delegation_depth = 2

[keys]
# Reload keys every second, so a `mandate keys rotate` shows at once (the rotation test).
check_interval = "1s"

[policy]
files = ["policy.cedar"]
high_risk_scopes = ["payments:write"]

[ciba]
interval = "1s"
expiry = "{ciba_expiry}"

[[users]]
username = "alice"
password = "alice-password"
scopes = ["orders:read", "orders:write", "payments:write", "mcp:tools"]

[[users]]
username = "bob"
password = "bob-password"
scopes = ["orders:read"]

[[clients]]
client_id = "cli"
public = true
redirect_uris = ["{CLI_REDIRECT}"]
grant_types = ["authorization_code", "refresh_token"]
scopes = ["orders:read", "orders:write", "payments:write", "mcp:tools"]

[[clients]]
client_id = "{RUNTIME[0]}"
client_secret = "{RUNTIME[1]}"
grant_types = ["{TE}", "{CIBA}"]

[[clients]]
client_id = "{ORDERS_RS[0]}"
client_secret = "{ORDERS_RS[1]}"
introspect = true
audience = "orders-api"

[[clients]]
client_id = "other-api"
client_secret = "other-api-secret"
introspect = true
audience = "other-api"

[[clients]]
client_id = "{SHORT_RS[0]}"
client_secret = "{SHORT_RS[1]}"
introspect = true
audience = "short-api"

[[clients]]
client_id = "{MCP_RS[0]}"
client_secret = "{MCP_RS[1]}"
introspect = true
audience = "{mcp_url}"

[[resources]]
uri = "{mcp_url}"
name = "SDK test MCP server"
scopes = ["mcp:tools"]
tools = [{{ name = "whoami", scope = "mcp:tools", description = "Say who the token was issued to" }}]
{agents}
{extra}"""


@dataclass
class Mandate:
    url: str
    dir: Path
    keys: dict[str, SoftwareKey]
    mcp_url: str
    mcp_socket: socket.socket
    process: subprocess.Popen[bytes]


def start_mandate(
    d: Path, config: str | None, config_file: Path | None = None, overrides: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """mandate serving `config` (written to `d`), or the file `config_file` as it is, with
    `overrides` (MANDATE_* variables) on top; its URL once it listens."""
    (d / "kek").write_text(base64.b64encode(bytes([7] * 32)).decode())
    (d / "policy.cedar").write_text(POLICY)
    if config_file is None:
        assert config is not None
        config_file = d / "mandate.toml"
        config_file.write_text(config)
    # mandate reads every MANDATE_* variable as a config override: pass none but its log
    # filter and the caller's.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANDATE_")}
    env["MANDATE_LOG"] = os.environ.get("MANDATE_TEST_LOG", "warn")
    env.update(overrides or {})
    if not Path(MANDATE_BIN).exists():
        pytest.exit(f"no mandate binary at {MANDATE_BIN} (set MANDATE_BIN)", returncode=2)
    log = open(d / "mandate.log", "wb")
    proc = subprocess.Popen(
        [MANDATE_BIN, "serve", "--config", str(config_file)],
        stdout=subprocess.PIPE,
        stderr=log,
        env=env,
    )
    found: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            m = re.match(r"listening on (\S+)", raw.decode(errors="replace"))
            if m and not found:
                found.append(m.group(1))

    threading.Thread(target=read, daemon=True).start()
    atexit.register(proc.kill)  # should the session end without its fixture's teardown
    deadline = time.monotonic() + 30
    while not found:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            sys.stderr.write((d / "mandate.log").read_text(errors="replace"))
            pytest.exit("mandate did not print `listening on` within 30 s (its log is above)", returncode=2)
        time.sleep(0.05)
    return proc, found[0].rstrip("/")


@pytest.fixture(scope="session")
def mandate() -> Iterator[Mandate]:
    yield from world()


@pytest.fixture(scope="session")
def mandate_quick_ciba() -> Iterator[Mandate]:
    """A second server whose CIBA requests expire after 2 s (requested_expiry is at least 30)."""
    yield from world(ciba_expiry="2s")


@pytest.fixture(scope="session")
def mandate_dpop_nonce() -> Iterator[Mandate]:
    """A third server that requires DPoP nonces (RFC 9449 §8): `[dpop] require_nonce = true`."""
    yield from world(extra="[dpop]\nrequire_nonce = true\n")


def world(ciba_expiry: str = "5m", extra: str = "") -> Iterator[Mandate]:
    keys = {name: SoftwareKey.generate() for name in AGENTS}
    # The MCP server's socket is bound now so its URL can be a configured resource.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    mcp_url = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
    with tempfile.TemporaryDirectory(prefix="mandate-sdk-py-") as tmp:
        d = Path(tmp)
        proc, url = start_mandate(d, config_text(d, keys, mcp_url, ciba_expiry, extra))
        try:
            yield Mandate(url, d, keys, mcp_url, sock, proc)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
            sock.close()


# --- a person at mandate's pages ------------------------------------------------------------


def _attr(tag: str, name: str) -> str | None:
    m = re.search(rf"\s{name}\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s>]+))", tag, re.I)
    if not m:
        return None
    return html.unescape(m.group(1) or m.group(2) or m.group(3) or "")


@dataclass
class Form:
    action: str
    method: str
    hidden: list[tuple[str, str]]
    inputs: list[str]
    checked: list[tuple[str, str]]
    numbers: list[tuple[str, str]]
    buttons: list[tuple[str, str, str]]  # name, value, text


def forms(page: str) -> list[Form]:
    out = []
    for m in re.finditer(r"<form\b([^>]*)>(.*?)</form>", page, re.I | re.S):
        head, body = m.group(1), m.group(2)
        f = Form(_attr(head, "action") or "", (_attr(head, "method") or "get").lower(), [], [], [], [], [])
        for i in re.finditer(r"<input\b[^>]*>", body, re.I):
            tag = i.group(0)
            name = _attr(tag, "name")
            if not name:
                continue
            f.inputs.append(name)
            kind = (_attr(tag, "type") or "text").lower()
            value = _attr(tag, "value") or ""
            if kind == "hidden":
                f.hidden.append((name, value))
            elif kind == "checkbox" and re.search(r"\schecked\b", tag, re.I):
                f.checked.append((name, value))
            elif kind == "number":
                f.numbers.append((name, value))
        for b in re.finditer(r"<button\b([^>]*)>(.*?)</button>", body, re.I | re.S):
            text = html.unescape(re.sub(r"<[^>]*>", "", b.group(2))).strip()
            f.buttons.append((_attr(b.group(1), "name") or "", _attr(b.group(1), "value") or "", text))
        out.append(f)
    return out


def as_form(fields: list[tuple[str, str]]) -> dict[str, list[str]]:
    """httpx's form data: a repeated name (ticked scopes) as a list."""
    out: dict[str, list[str]] = {}
    for k, v in fields:
        out.setdefault(k, []).append(v)
    return out


def press(f: Form, button: str) -> list[tuple[str, str]]:
    """What a browser submits when `button` is pressed: hidden inputs, ticked boxes, numbers."""
    fields = f.hidden + f.checked + f.numbers
    name, value, _ = next(b for b in f.buttons if b[2] == button)
    if name:
        fields.append((name, value))
    return fields


class Person:
    """A human with a browser (a cookie jar), signing in on mandate's own pages."""

    def __init__(self, base: str, username: str, password: str) -> None:
        self.base = base
        self.username = username
        self.password = password
        self.http = httpx.Client(follow_redirects=False, timeout=30, headers={"accept": "text/html"})

    def close(self) -> None:
        self.http.close()

    def _login_if_asked(self, url: str, page: httpx.Response) -> httpx.Response:
        login = next((f for f in forms(page.text) if f.method == "post" and "password" in f.inputs), None)
        if login is None:
            return page
        fields = login.hidden + [("username", self.username), ("password", self.password)]
        return self.http.post(urljoin(url, login.action or url), data=dict(fields))

    def token(self, scope: str, client_id: str = "cli", extra: dict[str, str] | None = None) -> str:
        """RFC 6749 §4.1 with PKCE (RFC 7636 S256): sign in, approve the consent page, redeem
        the code; the access token."""
        verifier = secrets.token_urlsafe(32)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        state = secrets.token_urlsafe(12)
        q = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": CLI_REDIRECT,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "scope": scope,
            **(extra or {}),
        }
        back = self.follow(f"{self.base}/authorize?{urlencode(q)}")
        params = parse_qs(urlparse(back).query)
        assert params.get("state") == [state], back
        assert "code" in params, f"no code in the redirect: {back}"
        return self._redeem(params["code"][0], verifier, client_id)

    def follow(self, url: str) -> str:
        """From an authorization URL: sign in, approve the consent page, and stop at the
        redirect that leaves mandate (the client's redirect URI, returned, not fetched)."""
        method, data = "GET", None
        signed_in = approved = False
        for _ in range(12):
            r = self.http.request(method, url, data=data)
            if 300 <= r.status_code < 400:
                nxt = urljoin(url, r.headers["location"])
                if not nxt.startswith(self.base):
                    return nxt
                url, method, data = nxt, "GET", None
                continue
            all_forms = forms(r.text)
            login = next((f for f in all_forms if f.method == "post" and "password" in f.inputs), None)
            if login and not signed_in:
                signed_in = True
                data = dict(login.hidden + [("username", self.username), ("password", self.password)])
                url, method = urljoin(url, login.action or url), "POST"
                continue
            consent = next((f for f in all_forms if any(b[2] == "Approve" for b in f.buttons)), None)
            if consent and not approved:
                approved = True
                data = as_form(press(consent, "Approve"))
                url, method = urljoin(url, consent.action or url), "POST"
                continue
            raise AssertionError(f"unexpected page at {url}: HTTP {r.status_code} {r.text[:300]}")
        raise AssertionError("no redirect back to the client after 12 steps")

    def _redeem(self, code: str, verifier: str, client_id: str) -> str:
        r = httpx.post(
            f"{self.base}/token",
            data={
                "grant_type": "authorization_code",
                "client_id": client_id,
                "code": code,
                "redirect_uri": CLI_REDIRECT,
                "code_verifier": verifier,
            },
        )
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    def decide(self, binding_message: str, button: str) -> None:
        """On /approvals, press `button` ("Approve" or "Deny") on the request showing
        `binding_message`, as the signed-in human (the form's CSRF token included)."""
        url = f"{self.base}/approvals"
        page = self._login_if_asked(url, self.http.get(url))
        if page.status_code == 303:
            page = self.http.get(url)
        assert page.status_code == 200, page.text[:300]
        sections = re.split(r'<section class="request"', page.text)[1:]
        mine = [s for s in sections if html.escape(binding_message) in s]
        assert len(mine) == 1, f"{len(mine)} pending requests show {binding_message!r}"
        form = forms(mine[0])[0]
        r = self.http.post(urljoin(url, form.action), data=as_form(press(form, button)))
        assert r.status_code == 303, f"{button} answered HTTP {r.status_code}: {r.text[:300]}"


@pytest.fixture(scope="session")
def alice_person(mandate: Mandate) -> Iterator[Person]:
    p = Person(mandate.url, *ALICE)
    yield p
    p.close()


@pytest.fixture
def alice(alice_person: Person) -> str:
    """A fresh access token of alice's, for every scope she holds."""
    return alice_person.token("orders:read orders:write payments:write")


@pytest.fixture(scope="session")
def tokens(mandate: Mandate) -> dict[str, str]:
    """Delegated tokens mandate issued: alice → planner → payments-bot, and some others."""
    alice = Person(mandate.url, *ALICE).token("orders:read orders:write payments:write")
    with SyncMandateClient(mandate.url, *RUNTIME) as c:
        planner = SyncAgentSession(c, "planner", mandate.keys["planner"])
        payer = SyncAgentSession(c, "payments-bot", mandate.keys["payments-bot"])
        mine = planner.act_for(alice, scope="orders:read orders:write", audience="orders-api")
        return {
            "alice": alice,
            "chain": planner.delegate(mine, payer.token(), scope="orders:read").access_token,
            "other_audience": planner.act_for(alice, scope="orders:read", audience="other-api").access_token,
            "agent_token": planner.token(),
        }


class Served:
    """An ASGI app served by uvicorn in a thread, on `sock` (bound already) or a new socket."""

    def __init__(self, app: Callable[..., object], sock: socket.socket | None = None) -> None:
        import uvicorn

        if sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="session")
def mcp_server(mandate: Mandate) -> Iterator[str]:
    """The MCP SDK's own server (MCPServer, streamable HTTP) behind MandateMiddleware, at the
    URL mandate knows as a [[resources]] URI; its tool `whoami` says the principal's chain."""
    server = MCPServer("mandate-sdk-test")

    @server.tool()
    async def whoami(ctx: Context) -> str:
        """Who the token speaks for, and through whom."""
        return str(get_principal(ctx.request_context.request))

    rs = ResourceServer(mandate.url, mandate.mcp_url, scopes_supported=["mcp:tools"], resource_name="SDK test MCP server")
    app = MandateMiddleware(server.streamable_http_app(), rs, scopes=["mcp:tools"])
    served = Served(app, mandate.mcp_socket)
    assert served.url + "/mcp" == mandate.mcp_url
    yield mandate.mcp_url
    served.stop()
