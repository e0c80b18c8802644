"""Software attestation: the agent proves it holds the P-256 key registered for it
(``[[agents]] public_jwk``) by signing a short ES256 JWT over the server's nonce
(docs/attestation.md: ``iss`` = ``sub`` = the agent's name, ``aud`` = the issuer, ``nonce``,
``iat``, ``exp`` ≤ 5 minutes after ``iat``, ``jti``).

Signing is done by ``joserfc`` (RFC 7515/7518 ES256), never by hand.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from .errors import MandateError

__all__ = ["AgentTokenSource", "Attester", "CommandAttester", "P256Key", "SoftwareKey"]

#: How long a proof is valid; the server allows at most 300 s.
PROOF_LIFETIME = 60


@runtime_checkable
class Attester(Protocol):
    """How an agent proves what it is at ``/attest``: the evidence members of the request body
    for the server's ``nonce`` (``{"proof": ...}`` for a software key)."""

    def evidence(self, agent: str, issuer: str, nonce: str) -> dict[str, Any]: ...


_K = TypeVar("_K", bound="P256Key")


class P256Key:
    """A P-256 private key held in memory: what :class:`SoftwareKey` (attestation) and
    :class:`mandate.DPoPKey` (DPoP proofs) sign with. ``repr()`` shows only the key's RFC 7638
    thumbprint, never the private key."""

    def __init__(self, key: ECKey) -> None:
        if not isinstance(key, ECKey) or key.curve_name != "P-256" or not key.is_private:
            raise ValueError(f"a {type(self).__name__} needs a P-256 private key")
        self._key = key

    @classmethod
    def generate(cls: type[_K]) -> _K:
        """A new random P-256 key."""
        return cls(ECKey.generate_key("P-256", private=True))

    @classmethod
    def from_pem(cls: type[_K], pem: str | bytes) -> _K:
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
        """The public key as a JWK: kty, crv, x, y."""
        d = self._key.as_dict(private=False)
        return {"kty": "EC", "crv": "P-256", "x": str(d["x"]), "y": str(d["y"])}

    def thumbprint(self) -> str:
        """RFC 7638 thumbprint of the public key."""
        return self._key.thumbprint()



class SoftwareKey(P256Key):
    """A P-256 private key registered for an agent (the software attestation path): its
    :meth:`public_jwk` is what ``[[agents]] public_jwk`` registers."""

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


@runtime_checkable
class AgentTokenSource(Protocol):
    """Something that attests by itself and hands over the agent token (blocking; the async
    session runs it in a worker thread)."""

    def agent_token(self) -> str: ...


class CommandAttester:
    """Attestation by a command that prints the agent token: the TPM path, through the Rust
    agent's command line (``mandate-agent attest ... --tpm TCTI``, built with its ``tpm``
    feature), which prints ``{"agent_token": "..."}``. A bare token on stdout works too.

    .. code-block:: python

        tpm = CommandAttester(
            ["mandate-agent", "attest", "--server", issuer, "--name", "planner",
             "--tpm", "device:/dev/tpmrm0", "--client-id", "agent-runtime"],
            env={"MANDATE_AGENT_CLIENT_SECRET": secret},   # not in argv: ps shows argv
        )
        session = AgentSession(client, "planner", tpm)

    The command is run again whenever the session needs a fresh agent token.
    """

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 60.0) -> None:
        if not argv:
            raise ValueError("argv names the command to run")
        self.argv = list(argv)
        self._env = dict(env or {})
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"CommandAttester({self.argv[0]!r})"

    def agent_token(self) -> str:
        try:
            done = subprocess.run(
                self.argv,
                env={**os.environ, **self._env},
                capture_output=True,
                timeout=self.timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise MandateError("attestation_failed", f"{self.argv[0]} could not be run: {type(e).__name__}") from None
        if done.returncode != 0:
            lines = done.stderr.decode(errors="replace").strip().splitlines()
            why = lines[-1][:200] if lines else "no message"
            raise MandateError("attestation_failed", f"{self.argv[0]} exited with {done.returncode}: {why}")
        out = done.stdout.decode(errors="replace").strip()
        if out.startswith("{"):
            try:
                token = json.loads(out).get("agent_token")
            except ValueError:
                token = None
        else:
            token = out
        if not isinstance(token, str) or token.count(".") != 2:
            raise MandateError("attestation_failed", f"{self.argv[0]} printed no agent token")
        return token
