"""Errors raised by the agent side of the SDK.

Every error carries the OAuth ``error`` code, the server's ``description`` and the HTTP
``status`` when there was one. None of them ever holds a token, a secret or a request body:
their ``str()`` and ``repr()`` are safe to log.
"""

from __future__ import annotations

__all__ = [
    "MandateError",
    "OAuthError",
    "ProtocolError",
    "ApprovalDenied",
    "ApprovalExpired",
    "ApprovalTimeout",
    "ApprovalCancelled",
]


class MandateError(Exception):
    """Base class of every error this SDK raises.

    :ivar error: the OAuth error code (RFC 6749 §5.2), e.g. ``"invalid_scope"``, or a short
        code of this SDK (``"timeout"``, ``"cancelled"``, ``"invalid_response"``).
    :ivar description: what the server (or this SDK) said about it, or ``None``.
    :ivar status: the HTTP status of the answer, or ``None`` when no answer was involved.
    """

    def __init__(self, error: str, description: str | None = None, status: int | None = None) -> None:
        self.error = error
        self.description = description
        self.status = status
        super().__init__(error, description, status)

    def __str__(self) -> str:
        text = self.error
        if self.description:
            text += f": {self.description}"
        if self.status is not None:
            text += f" (HTTP {self.status})"
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}(error={self.error!r}, description={self.description!r}, status={self.status!r})"


class OAuthError(MandateError):
    """An RFC 6749 §5.2 error answer (``invalid_scope``, ``invalid_grant``, ``invalid_target``...)."""


class ProtocolError(MandateError):
    """The server answered something this SDK cannot read (not JSON, a member missing)."""


class ApprovalDenied(OAuthError):
    """The human pressed Deny (CIBA Core §11 ``access_denied``)."""


class ApprovalExpired(OAuthError):
    """The approval request expired before the human decided (CIBA Core §11 ``expired_token``)."""


class ApprovalTimeout(MandateError):
    """``wait_for_approval`` gave up after its ``timeout`` (the request may still be pending)."""


class ApprovalCancelled(MandateError):
    """``wait_for_approval`` was cancelled through its ``cancel`` event."""
