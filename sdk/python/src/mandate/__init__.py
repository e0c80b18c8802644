"""mandate: agents that act for humans, with proof of what they are and the human's say.

Agent side: :class:`SoftwareKey`, :class:`MandateClient`, :class:`AgentSession` (async) and
their sync twins :class:`SyncMandateClient`, :class:`SyncAgentSession`; :func:`read_chain`;
:class:`DPoPKey` for RFC 9449 sender-constrained tokens.
Resource-server side: :mod:`mandate.resource`, :mod:`mandate.fastapi`.
"""

from ._core import AgentToken, ApprovalPending, ApprovalRequest, DelegatedToken
from .auth import MandateAuth
from .chain import Actor, Chain, read_chain
from .client import MandateClient, SyncMandateClient
from .dpop import DPoPKey
from .errors import (
    ApprovalCancelled,
    ApprovalDenied,
    ApprovalExpired,
    ApprovalTimeout,
    MandateError,
    OAuthError,
    ProtocolError,
)
from .keys import AgentTokenSource, Attester, CommandAttester, SoftwareKey
from .session import AgentSession, SyncAgentSession

__all__ = [
    "Actor",
    "AgentSession",
    "AgentTokenSource",
    "AgentToken",
    "ApprovalCancelled",
    "ApprovalDenied",
    "ApprovalExpired",
    "ApprovalPending",
    "ApprovalRequest",
    "ApprovalTimeout",
    "Attester",
    "Chain",
    "CommandAttester",
    "DPoPKey",
    "MandateAuth",
    "DelegatedToken",
    "MandateClient",
    "MandateError",
    "OAuthError",
    "ProtocolError",
    "SoftwareKey",
    "SyncAgentSession",
    "SyncMandateClient",
    "read_chain",
]
__version__ = "0.1.0"
