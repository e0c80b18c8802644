"""Receiving mandate's security events: an OpenID Shared Signals (SSF 1.0) push receiver.

mandate pushes a Security Event Token (RFC 8417) for every revocation to each receiver its
operator configured as ``[[ssf.streams]]`` (RFC 8935). A resource server that checks JWTs
locally then refuses a revoked token at once, without introspecting every request:

.. code-block:: python

    rs = ResourceServer("https://mandate.example", "orders-api")
    receiver = rs.ssf_receiver(authorization=open("orders.ssf.credential").read().strip())
    app.include_router(mandate.fastapi.ssf_router(receiver))      # POST /ssf/events

Each push is checked in this order (RFC 8935 §2): the ``Authorization`` header against the
configured value, in constant time (else 401); ``Content-Type: application/secevent+jwt``;
at most ``max_body`` bytes (else 413); the SET: ``typ`` ``secevent+jwt``, ``alg`` ES256 under a
``kid`` of the issuer's JWKS (the resource server's own key set, fetched again for an unknown
``kid``), ``iss`` the issuer, ``aud`` the configured audience, ``iat`` and ``jti`` present,
``events`` an object. A refused SET is 400 with RFC 8935 §2.3's ``{"err": ..., "description":
...}``; an accepted one 202. A ``jti`` already handled is answered 202 again and changes
nothing (mandate may send a SET twice).

The CAEP 1.0 §3.1 ``session-revoked`` event is applied by its ``sub_id`` (SSF 1.0 §3, RFC 9493):

- ``complex`` with a ``session`` (``opaque`` id): every token whose ``sid`` is that id, or whose
  ``jti`` is (a token without a session is named by its own ``jti``);
- ``iss_sub`` (or ``complex`` with only a ``user``): every token whose ``sub`` is that subject,
  or whose ``act`` chain names it (an agent, ``agent:<name>``, at any depth), issued (``iat``)
  at or before the event's ``event_timestamp``;
- ``complex`` with an ``application`` (``opaque`` client id): every token with that
  ``client_id`` issued at or before the event.

The SSF verification event is accepted and does nothing; other event types are accepted and
ignored. A subject this receiver cannot apply (another format, or an ``iss_sub`` of another
issuer) is refused with 400, so that mandate records it as undelivered instead of it being
silently dropped.

Bounds. A :class:`RevocationList` keeps each revocation for ``retention`` seconds (default
one hour: longer than any token mandate issues by default, whose access tokens live 10 minutes;
raise it if ``tokens.access_token_ttl`` is longer) and at most ``max_entries``. When it is full
it does not forget silently: the oldest entry is evicted and the list's *watermark* rises to
that entry's event time, so every token issued at or before it is refused (fail closed) until
``retention`` has passed, by when those tokens have expired.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from joserfc import jws
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jws import extract_compact

from ._transport import run_async, run_sync
from .errors import MandateError

if TYPE_CHECKING:
    from .resource import ResourceServer

__all__ = [
    "CONTENT_TYPE",
    "MAX_BODY",
    "SESSION_REVOKED",
    "VERIFICATION",
    "RevocationList",
    "SsfReceiver",
    "SsfResponse",
]

log = logging.getLogger("mandate.ssf")

#: CAEP 1.0 §3.1: the event mandate sends for every revocation.
SESSION_REVOKED = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
#: SSF 1.0 §8.1.4.2: the verification event (accepted, nothing to do).
VERIFICATION = "https://schemas.openid.net/secevent/ssf/event-type/verification"
#: RFC 8935 §2: the media type of a pushed SET.
CONTENT_TYPE = "application/secevent+jwt"
#: RFC 8417 §2.3 ``typ`` of a SET (compared without case, with or without ``application/``).
SET_TYPES = ("secevent+jwt", "application/secevent+jwt")
#: The largest push accepted, in bytes (mandate's SETs are well under 2 KiB).
MAX_BODY = 64 * 1024
#: How long a revocation is remembered by default, in seconds: an hour, longer than the tokens
#: mandate issues by default (access tokens 10 minutes, agent tokens 5).
DEFAULT_RETENTION = 3600.0
#: How many revocations (and, separately, SET ``jti``s) are remembered at most by default.
DEFAULT_MAX_ENTRIES = 10_000
#: Seconds after a revocation's ``event_timestamp`` that a token's ``iat`` is still covered by
#: it: mandate's replicas (and its CLI) stamp with their own clocks.
CLOCK_SKEW = 5.0


# --- the revocation list ----------------------------------------------------------------------


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def actor_subjects(claims: Mapping[str, Any]) -> list[str]:
    """Every ``act.sub`` of a token's RFC 8693 §4.1 ``act`` chain, outermost (newest) first."""
    out: list[str] = []
    act = claims.get("act")
    for _ in range(32):  # bounded: a chain is never this deep
        if not isinstance(act, Mapping):
            break
        sub = act.get("sub")
        if isinstance(sub, str):
            out.append(sub)
        act = act.get("act")
    return out


class RevocationList:
    """What the security events said is revoked, bounded in time and size.

    Entries are ``(kind, id)`` with the event's time: ``session`` (a ``sid``, or the ``jti`` of a
    token without one), ``subject`` (a ``sub`` or an actor in ``act``) and ``client`` (a
    ``client_id``); a ``subject`` or ``client`` entry covers only tokens issued at or before the
    event. Each is kept ``retention`` seconds after it arrived; when ``max_entries`` are held the
    oldest is evicted and :attr:`watermark` rises to its event time: every token issued at or
    before the watermark is then refused, until ``retention`` has passed since it rose.
    Thread-safe.

    :param retention: seconds a revocation is remembered (at least the longest lifetime of the
        tokens this server accepts).
    :param max_entries: the most revocations held.
    :param clock: a monotonic clock in seconds (tests pass their own).
    """

    def __init__(
        self,
        retention: float = DEFAULT_RETENTION,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not retention > 0 or not max_entries >= 1:
            raise ValueError("retention is positive and max_entries at least 1")
        self.retention = float(retention)
        self.max_entries = int(max_entries)
        self._clock = clock
        # (kind, id) -> (event time, forget at); insertion order is arrival order.
        self._entries: OrderedDict[tuple[str, str], tuple[float, float]] = OrderedDict()
        self._watermark: float | None = None
        self._watermark_until = 0.0
        #: How many entries were evicted because the list was full.
        self.evicted = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            self._expire(self._clock())
            return len(self._entries)

    def __repr__(self) -> str:
        return f"RevocationList({len(self)} entries, watermark={self.watermark})"

    @property
    def watermark(self) -> float | None:
        """Tokens issued (``iat``) at or before this time are refused, because a revocation that
        might have covered them was evicted; ``None`` when nothing was."""
        with self._lock:
            self._expire(self._clock())
            return self._watermark

    def _expire(self, now: float) -> None:
        while self._entries:
            key, (_, until) = next(iter(self._entries.items()))
            if until > now:
                break
            del self._entries[key]
        if self._watermark is not None and self._watermark_until <= now:
            self._watermark = None

    def add(self, kind: str, id: str, event_time: float) -> None:
        """Remember that ``kind`` ``id`` was revoked at ``event_time`` (the issuer's clock)."""
        if kind not in ("session", "subject", "client"):
            raise ValueError("kind is session, subject or client")
        with self._lock:
            now = self._clock()
            self._expire(now)
            key = (kind, id)
            old = self._entries.pop(key, None)
            if old is not None:
                event_time = max(event_time, old[0])
            while len(self._entries) >= self.max_entries:
                _, (t, _) = self._entries.popitem(last=False)
                # Fail closed: what the evicted entry covered stays refused.
                self._watermark = t if self._watermark is None else max(self._watermark, t)
                self._watermark_until = now + self.retention
                self.evicted += 1
            self._entries[key] = (event_time, now + self.retention)

    def revoked(self, claims: Mapping[str, Any]) -> str | None:
        """Why a token with these claims (JWT claims or an introspection answer) is revoked, or
        ``None``. A token without ``iat`` is refused by any entry that names it."""
        iat = _num(claims.get("iat"))

        def covers(t: float) -> bool:
            # Replicas (and the CLI) stamp with their own clocks: a token issued just before
            # the revocation by a replica whose clock runs ahead still counts.
            return iat is None or iat <= t + CLOCK_SKEW

        with self._lock:
            self._expire(self._clock())
            if self._watermark is not None and covers(self._watermark):
                return "the token was issued before revocations this server had to forget"
            for c in ("sid", "jti"):
                v = claims.get(c)
                if isinstance(v, str) and ("session", v) in self._entries:
                    return "the token's session was revoked"
            cid = claims.get("client_id")
            if isinstance(cid, str):
                hit = self._entries.get(("client", cid))
                if hit is not None and covers(hit[0]):
                    return "the token's client was revoked"
            sub = claims.get("sub")
            for s in ([sub] if isinstance(sub, str) else []) + actor_subjects(claims):
                hit = self._entries.get(("subject", s))
                if hit is not None and covers(hit[0]):
                    return "the token's subject or one of its agents was revoked"
        return None


# --- the receiver ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SsfResponse:
    """The answer to a push: ``status``, the JSON ``body`` (``None`` for an empty one) and
    ``headers``. Frameworks' route handlers send it as it is."""

    status: int
    body: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)


class _Refusal(Exception):
    def __init__(self, err: str, description: str, status: int = 400) -> None:
        super().__init__(err, description)
        self.err = err
        self.description = description
        self.status = status

    def response(self) -> SsfResponse:
        headers = {"Cache-Control": "no-store"}
        if self.status == 503:
            headers["Retry-After"] = "5"
        return SsfResponse(self.status, {"err": self.err, "description": self.description}, headers)


ACCEPTED = SsfResponse(202)


def _unavailable() -> type[Exception]:
    from .resource import Unavailable  # resource imports this module

    return Unavailable


class SsfReceiver:
    """An RFC 8935 push receiver of mandate's SETs, bound to a resource server: what it
    accepts makes ``resource_server`` refuse the tokens named (401 ``invalid_token``) and drop
    them from its introspection cache. Make it with :meth:`ResourceServer.ssf_receiver
    <mandate.resource.ResourceServer.ssf_receiver>`; mount it with
    :func:`mandate.starlette.ssf_route` or :func:`mandate.fastapi.ssf_router`, or call
    :meth:`receive` from another framework.

    :param authorization: the whole ``Authorization`` header value mandate sends (the content
        of the stream's ``authorization_header_file``, e.g. ``"Bearer 9f1c..."``). Required.
    :param audience: the stream's ``audience`` (a SET's ``aud`` must be it); default the
        resource server's audience.
    :param retention: seconds each revocation (and each SET's ``jti``) is remembered.
    :param max_entries: the most revocations (and ``jti``\\ s) remembered.
    :param max_body: the largest push accepted, in bytes.
    """

    def __init__(
        self,
        resource_server: ResourceServer,
        *,
        authorization: str,
        audience: str | None = None,
        retention: float = DEFAULT_RETENTION,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_body: int = MAX_BODY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(authorization, str) or not authorization.strip():
            raise ValueError("authorization: the Authorization header value mandate sends is required")
        if not 0 < max_body <= 1024 * 1024:
            raise ValueError("max_body is between 1 byte and 1 MiB")
        self.resource_server = resource_server
        self.audience = audience if audience is not None else resource_server.audience
        self._authorization = authorization.strip().encode()
        self.max_body = max_body
        self.revocations = RevocationList(retention, max_entries, clock=clock)
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._seen_lock = threading.Lock()

    def __repr__(self) -> str:
        # Never the credential.
        return f"SsfReceiver(audience={self.audience!r}, issuer={self.resource_server.issuer!r})"

    # -- the steps before the body --

    def check_request(self, authorization: str | None, content_type: str | None, content_length: str | None = None) -> SsfResponse | None:
        """The answer to a push refused before its body is read (the credential, the media
        type, a declared length over ``max_body``), or ``None`` to go on."""
        given = (authorization or "").strip().encode()
        # RFC 8935 §2 / RFC 7235: the transmitter's credential, compared in constant time (as
        # hashes, so that not even its length shows).
        if not hmac.compare_digest(hashlib.sha256(given).digest(), hashlib.sha256(self._authorization).digest()):
            # A fixed challenge: the configured value may be a bare secret with no scheme.
            return SsfResponse(
                401,
                {"err": "authentication_failed", "description": "the Authorization header is missing or wrong"},
                {"WWW-Authenticate": 'Bearer realm="ssf"', "Cache-Control": "no-store"},
            )
        media = (content_type or "").split(";", 1)[0].strip().lower()
        if media != CONTENT_TYPE:
            return _Refusal("invalid_request", f"the Content-Type must be {CONTENT_TYPE} (RFC 8935 §2)").response()
        if content_length is not None and (not content_length.strip().isdigit() or int(content_length) > self.max_body):
            return self.too_large()
        return None

    def too_large(self) -> SsfResponse:
        """400 for a body over ``max_body``: RFC 8935 §2.3's refusal, which mandate gives up at
        once (a 413 it would retry, holding back every later SET of the stream)."""
        return _Refusal("invalid_request", f"the SET is larger than {self.max_body} bytes").response()

    # -- a push --

    async def receive(self, authorization: str | None, content_type: str | None, body: bytes) -> SsfResponse:
        """Check and apply one pushed SET; the answer to send."""
        early = self.check_request(authorization, content_type)
        if early is not None:
            return early
        if len(body) > self.max_body:
            return self.too_large()
        rs = self.resource_server
        try:
            header, compact = self._parse(body)
            http = rs._async_http()
            try:
                key = await run_async(rs._set_key(header.get("kid")), http)
            except (MandateError, _unavailable()):
                raise _Refusal("temporarily_unavailable", "the issuer's keys could not be fetched", 503) from None
            return self._finish(key, compact)
        except _Refusal as e:
            log.warning("SSF: refused a SET (%s): %s", e.err, e.description)
            return e.response()

    def receive_sync(self, authorization: str | None, content_type: str | None, body: bytes) -> SsfResponse:
        """The blocking twin of :meth:`receive` (for WSGI frameworks)."""
        early = self.check_request(authorization, content_type)
        if early is not None:
            return early
        if len(body) > self.max_body:
            return self.too_large()
        rs = self.resource_server
        try:
            header, compact = self._parse(body)
            try:
                key = run_sync(rs._set_key(header.get("kid")), rs._blocking_http())
            except (MandateError, _unavailable()):
                raise _Refusal("temporarily_unavailable", "the issuer's keys could not be fetched", 503) from None
            return self._finish(key, compact)
        except _Refusal as e:
            log.warning("SSF: refused a SET (%s): %s", e.err, e.description)
            return e.response()

    @staticmethod
    def _parse(body: bytes) -> tuple[dict[str, Any], str]:
        try:
            compact = body.decode("ascii").strip()
            header = extract_compact(compact.encode("ascii")).headers()
        except (JoseError, ValueError, UnicodeError, TypeError):
            raise _Refusal("invalid_request", "the body is not a compact JWS (RFC 8417 §2.3)") from None
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in SET_TYPES:
            raise _Refusal("invalid_request", "the token is not a SET (typ secevent+jwt, RFC 8417 §2.3)")
        # RFC 8725 §3.1: only the issuer's algorithm; never "none".
        if header.get("alg") != "ES256":
            raise _Refusal("invalid_key", "the SET is not signed with ES256")
        return header, compact

    def _finish(self, key: Any, compact: str) -> SsfResponse:
        if key is None:
            raise _Refusal("invalid_key", "the SET is signed by a key the issuer does not publish")
        if key is False:
            # An unknown kid, and the key set was fetched again only moments ago: perhaps a
            # rotation this server has not seen yet. 503 makes mandate send it again later.
            raise _Refusal("temporarily_unavailable", "the SET's key is not known yet; try again", 503)
        try:
            payload = jws.deserialize_compact(compact, key, algorithms=["ES256"]).payload
            claims = json.loads(payload)
        except BadSignatureError:
            raise _Refusal("authentication_failed", "the SET's signature does not verify") from None
        except (JoseError, ValueError, TypeError):
            raise _Refusal("invalid_request", "the SET could not be read") from None
        if not isinstance(claims, dict):
            raise _Refusal("invalid_request", "the SET's payload is not a JSON object")
        rs = self.resource_server
        if claims.get("iss") != rs.issuer:
            raise _Refusal("invalid_issuer", "the SET is from another issuer")
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if self.audience not in auds:
            raise _Refusal("invalid_audience", "the SET is for another audience")
        iat = _num(claims.get("iat"))
        if iat is None:
            raise _Refusal("invalid_request", "the SET has no iat (RFC 8417 §2.2)")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            raise _Refusal("invalid_request", "the SET has no usable jti (RFC 8417 §2.2)")
        events = claims.get("events")
        if not isinstance(events, dict) or not events:
            raise _Refusal("invalid_request", "the SET has no events (RFC 8417 §2.2)")
        if self._seen_before(jti):
            return ACCEPTED  # mandate may send a SET twice: it is done already
        # Read every event before applying any: a SET is taken whole or not at all.
        todo: list[tuple[str, str, float]] = []
        for etype, event in events.items():
            if etype == SESSION_REVOKED:
                todo.append(self._session_revoked(claims, event, iat))
            # The verification event and types this receiver does not know: accepted, ignored.
        for kind, id, at in todo:
            self.revocations.add(kind, id, at)
            log.info("SSF: SET %s revokes %s %s", jti, kind, id)
        self._remember(jti)
        if todo:
            rs._forget_revoked()
        return ACCEPTED

    def _session_revoked(self, claims: Mapping[str, Any], event: Any, iat: float) -> tuple[str, str, float]:
        if not isinstance(event, dict):
            raise _Refusal("invalid_request", "the session-revoked event is not an object (CAEP 1.0 §3.1)")
        ts = event.get("event_timestamp")
        at = _num(ts) if ts is not None else iat
        if at is None:
            raise _Refusal("invalid_request", "the event_timestamp is not a number (CAEP 1.0 §2)")
        # SSF 1.0 §3: the subject is `sub_id`; earlier drafts put a `subject` in the event.
        sub_id = claims.get("sub_id", event.get("subject"))
        if not isinstance(sub_id, dict):
            raise _Refusal("invalid_request", "the SET has no sub_id (SSF 1.0 §3)")
        fmt = sub_id.get("format")
        if fmt == "complex":
            session, app, user = (sub_id.get(k) for k in ("session", "application", "user"))
            if session is not None:
                return ("session", self._opaque(session, "session"), at)
            if app is not None:
                # With a `user` too it means that user at that client: all of the client's
                # tokens are refused, more than asked, never fewer.
                return ("client", self._opaque(app, "application"), at)
            if user is not None:
                return ("subject", self._iss_sub(user), at)
            raise _Refusal("invalid_request", "the complex subject names no session, application or user")
        if fmt == "iss_sub":
            return ("subject", self._iss_sub(sub_id), at)
        raise _Refusal("invalid_request", "the subject's format is not one this receiver can apply (RFC 9493)")

    @staticmethod
    def _opaque(v: Any, what: str) -> str:
        if not isinstance(v, dict) or v.get("format") != "opaque" or not isinstance(v.get("id"), str) or not v["id"]:
            raise _Refusal("invalid_request", f"the {what} is not an opaque identifier (RFC 9493 §3.2.3)")
        return str(v["id"])

    def _iss_sub(self, v: Any) -> str:
        if not isinstance(v, dict) or v.get("format") != "iss_sub" or not isinstance(v.get("sub"), str) or not v["sub"]:
            raise _Refusal("invalid_request", "the subject is not an iss_sub identifier (RFC 9493 §3.2.5)")
        if v.get("iss") != self.resource_server.issuer:
            raise _Refusal("access_denied", "the subject belongs to another issuer")
        return str(v["sub"])

    # -- the SET jti's seen --

    def _seen_before(self, jti: str) -> bool:
        with self._seen_lock:
            now = self._clock()
            while self._seen:
                k, until = next(iter(self._seen.items()))
                if until > now:
                    break
                del self._seen[k]
            return jti in self._seen

    def _remember(self, jti: str) -> None:
        # Forgetting a jti early is harmless: applying a revocation again changes nothing.
        with self._seen_lock:
            while len(self._seen) >= self.revocations.max_entries:
                self._seen.popitem(last=False)
            self._seen[jti] = self._clock() + self.revocations.retention
