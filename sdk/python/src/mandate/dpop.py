"""RFC 9449 DPoP: a key the agent keeps, whose public half mandate binds tokens to (``cnf.jkt``),
and the proof JWT (``DPoP`` header) that goes with each request.

.. code-block:: python

    session = AgentSession(client, "planner", planner_key, dpop=True)   # or dpop=DPoPKey.generate()
    token = await session.act_for(alice_token, scope="orders:read")
    token.token_type            # "DPoP": bound to session.dpop_key
    headers = token.headers("GET", "https://orders.example/orders")
    # {"Authorization": "DPoP <token>", "DPoP": <proof with htm, htu, ath>}

Proofs are signed by ``joserfc`` (ES256 over a P-256 key), never by hand.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from joserfc import jwt
from joserfc.jwk import ECKey

from .keys import P256Key

__all__ = ["DPoPKey", "access_token_hash", "htu_of"]

#: RFC 9449 §4.2: the ``typ`` of a proof.
PROOF_TYPE = "dpop+jwt"


def access_token_hash(token: str) -> str:
    """RFC 9449 §4.2 ``ath``: base64url (no padding) of the SHA-256 of the token's ASCII."""
    digest = hashlib.sha256(token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def htu_of(url: str) -> str:
    """RFC 9449 §4.2 ``htu``: the request's URL without query and fragment, its scheme and host
    in lower case, the scheme's default port left out, an empty path as ``/``."""
    p = urlsplit(url)
    scheme = p.scheme.lower()
    host = (p.hostname or "").lower()
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    try:
        port = p.port
    except ValueError:
        port = None
    netloc = host if port is None or (scheme, port) in (("http", 80), ("https", 443)) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, p.path or "/", "", ""))


def origin_of(url: str) -> str:
    """The scheme, host and port of ``url``: what nonces are cached by."""
    p = urlsplit(htu_of(url))
    return f"{p.scheme}://{p.netloc}"


class DPoPKey(P256Key):
    """A P-256 key held in memory that signs DPoP proofs (ES256).

    Each agent has its own (a sub-agent's tokens are bound to the sub-agent's key, never its
    parent's). ``repr()`` shows only the RFC 7638 thumbprint.
    """

    def __init__(self, key: ECKey) -> None:
        super().__init__(key)
        self._jwk = self.public_jwk()
        self._jkt = self.thumbprint()

    @property
    def jkt(self) -> str:
        """The RFC 7638 SHA-256 thumbprint of the public key: a bound token's ``cnf.jkt``."""
        return self._jkt

    def proof(self, htm: str, htu: str, *, access_token: str | None = None, nonce: str | None = None) -> str:
        """A proof for one ``htm`` request to ``htu`` (RFC 9449 §4.2): a fresh ``jti``, ``iat``
        now, ``ath`` when it goes with ``access_token`` (§7), the server's ``nonce`` when it
        sent one (§8). ``htu`` loses its query and fragment."""
        claims: dict[str, Any] = {
            "jti": secrets.token_urlsafe(16),
            "htm": htm.upper(),
            "htu": htu_of(htu),
            "iat": int(time.time()),
        }
        if access_token is not None:
            claims["ath"] = access_token_hash(access_token)
        if nonce is not None:
            claims["nonce"] = nonce
        header = {"typ": PROOF_TYPE, "alg": "ES256", "jwk": dict(self._jwk)}
        return jwt.encode(header, claims, self._key, algorithms=["ES256"])

    def __repr__(self) -> str:
        return f"DPoPKey(jkt={self._jkt!r})"


class NonceCache:
    """The latest ``DPoP-Nonce`` each server (origin) sent (RFC 9449 §8, §9)."""

    MAX = 1000

    def __init__(self) -> None:
        self._nonces: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, url: str) -> str | None:
        with self._lock:
            return self._nonces.get(origin_of(url))

    def update(self, url: str, headers: Any) -> str | None:
        """Remember the ``DPoP-Nonce`` of a response from ``url``, if it has one; return it."""
        nonce = headers.get("dpop-nonce")
        if not isinstance(nonce, str) or not nonce:
            return None
        with self._lock:
            if len(self._nonces) >= self.MAX:
                self._nonces.clear()
            self._nonces[origin_of(url)] = nonce
        return nonce
