"""The resource-server side: check the bearer tokens mandate issued and say who acts for whom.

:class:`ResourceServer` verifies a token in one of two ways, chosen by ``mode``:

- ``"jwt"`` (default): the token is an RFC 9068 JWT access token, verified locally against the
  server's JWKS (``jwks_uri`` from its RFC 8414 metadata; cached for the ``max-age`` it is
  served with, fetched again at most once every 30 s when a token names an unknown ``kid``,
  which is how a key rotation arrives). Only ``alg`` ES256 and ``typ`` ``at+jwt`` are taken;
  ``iss`` must be the issuer exactly, ``aud`` must contain this server's audience, and ``exp``,
  ``nbf`` and ``iat`` hold within ``leeway`` seconds (at most 30). A revoked token stays valid
  here until it expires, unless mandate pushes its security events to an
  :meth:`ResourceServer.ssf_receiver` (SSF 1.0, :mod:`mandate.ssf`): then it is refused as soon
  as the event arrives (and in introspection mode its cached answer is dropped).
- ``"introspection"``: RFC 7662, authenticated as a client with ``introspect = true``; a
  positive answer is cached for ``cache_ttl`` seconds (at most 30, never past the token's
  ``exp``), a negative one is not cached.

A refusal is a :class:`BearerError` carrying the RFC 6750 §3 status and
``WWW-Authenticate`` challenge (with the RFC 9728 §5.1 ``resource_metadata`` URL), and
:meth:`ResourceServer.metadata` is the RFC 9728 protected-resource metadata document.

DPoP (RFC 9449): a token that carries ``cnf.jkt`` (in its claims or its introspection answer)
is bound to a key. :meth:`ResourceServer.authenticate` then takes it only as ``Authorization:
DPoP <token>`` with exactly one ``DPoP`` proof header signed by that key, for this request's
method and URL (the URL clients reach this server at: pass ``external_url`` behind a proxy),
fresh (``iat``), with the token's ``ath``, and never seen before (a bounded in-memory cache of
``jti``). Refusals are 401 with a ``WWW-Authenticate: DPoP`` challenge (§7.1) naming the
accepted ``algs``: ``invalid_token`` (bound token sent as Bearer, no proof, a proof by another
key, an unbound token sent as DPoP) or ``invalid_dpop_proof`` (a bad proof).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal
from urllib.parse import urlsplit

import anyio
import httpx
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidTokenError,
    JoseError,
    MissingClaimError,
)
from joserfc import jws
from joserfc.jwk import JWKRegistry, KeySet
from joserfc.jws import extract_compact

from ._core import ClientCore, HttpRequest, Op
from ._transport import DEFAULT_TIMEOUT, run_async, run_sync
from .chain import Actor, Chain, chain_from_claims
from .dpop import PROOF_TYPE, access_token_hash, htu_of
from .errors import MandateError
from .ssf import DEFAULT_MAX_ENTRIES, DEFAULT_RETENTION, MAX_BODY, RevocationList, SsfReceiver

__all__ = [
    "BearerError",
    "InsufficientScope",
    "InvalidDPoPProof",
    "InvalidRequest",
    "InvalidToken",
    "MissingToken",
    "Unavailable",
    "Principal",
    "ResourceServer",
    "RevocationList",
    "SsfReceiver",
    "WELL_KNOWN",
]

#: RFC 9728 §3: the well-known path of protected-resource metadata.
WELL_KNOWN = "/.well-known/oauth-protected-resource"
#: RFC 9068 §2.1 ``typ`` of JWT access tokens (compared without case, with or without
#: the ``application/`` prefix, RFC 7515 §4.1.9).
AT_JWT_TYPES = ("at+jwt", "application/at+jwt")
#: A token naming an unknown ``kid`` fetches the JWKS again at most this often.
JWKS_REFETCH_INTERVAL = 30.0
MAX_LEEWAY = 30.0
MAX_CACHE_TTL = 30.0
MAX_CACHED_TOKENS = 10_000
#: RFC 9449 §7.1 ``algs``: the proof algorithms accepted by default (asymmetric only).
DPOP_ALGS = ("ES256", "ES384", "PS256", "RS256", "EdDSA")
#: RFC 9449 §4.2: members of a private JWK, never allowed in a proof's ``jwk``.
_PRIVATE_JWK_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
#: How many proofs' ``jti`` are remembered at most (RFC 9449 §11.1).
MAX_SEEN_PROOFS = 100_000
# RFC 6749 §3.3 scope-token / RFC 6750 §2.1 b64token.
_B64TOKEN = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")


# --- refusals -------------------------------------------------------------------------------


class BearerError(Exception):
    """A refused request, as RFC 6750 §3 answers it: ``status``, the ``error`` code (``None``
    when the request carried no token at all, §3.1), a description, and for
    ``insufficient_scope`` the ``scope`` needed. Never holds the token."""

    status = 401
    error: str | None = None
    #: Whether the challenge is RFC 9449 §7.1's ``DPoP`` scheme rather than ``Bearer``.
    dpop = False

    def __init__(self, description: str | None = None, scope: Iterable[str] | None = None, *, dpop: bool | None = None) -> None:
        self.description = description
        self.scope = tuple(scope or ())
        if dpop is not None:
            self.dpop = dpop
        super().__init__(self.error, description)

    def __str__(self) -> str:
        return f"{self.error or 'unauthenticated'}: {self.description}" if self.description else (self.error or "unauthenticated")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description!r})"


class MissingToken(BearerError):
    """No bearer token: 401 with a challenge but no ``error`` (RFC 6750 §3.1)."""

    status = 401
    error = None


class InvalidRequest(BearerError):
    """A malformed ``Authorization`` header (RFC 6750 §3.1 ``invalid_request``): 400."""

    status = 400
    error = "invalid_request"


class InvalidToken(BearerError):
    """Expired, revoked, malformed, forged, or for another audience: 401 ``invalid_token``."""

    status = 401
    error = "invalid_token"


class InvalidDPoPProof(BearerError):
    """A DPoP proof that is malformed, mis-signed, for another request, stale or replayed
    (RFC 9449 §4.3, §7.1): 401 with ``WWW-Authenticate: DPoP error="invalid_dpop_proof"``."""

    status = 401
    error = "invalid_dpop_proof"
    dpop = True


class InsufficientScope(BearerError):
    """A valid token without the scopes the route needs: 403 ``insufficient_scope``."""

    status = 403
    error = "insufficient_scope"


class Unavailable(BearerError):
    """mandate could not be asked (unreachable, answering nonsense, or refusing this server's
    introspection credentials): 503 with ``Retry-After`` and no challenge. The token may be
    fine, so it is not called invalid: a client would otherwise throw it away and get another
    from the same unreachable server."""

    status = 503
    error = "temporarily_unavailable"
    retry_after = 5


# --- who is calling -------------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    """Who a verified token speaks for, and who acts with it.

    ``str(principal)`` is the chain: ``"alice → planner → payments-bot"``.

    :ivar subject: the human (``sub``).
    :ivar chain: the human and the agents, in delegation order (RFC 8693 §4.1 ``act``, read
        innermost first).
    :ivar scopes: the token's scopes.
    :ivar audience: its ``aud`` values.
    :ivar client_id: the OAuth client that obtained it.
    :ivar session_id: its delegated session (``sid``): what mandate revokes as a whole.
    :ivar expires_at: when it expires (UTC).
    :ivar token_id: its ``jti``.
    :ivar claims: the verified claims (or the introspection answer), as they came.
    """

    subject: str
    chain: Chain
    scopes: frozenset[str]
    audience: tuple[str, ...]
    client_id: str | None
    session_id: str | None
    expires_at: datetime | None
    token_id: str | None
    claims: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def actors(self) -> tuple[Actor, ...]:
        """The agents, first delegated-to first."""
        return self.chain.actors

    @property
    def agent(self) -> Actor | None:
        """The agent acting now (the last one delegated to), or ``None`` for the human's own token."""
        return self.chain.agent

    @property
    def attestation(self) -> str | None:
        """How the acting agent was attested (``"software"``, ``"tpm"``), when the token says."""
        return self.chain.attestation

    @property
    def dpop_jkt(self) -> str | None:
        """The RFC 7638 thumbprint of the key the token is bound to (RFC 9449 §6 ``cnf.jkt``),
        or ``None`` for a bearer token."""
        cnf = self.claims.get("cnf")
        jkt = cnf.get("jkt") if isinstance(cnf, Mapping) else None
        return jkt if isinstance(jkt, str) else None

    def has_scopes(self, *scopes: str) -> bool:
        return all(s in self.scopes for s in scopes)

    def __str__(self) -> str:
        return str(self.chain)

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> Principal:
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise InvalidToken("the token has no subject")
        scope = claims.get("scope")
        aud = claims.get("aud")
        auds = (aud,) if isinstance(aud, str) else tuple(a for a in aud if isinstance(a, str)) if isinstance(aud, list) else ()
        exp = claims.get("exp")

        def s(name: str) -> str | None:
            v = claims.get(name)
            return v if isinstance(v, str) else None

        return cls(
            subject=sub,
            chain=chain_from_claims(claims),
            scopes=frozenset(scope.split()) if isinstance(scope, str) else frozenset(),
            audience=auds,
            client_id=s("client_id"),
            session_id=s("sid"),
            expires_at=datetime.fromtimestamp(exp, tz=timezone.utc) if isinstance(exp, (int, float)) else None,
            token_id=s("jti"),
            claims=dict(claims),
        )


# --- the verifier ---------------------------------------------------------------------------


def _quoted(value: str) -> str:
    """An RFC 6750 §3 attribute value: only %x20-21 / %x23-5B / %x5D-7E (no quote, no backslash)."""
    return "".join(c for c in value if 0x20 <= ord(c) <= 0x7E and c not in '"\\')


def _max_age(cache_control: str | None) -> float | None:
    m = re.search(r"max-age=(\d+)", cache_control or "")
    return float(m.group(1)) if m else None


class ResourceServer:
    """Verifies mandate's tokens for one resource server.

    :param issuer: mandate's issuer URL.
    :param audience: this server's audience: ``[[clients]] audience`` or a ``[[resources]]``
        URI (a token's ``aud`` must contain it).
    :param mode: ``"jwt"`` or ``"introspection"`` (needs ``client_id``/``client_secret``).
    :param resource: the RFC 9728 ``resource`` identifier; default the audience.
    :param resource_metadata_url: where this server's RFC 9728 metadata is served, for the
        ``resource_metadata`` attribute of challenges; default derived from ``resource`` when it
        is an http(s) URL (``{origin}/.well-known/oauth-protected-resource{path}``).
    :param scopes_supported: advertised in the metadata.
    :param resource_name: advertised in the metadata.
    :param leeway: seconds of clock skew allowed on ``exp``/``nbf``/``iat`` (0–30).
    :param cache_ttl: introspection cache lifetime in seconds (0–30).
    :param realm: the ``realm`` of challenges (default: the audience).
    :param external_url: the base URL clients reach this server at (scheme, host, port and any
        path prefix a proxy strips), when it differs from what the app sees (behind a reverse
        proxy): DPoP proofs' ``htu`` is checked against it plus the request's path.
    :param dpop_algs: the DPoP proof algorithms accepted (RFC 9449 §7.1 ``algs``).
    :param dpop_max_age: how old a proof's ``iat`` may be, in seconds.
    :param dpop_max_ahead: how far in the future a proof's ``iat`` may be, in seconds.
    """

    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        mode: Literal["jwt", "introspection"] = "jwt",
        client_id: str | None = None,
        client_secret: str | None = None,
        resource: str | None = None,
        resource_metadata_url: str | None = None,
        scopes_supported: Iterable[str] | None = None,
        resource_name: str | None = None,
        leeway: float = MAX_LEEWAY,
        cache_ttl: float = MAX_CACHE_TTL,
        realm: str | None = None,
        http: httpx.AsyncClient | None = None,
        sync_http: httpx.Client | None = None,
        external_url: str | None = None,
        dpop_algs: Iterable[str] = DPOP_ALGS,
        dpop_max_age: float = 60.0,
        dpop_max_ahead: float = 10.0,
    ) -> None:
        if mode not in ("jwt", "introspection"):
            raise ValueError('mode is "jwt" or "introspection"')
        if mode == "introspection" and (not client_id or client_secret is None):
            raise ValueError("introspection needs client_id and client_secret (a client with introspect = true)")
        if not 0 <= leeway <= MAX_LEEWAY:
            raise ValueError(f"leeway is between 0 and {MAX_LEEWAY:g} seconds")
        if not 0 <= cache_ttl <= MAX_CACHE_TTL:
            raise ValueError(f"cache_ttl is between 0 and {MAX_CACHE_TTL:g} seconds")
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.mode = mode
        self.resource = resource or audience
        self.scopes_supported = list(scopes_supported) if scopes_supported is not None else None
        self.resource_name = resource_name
        self.leeway = leeway
        self.cache_ttl = cache_ttl
        self.realm = realm if realm is not None else audience
        self.metadata_path = WELL_KNOWN
        parts = urlsplit(self.resource)
        if parts.scheme in ("http", "https") and parts.netloc:
            # RFC 9728 §3.1: the well-known path goes between the host and the resource's path.
            if parts.path not in ("", "/"):
                self.metadata_path = WELL_KNOWN + parts.path
            if resource_metadata_url is None:
                resource_metadata_url = f"{parts.scheme}://{parts.netloc}{self.metadata_path}"
        self.resource_metadata_url = resource_metadata_url
        self._core = ClientCore(issuer, client_id or "", client_secret)
        self._http = http
        self._sync_http = sync_http
        self._own_http = http is None
        self._own_sync_http = sync_http is None
        self._http_lock = threading.Lock()
        self._jwks_lock = anyio.Lock()
        self._jwks_sync_lock = threading.Lock()
        self._jwks: KeySet | None = None
        self._jwks_expires = 0.0
        self._jwks_forced = -JWKS_REFETCH_INTERVAL
        self._cache: dict[str, tuple[Principal, float]] = {}
        if external_url is not None:
            ext = urlsplit(external_url)
            if ext.scheme not in ("http", "https") or not ext.netloc or ext.query or ext.fragment:
                raise ValueError("external_url is an http(s) URL without query or fragment")
            external_url = external_url.rstrip("/")
        self.external_url = external_url
        algs = tuple(dpop_algs)
        if not algs or any(a not in DPOP_ALGS for a in algs):
            raise ValueError(f"dpop_algs are some of {' '.join(DPOP_ALGS)}")
        if not (0 < dpop_max_age <= 300 and 0 <= dpop_max_ahead <= 60):
            raise ValueError("dpop_max_age is in (0, 300] seconds and dpop_max_ahead in [0, 60]")
        self.dpop_algs = algs
        self.dpop_max_age = dpop_max_age
        self.dpop_max_ahead = dpop_max_ahead
        self._seen_proofs: dict[str, float] = {}
        self._seen_lock = threading.Lock()
        self._revocations: tuple[RevocationList, ...] = ()

    def __repr__(self) -> str:
        return f"ResourceServer(issuer={self.issuer!r}, audience={self.audience!r}, mode={self.mode!r})"

    # -- the RFC 9728 document and RFC 6750 challenges --

    def metadata(self) -> dict[str, Any]:
        """RFC 9728 §2: this resource's metadata, pointing at mandate."""
        doc: dict[str, Any] = {
            "resource": self.resource,
            "authorization_servers": [self.issuer],
            "bearer_methods_supported": ["header"],
        }
        if self.scopes_supported is not None:
            doc["scopes_supported"] = self.scopes_supported
        if self.resource_name:
            doc["resource_name"] = self.resource_name
        return doc

    def response_headers(self, error: BearerError) -> dict[str, str]:
        """The headers of the answer to a refusal: the RFC 6750 §3 challenge, or for
        :class:`Unavailable` a ``Retry-After`` (RFC 9110 §10.2.3) instead."""
        if isinstance(error, Unavailable):
            return {"Retry-After": str(error.retry_after), "Cache-Control": "no-store"}
        return {"WWW-Authenticate": self.www_authenticate(error), "Cache-Control": "no-store"}

    def www_authenticate(self, error: BearerError) -> str:
        """The RFC 6750 §3 challenge for a refusal (RFC 9728 §5.1 ``resource_metadata`` too);
        for a DPoP refusal, RFC 9449 §7.1's ``DPoP`` challenge with the accepted ``algs``."""
        parts = [f'realm="{_quoted(self.realm)}"']
        if error.error:
            parts.append(f'error="{error.error}"')
            if error.description:
                parts.append(f'error_description="{_quoted(error.description)}"')
        if error.scope:
            parts.append(f'scope="{_quoted(" ".join(error.scope))}"')
        if self.resource_metadata_url:
            parts.append(f'resource_metadata="{_quoted(self.resource_metadata_url)}"')
        if error.dpop:
            parts.append(f'algs="{" ".join(self.dpop_algs)}"')
            return "DPoP " + ", ".join(parts)
        return "Bearer " + ", ".join(parts)

    @staticmethod
    def credentials(authorization: str | None) -> tuple[str, str]:
        """The scheme (``"bearer"`` or ``"dpop"``) and token of an ``Authorization`` header
        (RFC 6750 §2.1, RFC 9449 §7.1).

        :raises MissingToken: no header, or another scheme.
        :raises InvalidRequest: not ``<scheme> <b64token>``.
        """
        if authorization is None or not authorization.strip():
            raise MissingToken()
        scheme, _, rest = authorization.strip().partition(" ")
        scheme = scheme.lower()
        if scheme not in ("bearer", "dpop"):
            raise MissingToken()
        token = rest.strip(" ")
        if not token or not _B64TOKEN.match(token):
            which = "DPoP" if scheme == "dpop" else "Bearer"
            raise InvalidRequest(f"the Authorization header is not `{which} <token>`", dpop=scheme == "dpop")
        return scheme, token

    @staticmethod
    def bearer_token(authorization: str | None) -> str:
        """RFC 6750 §2.1: the token of an ``Authorization: Bearer`` header.

        :raises MissingToken: no header, or another scheme.
        :raises InvalidRequest: a Bearer header that is not ``Bearer <b64token>``.
        """
        if authorization is None or not authorization.strip():
            raise MissingToken()
        scheme, _, rest = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise MissingToken()
        token = rest.strip(" ")
        if not token or not _B64TOKEN.match(token):
            raise InvalidRequest("the Authorization header is not `Bearer <token>`")
        return token

    # -- verification --

    def _async_http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=DEFAULT_TIMEOUT, follow_redirects=False)
        return self._http

    def _blocking_http(self) -> httpx.Client:
        with self._http_lock:
            if self._sync_http is None:
                self._sync_http = httpx.Client(timeout=DEFAULT_TIMEOUT, follow_redirects=False)
            return self._sync_http

    async def verify(self, token: str) -> Principal:
        """Verify ``token``; the :class:`Principal`, or :class:`InvalidToken` (also for a token
        that a security event from an :meth:`ssf_receiver` revoked)."""
        http = self._async_http()
        if self._jwks_due():
            # One fetch for all the requests that find the key set missing or stale.
            async with self._jwks_lock:
                if self._jwks_due():
                    try:
                        await run_async(self._fetch_jwks(), http)
                    except (MandateError, InvalidToken):
                        self._keep_old_jwks()
        return await self._run_async(self._verify(token))

    def verify_sync(self, token: str) -> Principal:
        """The blocking twin of :meth:`verify` (for WSGI frameworks)."""
        http = self._blocking_http()
        if self._jwks_due():
            with self._jwks_sync_lock:
                if self._jwks_due():
                    try:
                        run_sync(self._fetch_jwks(), http)
                    except (MandateError, InvalidToken):
                        self._keep_old_jwks()
        try:
            return run_sync(self._verify(token), http)
        except MandateError as e:
            raise Unavailable("the authorization server could not be asked") from e

    def _jwks_due(self) -> bool:
        return self.mode == "jwt" and (self._jwks is None or time.monotonic() >= self._jwks_expires)

    def _keep_old_jwks(self) -> None:
        """The key set could not be refreshed: keep the one we have a little longer (a token
        signed by a key in it still verifies), or fail if there is none."""
        if self._jwks is None:
            raise Unavailable("the authorization server's keys could not be fetched")
        self._jwks_expires = time.monotonic() + JWKS_REFETCH_INTERVAL

    async def _run_async(self, op: Op[Principal]) -> Principal:
        assert self._http is not None
        try:
            return await run_async(op, self._http)
        except MandateError as e:
            # mandate unreachable or answering nonsense: the token cannot be accepted.
            raise Unavailable("the authorization server could not be asked") from e

    async def authenticate(
        self,
        authorization: str | None,
        scopes: Iterable[str] = (),
        *,
        method: str | None = None,
        url: str | None = None,
        dpop: str | Iterable[str] | None = None,
    ) -> Principal:
        """The whole check of a request's ``Authorization`` header, with the scopes the route
        needs; raises a :class:`BearerError` (``MissingToken``, ``InvalidRequest``,
        ``InvalidToken``, ``InvalidDPoPProof``, ``InsufficientScope``).

        For DPoP-bound tokens (RFC 9449 §7) give the request's ``method``, its ``url`` as the
        app sees it (mapped onto ``external_url`` when set) and its ``DPoP`` header values
        (``dpop``: every one, so that two are refused); without them a bound token is refused.
        """
        scheme, token = self.credentials(authorization)
        try:
            principal = await self.verify(token)
        except BearerError as e:
            if scheme == "dpop" and not isinstance(e, Unavailable):
                e.dpop = True
            raise
        self.check_dpop(principal, token, scheme, method=method, url=url, dpop=dpop)
        self.check_scopes(principal, scopes)
        return principal

    def authenticate_sync(
        self,
        authorization: str | None,
        scopes: Iterable[str] = (),
        *,
        method: str | None = None,
        url: str | None = None,
        dpop: str | Iterable[str] | None = None,
    ) -> Principal:
        """The blocking twin of :meth:`authenticate`."""
        scheme, token = self.credentials(authorization)
        try:
            principal = self.verify_sync(token)
        except BearerError as e:
            if scheme == "dpop" and not isinstance(e, Unavailable):
                e.dpop = True
            raise
        self.check_dpop(principal, token, scheme, method=method, url=url, dpop=dpop)
        self.check_scopes(principal, scopes)
        return principal

    # -- DPoP (RFC 9449 §7) --

    def request_url(self, url: str) -> str:
        """The URL a request was sent to, as a client names it: ``url`` (as the app sees it)
        with its scheme, host and port replaced by ``external_url``'s (and that URL's path in
        front of its own), when ``external_url`` is set."""
        if self.external_url is None:
            return url
        return self.external_url + (urlsplit(url).path or "/")

    def check_dpop(
        self,
        principal: Principal,
        token: str,
        scheme: str,
        *,
        method: str | None,
        url: str | None,
        dpop: str | Iterable[str] | None,
    ) -> None:
        """RFC 9449 §7.1: a bound token (``cnf.jkt``) only with the DPoP scheme and a valid
        proof by its key for this request; an unbound token only as Bearer."""
        jkt = principal.dpop_jkt
        if scheme != "dpop":
            if jkt is not None:
                raise InvalidToken("the token is DPoP-bound: send it as `Authorization: DPoP` with a proof", dpop=True)
            return
        if jkt is None:
            raise InvalidToken("the token is not DPoP-bound: send it as `Authorization: Bearer`", dpop=True)
        proofs = [dpop] if isinstance(dpop, str) else list(dpop or ())
        if not proofs:
            raise InvalidToken("a DPoP-bound token needs a DPoP proof", dpop=True)
        if len(proofs) != 1 or "," in proofs[0]:
            raise InvalidDPoPProof("the request must carry exactly one DPoP header")
        if method is None or url is None:
            raise InvalidToken("this resource server was not given the request's method and URL to check DPoP proofs", dpop=True)
        self._check_proof(proofs[0].strip(), token, jkt, method, self.request_url(url))

    def _check_proof(self, proof: str, token: str, jkt: str, method: str, url: str) -> None:
        # RFC 9449 §4.3, in order.
        try:
            obj = extract_compact(proof.encode("ascii"))
            header = obj.headers()
            claims = json.loads(obj.payload)
        except (JoseError, ValueError, UnicodeError, TypeError):
            raise InvalidDPoPProof("the DPoP proof is not a JWT") from None
        if not isinstance(claims, dict):
            raise InvalidDPoPProof("the DPoP proof's payload is not a JSON object")
        if header.get("typ") != PROOF_TYPE:
            raise InvalidDPoPProof("the DPoP proof's typ is not dpop+jwt")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.dpop_algs:
            raise InvalidDPoPProof("the DPoP proof's alg is not accepted here")
        jwk = header.get("jwk")
        if not isinstance(jwk, dict):
            raise InvalidDPoPProof("the DPoP proof has no jwk")
        if any(m in jwk for m in _PRIVATE_JWK_MEMBERS):
            raise InvalidDPoPProof("the DPoP proof's jwk is not a public key")
        try:
            key = JWKRegistry.import_key(jwk)
            jws.deserialize_compact(proof, key, algorithms=[alg])
        except BadSignatureError:
            raise InvalidDPoPProof("the DPoP proof's signature does not verify") from None
        except (JoseError, ValueError, TypeError, KeyError):
            raise InvalidDPoPProof("the DPoP proof's key or signature could not be read") from None
        # RFC 9449 §7.1 / §6.1: the proof is by the key the token is bound to.
        if not hmac.compare_digest(key.thumbprint(), jkt):
            raise InvalidToken("the DPoP proof is not signed by the key the token is bound to", dpop=True)
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            raise InvalidDPoPProof("the DPoP proof has no usable jti")
        if claims.get("htm") != method.upper():
            raise InvalidDPoPProof("the DPoP proof is for another HTTP method (htm)")
        htu = claims.get("htu")
        if not isinstance(htu, str) or htu_of(htu) != htu_of(url):
            raise InvalidDPoPProof("the DPoP proof is for another URL (htu)")
        iat = claims.get("iat")
        now = time.time()
        if not isinstance(iat, (int, float)) or isinstance(iat, bool):
            raise InvalidDPoPProof("the DPoP proof has no iat")
        if iat < now - self.dpop_max_age or iat > now + self.dpop_max_ahead:
            raise InvalidDPoPProof("the DPoP proof's iat is outside the accepted window")
        ath = claims.get("ath")
        if not isinstance(ath, str) or not hmac.compare_digest(ath, access_token_hash(token)):
            raise InvalidDPoPProof("the DPoP proof's ath is not the hash of this access token")
        # RFC 9449 §11.1: each proof once. Remembered until its iat leaves the window.
        self._remember_proof(f"{jkt} {jti}", float(iat) + self.dpop_max_age, now)

    def _remember_proof(self, key: str, until: float, now: float) -> None:
        with self._seen_lock:
            seen = self._seen_proofs
            if key in seen and seen[key] >= now:
                raise InvalidDPoPProof("the DPoP proof was used before")
            if len(seen) >= MAX_SEEN_PROOFS:
                self._seen_proofs = seen = {k: v for k, v in seen.items() if v >= now}
                # Still full: forget the oldest ones (the nearest to leaving the window anyway).
                while len(seen) >= MAX_SEEN_PROOFS:
                    seen.pop(next(iter(seen)))
            seen[key] = until

    @staticmethod
    def check_scopes(principal: Principal, scopes: Iterable[str]) -> None:
        """RFC 6750 §3.1 ``insufficient_scope`` unless the token carries every one of ``scopes``."""
        needed = list(scopes)
        if not principal.has_scopes(*needed):
            raise InsufficientScope(f"this needs the scope {' '.join(needed)}", scope=needed)

    def _verify(self, token: str) -> Op[Principal]:
        if self.mode == "introspection":
            principal = yield from self._introspect(token)
        else:
            principal = yield from self._verify_jwt(token)
        self._check_revoked(principal)
        return principal

    # Security events (SSF 1.0 / CAEP 1.0) -------------------------------------------------

    def ssf_receiver(
        self,
        *,
        authorization: str,
        audience: str | None = None,
        retention: float = DEFAULT_RETENTION,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_body: int = MAX_BODY,
    ) -> SsfReceiver:
        """A receiver of mandate's pushed security events (RFC 8935) for this resource server:
        a token a SET it accepts names is refused from then on (:class:`InvalidToken`), in
        both modes, and dropped from the introspection cache. See :mod:`mandate.ssf`.

        :param authorization: the ``Authorization`` header value mandate sends with each push
            (the content of the stream's ``authorization_header_file``).
        :param audience: the stream's ``audience``; default this server's audience.
        :param retention: seconds a revocation is remembered (default an hour; at least the
            longest lifetime of the tokens this server accepts).
        :param max_entries: the most revocations remembered; past it the oldest is evicted and
            every token issued before it is refused (fail closed).
        :param max_body: the largest push accepted, in bytes.
        """
        receiver = SsfReceiver(
            self,
            authorization=authorization,
            audience=audience,
            retention=retention,
            max_entries=max_entries,
            max_body=max_body,
        )
        self._revocations = (*self._revocations, receiver.revocations)
        return receiver

    def _check_revoked(self, principal: Principal) -> None:
        for revocations in self._revocations:
            why = revocations.revoked(principal.claims)
            if why is not None:
                raise InvalidToken(f"{why} (a security event from the authorization server)")

    def _forget_revoked(self) -> None:
        """Drop cached introspection answers that a security event revoked."""
        if not self._revocations or not self._cache:
            return
        self._cache = {
            k: v for k, v in list(self._cache.items()) if not any(r.revoked(v[0].claims) for r in self._revocations)
        }

    def _set_key(self, kid: Any) -> Op[Any]:
        """The published EC key ``kid`` names for a SET; ``None`` when the key set, just fetched
        again, has no such key; ``False`` when it is unknown and the key set was fetched again
        too recently to ask once more (RFC 8935 §2.3 would have the SET refused for good)."""
        if self._jwks is None or time.monotonic() >= self._jwks_expires:
            yield from self._fetch_jwks()
        found = self._find(kid)
        if found is None:
            if time.monotonic() - self._jwks_forced < JWKS_REFETCH_INTERVAL:
                return False
            self._jwks_forced = time.monotonic()
            yield from self._fetch_jwks()
            found = self._find(kid)
        return found

    # JWT mode ----------------------------------------------------------------------------

    def _fetch_jwks(self) -> Op[None]:
        url = yield from self._core.endpoint("jwks_uri")
        resp = yield HttpRequest("GET", url, {"accept": "application/json"})
        assert resp is not None
        if resp.status != 200:
            raise Unavailable("the authorization server's keys could not be fetched")
        try:
            keys = KeySet.import_key_set(resp.json())
        except (JoseError, ValueError, KeyError, TypeError):
            raise Unavailable("the authorization server's keys could not be read") from None
        age = _max_age(resp.headers.get("cache-control"))
        self._jwks = keys
        self._jwks_expires = time.monotonic() + min(max(age if age is not None else 300.0, 30.0), 3600.0)

    def _key_for(self, kid: str | None) -> Op[Any]:
        if self._jwks is None or time.monotonic() >= self._jwks_expires:
            yield from self._fetch_jwks()
        found = self._find(kid)
        if found is None and time.monotonic() - self._jwks_forced >= JWKS_REFETCH_INTERVAL:
            # A kid we do not know: perhaps the server rotated its keys. Ask again, rarely.
            self._jwks_forced = time.monotonic()
            yield from self._fetch_jwks()
            found = self._find(kid)
        if found is None:
            raise InvalidToken("the token is signed by a key the authorization server does not publish")
        return found

    def _find(self, kid: str | None) -> Any:
        if self._jwks is None or not isinstance(kid, str):
            return None
        for key in self._jwks.keys:
            if key.kid == kid and key.key_type == "EC":
                return key
        return None

    def _verify_jwt(self, token: str) -> Op[Principal]:
        try:
            header = extract_compact(token.encode("ascii")).headers()
        except (JoseError, ValueError, UnicodeError, TypeError):
            raise InvalidToken("the token is not a JWT") from None
        # RFC 8725 §3.1: only the algorithm this issuer uses; never "none".
        if header.get("alg") != "ES256":
            raise InvalidToken("the token's alg is not ES256")
        # RFC 9068 §4: only JWT access tokens, not agent tokens, ID tokens or other JWTs.
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in AT_JWT_TYPES:
            raise InvalidToken("the token is not a JWT access token (typ at+jwt)")
        key = yield from self._key_for(header.get("kid"))
        try:
            claims = jwt.decode(token, key, algorithms=["ES256"]).claims
        except BadSignatureError:
            raise InvalidToken("the token's signature does not verify") from None
        except (JoseError, ValueError, TypeError):
            raise InvalidToken("the token could not be read") from None
        self._check_claims(claims)
        return Principal.from_claims(claims)

    def _check_claims(self, claims: Mapping[str, Any]) -> None:
        registry = jwt.JWTClaimsRegistry(
            leeway=int(self.leeway),
            iss={"essential": True, "value": self.issuer},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
        )
        try:
            registry.validate(dict(claims))
        except ExpiredTokenError:
            raise InvalidToken("the token has expired") from None
        except MissingClaimError as e:
            raise InvalidToken(f"the token lacks its {e.claim} claim") from None
        except InvalidClaimError as e:
            raise InvalidToken(f"the token's {e.claim} is not acceptable") from None
        except (InvalidTokenError, JoseError) as e:
            raise InvalidToken(f"the token is not valid ({e.error})") from None
        self._check_audience(claims)

    def _check_audience(self, claims: Mapping[str, Any]) -> None:
        # RFC 9068 §4 / RFC 7519 §4.1.3: this server must be one of the token's audiences.
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if self.audience not in auds:
            raise InvalidToken("the token is for another audience")

    # Introspection mode ------------------------------------------------------------------

    def _introspect(self, token: str) -> Op[Principal]:
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None:
            if hit[1] > now:
                return hit[0]
            del self._cache[key]
        answer = yield from self._core.introspect(token)
        if answer.get("active") is not True:
            raise InvalidToken("the token is not active (expired, revoked or unknown)")
        if "iss" in answer and answer["iss"] != self.issuer:
            raise InvalidToken("the token is from another issuer")
        self._check_audience(answer)
        exp = answer.get("exp")
        left = float(exp) - time.time() if isinstance(exp, (int, float)) else 0.0
        if left <= -self.leeway:
            raise InvalidToken("the token has expired")
        principal = Principal.from_claims(answer)
        ttl = min(self.cache_ttl, left)
        if ttl > 0:
            if len(self._cache) >= MAX_CACHED_TOKENS:
                self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
                while len(self._cache) >= MAX_CACHED_TOKENS:
                    self._cache.pop(next(iter(self._cache)))
            self._cache[key] = (principal, now + ttl)
        return principal

    # -- lifecycle --

    async def aclose(self) -> None:
        """Close the HTTP clients this object made (not ones passed in)."""
        if self._http is not None and self._own_http:
            await self._http.aclose()
        if self._sync_http is not None and self._own_sync_http:
            self._sync_http.close()
