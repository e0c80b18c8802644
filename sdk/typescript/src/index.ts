// @mandate/sdk: the agent side. Attest, act for a human (RFC 8693 token exchange), delegate to
// a sub-agent, wait for the human's approval (CIBA), revoke, read a token's chain, and call
// APIs with a delegated token kept fresh.

export { SoftwareKey, type Attester } from './software-key.js';
export { CommandAttester, type AgentTokenSource, type CommandAttesterOptions } from './command-attester.js';
export {
  MandateClient,
  TOKEN_EXCHANGE,
  TT_ACCESS_TOKEN,
  TT_JWT,
  CIBA_GRANT,
  type MandateClientOptions,
  type ExchangeParams,
  type BackchannelParams,
  type AgentToken,
} from './client.js';
export { AgentSession, type AgentSessionOptions, type DelegationOptions, type DelegateOptions, type ApprovalOptions, type WaitOptions } from './session.js';
export { DpopKey, htuOf, athOf, type ProofParams } from './dpop.js';
export { DelegatedToken, ApprovalRequest } from './tokens.js';
export { Chain, readChain, type Actor } from './chain.js';
export { DelegatedTokenSource, delegatedFetch, isInvalidToken, dpopNonceRequested, type TokenSourceOptions, type DelegatedFetchOptions } from './fetch.js';
export {
  MandateError,
  OAuthError,
  ApprovalDenied,
  ApprovalExpired,
  ApprovalTimeout,
  ApprovalCancelled,
  ProtocolError,
} from './errors.js';
