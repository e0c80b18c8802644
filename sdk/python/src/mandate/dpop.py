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
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

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


class DPoPKey:
    """A P-256 key held in memory that signs DPoP proofs (ES256).

    Each agent has its own (a sub-agent's tokens are bound to the sub-agent's key, never its
    parent's). ``repr()`` shows only the RFC 7638 thumbprint.
    """

    def __init__(self, key: ECKey) -> None:
        if not isinstance(key, ECKey) or key.curve_name != "P-256" or not key.is_private:
            raise ValueError("a DPoPKey needs a P-256 private key")
        self._key = key
        d = key.as_dict(private=False)
        self._jwk = {"kty": "EC", "crv": "P-256", "x": str(d["x"]), "y": str(d["y"])}
        self._jkt = key.thumbprint()

    @classmethod
    def generate(cls) -> DPoPKey:
        """A new random P-256 key."""
        return cls(ECKey.generate_key("P-256", private=True))

    @classmethod
    def from_pem(cls, pem: str | bytes) -> DPoPKey:
        """A key from PEM text (PKCS#8 ``PRIVATE KEY`` or SEC1 ``EC PRIVATE KEY``)."""
        try:
            key = ECKey.import_key(pem)
        except (JoseError, ValueError, TypeError) as e:
            raise ValueError("the key is not a P-256 private key in PEM (PKCS#8 or SEC1)") from e
        return cls(key)

    def to_pem(self) -> bytes:
        """The private key as PKCS#8 PEM (keep that file private)."""
        return self._key.as_pem(private=True)

    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK (kty, crv, x, y): what each proof's header carries."""
        return dict(self._jwk)

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
