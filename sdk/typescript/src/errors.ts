// Errors of the agent side. Every one carries the OAuth `error` code, its description and the
// HTTP status when there was one, and never a token or a secret: messages are built only from
// the server's error code and description, never from a request.

import * as oauth from 'oauth4webapi';

/** Base class of every error this SDK raises. */
export class MandateError extends Error {
  /** The OAuth error code (RFC 6749 §5.2, RFC 6750 §3.1, CIBA §11), or an SDK code. */
  readonly error: string;
  /** The server's `error_description`, when it gave one. */
  readonly description: string | undefined;
  /** The HTTP status of the answer, when the error came from one. */
  readonly status: number | undefined;

  constructor(error: string, description?: string, status?: number, options?: { cause?: unknown }) {
    super(description ? `${error}: ${description}` : error, options);
    this.name = new.target.name;
    this.error = error;
    this.description = description;
    this.status = status;
  }
}

/** An OAuth error answer not covered by a more specific class (invalid_scope, invalid_grant, ...). */
export class OAuthError extends MandateError {}

/** The human denied the request on the approvals page (CIBA §11 `access_denied`). */
export class ApprovalDenied extends MandateError {}

/** The request expired before the human answered (CIBA §11 `expired_token`). */
export class ApprovalExpired extends MandateError {}

/** `waitForApproval` gave up after its own timeout (the request may still be answered later). */
export class ApprovalTimeout extends MandateError {}

/** The wait was cancelled through its AbortSignal. */
export class ApprovalCancelled extends MandateError {}

/** A response that breaks the protocol (not JSON, a field missing), or a transport failure. */
export class ProtocolError extends MandateError {}

/** The error class for an OAuth error code. */
export function errorOf(error: string, description: string | undefined, status: number | undefined): MandateError {
  const Cls = error === 'access_denied' ? ApprovalDenied : error === 'expired_token' ? ApprovalExpired : OAuthError;
  return new Cls(error, description, status);
}

/**
 * Turns what oauth4webapi or fetch threw into a MandateError. A ResponseBodyError is the
 * server's RFC 6749 §5.2 answer; everything else is a protocol or transport failure, described
 * by oauth4webapi's message (which never quotes a token).
 */
export function toMandateError(e: unknown, what: string): MandateError {
  if (e instanceof MandateError) return e;
  if (e instanceof oauth.ResponseBodyError) return errorOf(e.error, e.error_description, e.status);
  if (e instanceof oauth.WWWAuthenticateChallengeError) {
    const c = e.cause[0];
    return new OAuthError(c?.parameters.error ?? 'invalid_client', c?.parameters.error_description, e.status);
  }
  // No `cause`: oauth4webapi attaches the response body (which may hold a token) to its errors,
  // and a logged error would print it.
  const message = e instanceof Error ? e.message : String(e);
  return new ProtocolError('protocol_error', `${what}: ${message}`);
}
