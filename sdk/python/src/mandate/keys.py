"""Software attestation: the agent proves it holds the P-256 key registered for it
(``[[agents]] public_jwk``) by signing a short ES256 JWT over the server's nonce
(docs/attestation.md: ``iss`` = ``sub`` = the agent's name, ``aud`` = the issuer, ``nonce``,
``iat``, ``exp`` ≤ 5 minutes after ``iat``, ``jti``).

Signing is done by ``joserfc`` (RFC 7515/7518 ES256), never by hand.
"""

from __future__ import annotations

import secrets
import time
from typing import Any, Protocol, runtime_checkable

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

__all__ = ["Attester", "SoftwareKey"]

#: How long a proof is valid; the server allows at most 300 s.
PROOF_LIFETIME = 60


@runtime_checkable
class Attester(Protocol):
    """How an agent proves what it is at ``/attest``: the evidence members of the request body
    for the server's ``nonce`` (``{"proof": ...}`` for a software key)."""

    def evidence(self, agent: str, issuer: str, nonce: str) -> dict[str, Any]: ...


class SoftwareKey:
    """A P-256 private key registered for an agent (the software attestation path).

    ``repr()`` shows only the key's RFC 7638 thumbprint, never the private key.
    """

    def __init__(self, key: ECKey) -> None:
        if not isinstance(key, ECKey) or key.curve_name != "P-256" or not key.is_private:
            raise ValueError("a SoftwareKey needs a P-256 private key")
        self._key = key

    @classmethod
    def generate(cls) -> SoftwareKey:
        """A new random P-256 key."""
        return cls(ECKey.generate_key("P-256", private=True))

    @classmethod
    def from_pem(cls, pem: str | bytes) -> SoftwareKey:
        """A key from PEM text (PKCS#8 ``PRIVATE KEY`` or SEC1 ``EC PRIVATE KEY``)."""
        try:
            key = ECKey.import_key(pem)
        except (JoseError, ValueError, TypeError) as e:
            raise ValueError("the key is not a P-256 private key in PEM (PKCS#8 or SEC1)") from e
        return cls(key)

    def to_pem(self) -> bytes:
        """The private key as PKCS#8 PEM, to store it (keep that file private)."""
        return self._key.as_pem(private=True)

    def public_jwk(self) -> dict[str, str]:
        """The public JWK to register as ``[[agents]] public_jwk``: kty, crv, x, y."""
        d = self._key.as_dict(private=False)
        return {"kty": "EC", "crv": "P-256", "x": str(d["x"]), "y": str(d["y"])}

    def thumbprint(self) -> str:
        """RFC 7638 thumbprint of the public key."""
        return self._key.thumbprint()

    def proof(self, agent: str, issuer: str, nonce: str) -> str:
        """The ``proof`` JWT answering ``nonce`` for ``issuer``: ES256, ``typ`` JWT."""
        now = int(time.time())
        claims = {
            "iss": agent,
            "sub": agent,
            "aud": issuer,
            "nonce": nonce,
            "iat": now,
            "exp": now + PROOF_LIFETIME,
            "jti": secrets.token_urlsafe(16),
        }
        return jwt.encode({"alg": "ES256", "typ": "JWT"}, claims, self._key, algorithms=["ES256"])

    def evidence(self, agent: str, issuer: str, nonce: str) -> dict[str, Any]:
        """:class:`Attester`: ``{"proof": <JWT>}``."""
        return {"proof": self.proof(agent, issuer, nonce)}

    def __repr__(self) -> str:
        return f"SoftwareKey(thumbprint={self.thumbprint()!r})"
