"""The delegation chain of a token: the human it acts for and the agents in between.

RFC 8693 §4.1: the ``act`` claim names the current actor, and an ``act`` nested inside it the
actor before it; the newest actor is outermost. :class:`Chain` lists them the other way round,
in delegation order (the first agent the human delegated to first).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from joserfc.errors import JoseError
from joserfc.jws import extract_compact

__all__ = ["Actor", "Chain", "read_chain", "unverified_claims", "chain_from_claims"]

AGENT_PREFIX = "agent:"


@dataclass(frozen=True)
class Actor:
    """One hop of the chain.

    :ivar subject: the actor's ``sub`` as the token carries it (``"agent:planner"``).
    """

    subject: str

    @property
    def name(self) -> str:
        """The agent's name: the subject without its ``agent:`` prefix."""
        if self.subject.startswith(AGENT_PREFIX):
            return self.subject[len(AGENT_PREFIX) :]
        return self.subject

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Chain:
    """Who a token is for and who acts with it, in delegation order.

    ``str(chain)`` is ``"alice → planner → payments-bot"``.

    :ivar attestation: how the current actor proved what it is at mandate (the token's ``att``
        claim: ``"software"`` or ``"tpm"``), or ``None`` for a token without an actor or one
        that does not say.
    """

    human: str | None
    actors: tuple[Actor, ...] = field(default_factory=tuple)
    attestation: str | None = None

    @property
    def agent(self) -> Actor | None:
        """The current actor (the last agent delegated to), or ``None`` for a human's own token."""
        return self.actors[-1] if self.actors else None

    @property
    def depth(self) -> int:
        """How many agents stand between the human and the token."""
        return len(self.actors)

    def __str__(self) -> str:
        return " → ".join([self.human or "?"] + [a.name for a in self.actors])


def chain_from_claims(claims: Mapping[str, Any]) -> Chain:
    """The chain of a token's (already decoded) claims or of an RFC 7662 introspection answer."""
    actors: list[Actor] = []
    act = claims.get("act")
    # Bounded: a token is at most a few kilobytes, but never loop on a hostile structure.
    while isinstance(act, Mapping) and len(actors) < 64:
        sub = act.get("sub")
        if not isinstance(sub, str):
            break
        actors.append(Actor(sub))
        act = act.get("act")
    actors.reverse()
    sub = claims.get("sub")
    # mandate's `att` speaks of the current actor, so only of a token that has one.
    att = claims.get("att")
    attestation = att if actors and isinstance(att, str) else None
    return Chain(sub if isinstance(sub, str) else None, tuple(actors), attestation)


def unverified_claims(token: str) -> dict[str, Any]:
    """The claims of a compact JWS **without verifying its signature**.

    For an agent reading its own tokens (which it received from the server over TLS). A
    resource server must verify instead: see :class:`mandate.resource.ResourceServer`.

    :raises ValueError: when ``token`` is not a JWT with a JSON object as payload.
    """
    try:
        obj = extract_compact(token.encode("ascii"))
        claims = json.loads(obj.payload)
    except (JoseError, ValueError, UnicodeError, TypeError) as e:
        raise ValueError("not a JWT (a compact JWS with a JSON payload)") from e
    if not isinstance(claims, dict):
        raise ValueError("not a JWT (its payload is not a JSON object)")
    return claims


def read_chain(token: str) -> Chain:
    """The delegation chain of ``token``, decoded **without verifying** it.

    Meant for an agent looking at its own tokens ("whom am I acting for, through whom?");
    never use it to make an authorization decision on a token someone handed you.

    >>> str(read_chain(delegated.access_token))
    'alice → planner → payments-bot'
    """
    return chain_from_claims(unverified_claims(token))
