//! The TPM parsers and verifier, compiled from the server's own source files so the fuzzer
//! exercises exactly that code without building the whole server.

#[path = "../../src/attest/tpm/certify.rs"]
pub mod certify;
#[path = "../../src/attest/tpm/parse.rs"]
pub mod parse;
#[path = "../../src/attest/tpm/pcr.rs"]
pub mod pcr;
#[path = "../../src/attest/tpm/verify.rs"]
pub mod verify;
