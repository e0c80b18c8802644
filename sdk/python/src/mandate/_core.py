"""The protocol, without I/O ("sans-IO").

Every call to the authorization server is written once, here, as a generator that yields what
it needs done — an :class:`HttpRequest` to send or a :class:`Sleep` — and receives the
:class:`HttpResponse` back. :mod:`mandate._transport` drives these generators with
``httpx.Client`` (the sync twins) or ``httpx.AsyncClient`` (the async classes), so the sync and
async APIs share every rule and differ only in how they wait.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeVar, Union
from urllib.parse import quote, urlencode, urlsplit

from .chain import Chain, chain_from_claims, unverified_claims
from .dpop import DPoPKey, NonceCache
from .errors import (
    ApprovalDenied,
    ApprovalExpired,
    ApprovalTimeout,
    MandateError,
    OAuthError,
    ProtocolError,
)

T = TypeVar("T")

# RFC 8693 §2.1 / §3, OpenID CIBA Core §10.1.
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
CIBA_GRANT = "urn:openid:params:grant-type:ciba"
TT_ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"
TT_JWT = "urn:ietf:params:oauth:token-type:jwt"

#: CIBA Core §11: ``slow_down`` adds 5 seconds to the polling interval.
SLOW_DOWN_STEP = 5.0
#: CIBA Core §7.3: the interval when the server names none.
DEFAULT_INTERVAL = 5.0


# --- what the generators yield and receive ------------------------------------------------


@dataclass
class HttpRequest:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None

    def __repr__(self) -> str:  # the body may hold tokens and the headers a secret
        return f"HttpRequest({self.method} {self.url})"


@dataclass
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Sleep:
    seconds: float


Step = Union[HttpRequest, Sleep]
Op = Generator[Step, Union[HttpResponse, None], T]


def form_request(url: str, fields: Iterable[tuple[str, str]], basic: tuple[str, str] | None) -> HttpRequest:
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        "accept": "application/json",
    }
    if basic is not None:
        headers["authorization"] = basic_auth(*basic)
    return HttpRequest("POST", url, headers, urlencode(list(fields)).encode("ascii"))


def json_request(url: str, body: Mapping[str, Any]) -> HttpRequest:
    return HttpRequest(
        "POST",
        url,
        {"content-type": "application/json", "accept": "application/json"},
        json.dumps(body).encode(),
    )


def basic_auth(client_id: str, client_secret: str) -> str:
    """RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic's base64."""
    raw = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def json_body(resp: HttpResponse, what: str) -> dict[str, Any]:
    try:
        v = resp.json()
    except ValueError:
        raise ProtocolError("invalid_response", f"{what} did not answer JSON", resp.status) from None
    if not isinstance(v, dict):
        raise ProtocolError("invalid_response", f"{what} did not answer a JSON object", resp.status)
    return v


def error_code(resp: HttpResponse) -> str | None:
    """The ``error`` member of a JSON error answer, if it has one."""
    try:
        v = resp.json()
    except ValueError:
        return None
    return v.get("error") if isinstance(v, dict) and isinstance(v.get("error"), str) else None


def error_from(resp: HttpResponse, what: str) -> MandateError:
    """An RFC 6749 §5.2 error answer as the matching exception."""
    try:
        v = resp.json()
    except ValueError:
        v = None
    if not isinstance(v, dict) or not isinstance(v.get("error"), str):
        return ProtocolError("invalid_response", f"{what} answered HTTP {resp.status} without an OAuth error", resp.status)
    code = v["error"]
    desc = v.get("error_description") if isinstance(v.get("error_description"), str) else None
    cls = {
        "access_denied": ApprovalDenied,
        "expired_token": ApprovalExpired,
        "authorization_pending": ApprovalPending,
        "slow_down": ApprovalPending,
    }.get(code, OAuthError)
    return cls(code, desc, resp.status)


class ApprovalPending(OAuthError):
    """CIBA Core §11: the human has not decided yet (``authorization_pending``), or the client
    polls too fast (``slow_down``). Raised by ``poll()``; ``wait_for_approval`` handles it."""


# --- results ------------------------------------------------------------------------------


def _listify(v: str | Iterable[str] | None) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        return [v]
    return [str(x) for x in v]


def _scope_str(scope: str | Iterable[str] | None) -> str | None:
    if scope is None:
        return None
    if isinstance(scope, str):
        return scope
    return " ".join(scope)


@dataclass(frozen=True, repr=False)
class DelegatedToken:
    """A token the server issued by delegation (RFC 8693 §2.2.1), with what it says about itself.

    ``repr()`` and ``str()`` never show the token itself.

    :ivar access_token: the token, for ``Authorization: Bearer``.
    :ivar expires_at: when it expires (UTC).
    :ivar scope: its scopes.
    :ivar audience: its ``aud`` values.
    :ivar session_id: its ``sid`` (the delegated session revocation acts on), if any.
    :ivar chain: the human and the agents acting for them, in delegation order.
    :ivar token_type: ``"DPoP"`` for a token bound to a key (RFC 9449 §5), else ``"Bearer"``.
    :ivar dpop_key: the :class:`~mandate.dpop.DPoPKey` a DPoP-bound token is bound to (the
        acting agent's), else ``None``.
    """

    access_token: str
    expires_at: datetime
    scope: tuple[str, ...]
    audience: tuple[str, ...]
    session_id: str | None
    chain: Chain
    token_type: str = "Bearer"
    issued_token_type: str | None = None
    dpop_key: DPoPKey | None = field(default=None, compare=False)

    @property
    def dpop_bound(self) -> bool:
        """Whether the token is bound to :attr:`dpop_key` (RFC 9449 §5 ``token_type`` DPoP):
        it then goes with ``Authorization: DPoP`` and a proof by that key, never as Bearer."""
        return self.dpop_key is not None

    def headers(self, method: str, url: str, *, nonce: str | None = None) -> dict[str, str]:
        """The headers of a request to a resource server with this token: ``Authorization:
        Bearer <token>``, or for a bound token ``Authorization: DPoP <token>`` and a fresh
        ``DPoP`` proof for this ``method`` and ``url`` with ``ath`` (RFC 9449 §7.1) and the
        resource server's ``nonce`` when it asked for one (§9)."""
        if self.dpop_key is None:
            return {"Authorization": f"Bearer {self.access_token}"}
        return {
            "Authorization": f"DPoP {self.access_token}",
            "DPoP": self.dpop_key.proof(method, url, access_token=self.access_token, nonce=nonce),
        }

    def expires_in(self, now: float | None = None) -> float:
        """Seconds left (negative once expired)."""
        return self.expires_at.timestamp() - (time.time() if now is None else now)

    @property
    def expired(self) -> bool:
        return self.expires_in() <= 0

    def __repr__(self) -> str:
        return (
            f"DelegatedToken(chain={str(self.chain)!r}, scope={' '.join(self.scope)!r}, "
            f"audience={list(self.audience)!r}, expires_at={self.expires_at.isoformat()!r})"
        )

    __str__ = __repr__


def delegated_token_from(v: Mapping[str, Any], status: int, dpop: DPoPKey | None = None) -> DelegatedToken:
    token = v.get("access_token")
    if not isinstance(token, str) or not token:
        raise ProtocolError("invalid_response", "the token endpoint answered without an access_token", status)
    try:
        claims = unverified_claims(token)
    except ValueError:
        claims = {}
    now = time.time()
    exp = claims.get("exp")
    if isinstance(exp, (int, float)):
        expires = float(exp)
    elif isinstance(v.get("expires_in"), (int, float)):
        expires = now + float(v["expires_in"])
    else:
        raise ProtocolError("invalid_response", "the token has no expiry (no exp, no expires_in)", status)
    scope = v.get("scope") if isinstance(v.get("scope"), str) else claims.get("scope")
    aud = claims.get("aud")
    sid = claims.get("sid")
    token_type = str(v.get("token_type") or "Bearer")
    cnf = claims.get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    bound = token_type.lower() == "dpop" or jkt is not None
    if bound:
        # RFC 9449 §5: a DPoP token is bound to the key of the proof sent with the request.
        if dpop is None:
            raise ProtocolError("invalid_response", "the server issued a DPoP-bound token to a request without a proof", status)
        if jkt is not None and jkt != dpop.jkt:
            raise ProtocolError("invalid_response", "the token is bound to another key than the proof's (cnf.jkt)", status)
    return DelegatedToken(
        access_token=token,
        expires_at=datetime.fromtimestamp(expires, tz=timezone.utc),
        scope=tuple(scope.split()) if isinstance(scope, str) else (),
        audience=tuple(_listify(aud if isinstance(aud, (str, list)) else None)),
        session_id=sid if isinstance(sid, str) else None,
        chain=chain_from_claims(claims),
        token_type=token_type,
        issued_token_type=v.get("issued_token_type") if isinstance(v.get("issued_token_type"), str) else None,
        dpop_key=dpop if bound else None,
    )


@dataclass(frozen=True)
class AgentToken:
    """What ``/attest`` answers. ``repr()`` hides the token."""

    token: str = field(repr=False)
    expires_in: float
    attestation: str | None = None


@dataclass(frozen=True)
class ApprovalRequest:
    """A pending CIBA request (CIBA Core §7.3): pass it to ``wait_for_approval``.

    ``auth_req_id`` is a bearer handle (whoever holds it and the client's secret may collect the
    token): it is left out of ``repr()``.
    """

    auth_req_id: str = field(repr=False)
    expires_at: datetime
    interval: float
    binding_message: str | None = None


def token_string(token: str | DelegatedToken) -> str:
    return token.access_token if isinstance(token, DelegatedToken) else token


# --- the client's calls -------------------------------------------------------------------


class ClientCore:
    """The state and the calls of one OAuth client of one mandate server."""

    def __init__(self, issuer: str, client_id: str, client_secret: str | None) -> None:
        parts = urlsplit(issuer)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ValueError("issuer must be an http(s) URL without query or fragment")
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self._secret = client_secret
        self.metadata: dict[str, Any] | None = None
        #: The latest ``DPoP-Nonce`` the server sent (RFC 9449 §8).
        self.nonces = NonceCache()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(issuer={self.issuer!r}, client_id={self.client_id!r})"

    @property
    def _basic(self) -> tuple[str, str] | None:
        return (self.client_id, self._secret) if self._secret is not None else None

    def discover(self) -> Op[dict[str, Any]]:
        """RFC 8414 §3: the server's metadata, fetched once."""
        if self.metadata is not None:
            return self.metadata
        url = f"{self.issuer}/.well-known/oauth-authorization-server"
        resp = yield HttpRequest("GET", url, {"accept": "application/json"})
        assert resp is not None
        if resp.status != 200:
            raise ProtocolError("invalid_response", f"metadata at {url} answered HTTP {resp.status}", resp.status)
        md = json_body(resp, "the metadata document")
        # RFC 8414 §3.3: the issuer in the document must be the one asked for.
        if md.get("issuer") != self.issuer:
            raise ProtocolError("invalid_response", f"the metadata names issuer {md.get('issuer')!r}, not {self.issuer!r}")
        self.metadata = md
        return md

    def send(self, req: HttpRequest, dpop: DPoPKey | None = None, retry: bool = True) -> Op[HttpResponse]:
        """Send ``req``; with ``dpop``, with a fresh proof (RFC 9449 §4) carrying the latest
        nonce the server sent, and (``retry``) once more with the new one when it answers
        ``use_dpop_nonce`` (§8). Every ``DPoP-Nonce`` answered is remembered."""
        retried = not retry
        while True:
            if dpop is not None:
                req.headers["dpop"] = dpop.proof(req.method, req.url, nonce=self.nonces.get(req.url))
            resp = yield req
            assert resp is not None
            fresh = self.nonces.update(req.url, resp.headers)
            if dpop is None or retried or fresh is None or resp.status not in (400, 401):
                return resp
            if error_code(resp) != "use_dpop_nonce":
                return resp
            retried = True

    def endpoint(self, name: str) -> Op[str]:
        md = yield from self.discover()
        url = md.get(name)
        if not isinstance(url, str):
            raise ProtocolError("invalid_response", f"the server's metadata has no {name}")
        return url

    def challenge(self, agent: str) -> Op[str]:
        """``POST /attest/challenge``: a single-use nonce bound to ``agent``."""
        resp = yield json_request(f"{self.issuer}/attest/challenge", {"agent": agent})
        assert resp is not None
        if resp.status != 200:
            raise error_from(resp, "/attest/challenge")
        nonce = json_body(resp, "/attest/challenge").get("nonce")
        if not isinstance(nonce, str):
            raise ProtocolError("invalid_response", "/attest/challenge answered without a nonce", resp.status)
        return nonce

    def attest(self, agent: str, nonce: str, evidence: Mapping[str, Any], dpop: DPoPKey | None = None) -> Op[AgentToken]:
        """``POST /attest`` with the evidence (a software ``proof``): an agent token, bound to
        ``dpop`` (its ``cnf.jkt``) when given.

        Not retried on ``use_dpop_nonce``: mandate has spent the challenge ``nonce`` by then,
        so the retry needs a new challenge (the new DPoP nonce is remembered; the session's
        attestation does both)."""
        req = json_request(f"{self.issuer}/attest", {"agent": agent, "nonce": nonce, **evidence})
        resp = yield from self.send(req, dpop, retry=False)
        if resp.status != 200:
            raise error_from(resp, "/attest")
        v = json_body(resp, "/attest")
        token, expires_in = v.get("agent_token"), v.get("expires_in")
        if not isinstance(token, str) or not isinstance(expires_in, (int, float)):
            raise ProtocolError("invalid_response", "/attest answered without agent_token and expires_in", resp.status)
        att = v.get("attestation") if isinstance(v.get("attestation"), str) else None
        if att is None:
            try:
                att = unverified_claims(token).get("att")
            except ValueError:
                att = None
        return AgentToken(token, float(expires_in), att if isinstance(att, str) else None)

    @staticmethod
    def exchange_fields(
        subject_token: str,
        actor_token: str,
        scope: str | Iterable[str] | None,
        audience: str | Iterable[str] | None,
        resource: str | Iterable[str] | None,
    ) -> list[tuple[str, str]]:
        fields = [
            ("subject_token", subject_token),
            ("subject_token_type", TT_ACCESS_TOKEN),
            ("actor_token", actor_token),
            ("actor_token_type", TT_JWT),
        ]
        s = _scope_str(scope)
        if s is not None:
            fields.append(("scope", s))
        fields += [("audience", a) for a in _listify(audience)]
        fields += [("resource", r) for r in _listify(resource)]
        return fields

    def _token_call(self, fields: list[tuple[str, str]], what: str, dpop: DPoPKey | None = None) -> Op[DelegatedToken]:
        url = yield from self.endpoint("token_endpoint")
        resp = yield from self.send(form_request(url, fields, self._basic), dpop)
        if resp.status != 200:
            raise error_from(resp, what)
        return delegated_token_from(json_body(resp, what), resp.status, dpop)

    def exchange(
        self,
        subject_token: str,
        actor_token: str,
        scope: str | Iterable[str] | None = None,
        audience: str | Iterable[str] | None = None,
        resource: str | Iterable[str] | None = None,
        dpop: DPoPKey | None = None,
    ) -> Op[DelegatedToken]:
        """RFC 8693 §2.1 token exchange: ``subject_token`` handed to ``actor_token``'s agent.
        With ``dpop`` (the actor's key: a bound agent token needs it) the token is bound to it."""
        fields = [("grant_type", TOKEN_EXCHANGE)] + self.exchange_fields(subject_token, actor_token, scope, audience, resource)
        return (yield from self._token_call(fields, "the token exchange", dpop))

    def backchannel_authorize(
        self,
        subject_token: str,
        actor_token: str,
        scope: str | Iterable[str] | None = None,
        audience: str | Iterable[str] | None = None,
        resource: str | Iterable[str] | None = None,
        binding_message: str | None = None,
        requested_expiry: int | None = None,
        dpop: DPoPKey | None = None,
    ) -> Op[ApprovalRequest]:
        """CIBA Core §7.1 (poll mode): ask the human to approve this exchange."""
        url = yield from self.endpoint("backchannel_authentication_endpoint")
        fields = self.exchange_fields(subject_token, actor_token, scope, audience, resource)
        if binding_message is not None:
            fields.append(("binding_message", binding_message))
        if requested_expiry is not None:
            fields.append(("requested_expiry", str(int(requested_expiry))))
        resp = yield from self.send(form_request(url, fields, self._basic), dpop)
        if resp.status != 200:
            raise error_from(resp, "the backchannel authentication request")
        v = json_body(resp, "the backchannel authentication request")
        rid, exp = v.get("auth_req_id"), v.get("expires_in")
        if not isinstance(rid, str) or not isinstance(exp, (int, float)):
            raise ProtocolError("invalid_response", "the backchannel answer has no auth_req_id or expires_in", resp.status)
        interval = v.get("interval")
        return ApprovalRequest(
            auth_req_id=rid,
            expires_at=datetime.fromtimestamp(time.time() + float(exp), tz=timezone.utc),
            interval=float(interval) if isinstance(interval, (int, float)) and interval > 0 else DEFAULT_INTERVAL,
            binding_message=binding_message,
        )

    def poll(self, request: ApprovalRequest | str, dpop: DPoPKey | None = None) -> Op[DelegatedToken]:
        """CIBA Core §10.1: one poll. Raises :class:`ApprovalPending` while the human has not
        decided, :class:`ApprovalDenied` / :class:`ApprovalExpired` when it is over. A request
        made with a bound agent token is polled with proofs by its key (``dpop``)."""
        rid = request.auth_req_id if isinstance(request, ApprovalRequest) else request
        return (yield from self._token_call([("grant_type", CIBA_GRANT), ("auth_req_id", rid)], "the CIBA poll", dpop))

    def wait_for_approval(
        self, request: ApprovalRequest, timeout: float | None, clock: Any = time.monotonic, dpop: DPoPKey | None = None
    ) -> Op[DelegatedToken]:
        """Poll every ``interval`` (plus 5 s after each ``slow_down``, CIBA Core §11) until
        the token, a refusal, the request's expiry or ``timeout`` seconds."""
        start = clock()
        interval = request.interval
        # The server says expired_token itself; this only stops a server that never does.
        give_up = start + max(request.expires_at.timestamp() - time.time(), 0) + 30
        while True:
            now = clock()
            wait = interval
            if timeout is not None and now + wait > start + timeout:
                remaining = start + timeout - now
                if remaining > 0:
                    yield Sleep(remaining)
                raise ApprovalTimeout("timeout", f"no decision within {timeout:g} s")
            yield Sleep(wait)
            try:
                return (yield from self.poll(request, dpop))
            except ApprovalPending as p:
                if p.error == "slow_down":
                    interval += SLOW_DOWN_STEP
            if clock() > give_up:
                raise ApprovalExpired("expired_token", "the request expired (the server still said pending)")

    def revoke(self, token: str, token_type_hint: str | None = "access_token") -> Op[None]:
        """RFC 7009 §2.1: revoke ``token`` (mandate: and every token derived from it)."""
        url = yield from self.endpoint("revocation_endpoint")
        fields = [("token", token)]
        if token_type_hint:
            fields.append(("token_type_hint", token_type_hint))
        resp = yield form_request(url, fields, self._basic)
        assert resp is not None
        if resp.status != 200:
            raise error_from(resp, "the revocation")
        return None

    def introspect(self, token: str) -> Op[dict[str, Any]]:
        """RFC 7662 §2: what the server knows of ``token`` (``{"active": false}`` if nothing)."""
        url = yield from self.endpoint("introspection_endpoint")
        resp = yield form_request(url, [("token", token)], self._basic)
        assert resp is not None
        if resp.status != 200:
            raise error_from(resp, "the introspection")
        v = json_body(resp, "the introspection")
        if not isinstance(v.get("active"), bool):
            raise ProtocolError("invalid_response", "the introspection answer has no boolean active", resp.status)
        return v


# --- the agent's own token ----------------------------------------------------------------


class AgentTokenState:
    """The agent token, renewed by attesting again when less than a fifth of its lifetime (and
    at least 30 s) is left, so a token handed out is never about to expire."""

    MIN_MARGIN = 30.0

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._token: AgentToken | None = None
        self._expires = 0.0

    def fresh(self) -> str | None:
        if self._token is None:
            return None
        margin = max(self._token.expires_in / 5, self.MIN_MARGIN)
        if self._expires - self._clock() > margin:
            return self._token.token
        return None

    def set(self, token: AgentToken) -> str:
        self._token = token
        self._expires = self._clock() + token.expires_in
        return token.token

    @property
    def attestation(self) -> str | None:
        return self._token.attestation if self._token else None


def agent_token_from(token: str) -> AgentToken:
    """An agent token obtained elsewhere (a command that attested), read for its expiry."""
    try:
        claims = unverified_claims(token)
    except ValueError:
        raise ProtocolError("invalid_response", "the agent token is not a JWT") from None
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)):
        raise ProtocolError("invalid_response", "the agent token has no exp")
    att = claims.get("att")
    return AgentToken(token, float(exp) - time.time(), att if isinstance(att, str) else None)


def attest_op(core: ClientCore, agent: str, attester: Any, dpop: DPoPKey | None = None) -> Op[AgentToken]:
    for attempt in range(2):
        nonce = yield from core.challenge(agent)
        evidence = attester.evidence(agent, core.issuer, nonce)
        try:
            return (yield from core.attest(agent, nonce, evidence, dpop))
        except OAuthError as e:
            # RFC 9449 §8 use_dpop_nonce: mandate spent the challenge; a new one, and the DPoP
            # nonce it sent (now remembered), once.
            if attempt or dpop is None or e.error != "use_dpop_nonce":
                raise
    raise AssertionError("unreachable")
