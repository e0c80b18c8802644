#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz targets (fuzz/seeds/<target>/), from hand-written
examples and the TPM test vectors in tests/vectors/tpm. Seeds only point the fuzzer at the
interesting shapes. Inputs the fuzzer found (crashes, and inputs that broke a target's own
invariant) are committed beside them as found, not written here:
    client_assertion/ignored_invalid_utf8

    python3 fuzz/seeds/make.py
"""
import base64
import json
import pathlib

HERE = pathlib.Path(__file__).resolve().parent
VECTORS = HERE.parent.parent / "tests" / "vectors" / "tpm"


def b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def jwt(header: dict, claims: dict, sig: bytes = b"\x01" * 64) -> str:
    enc = lambda d: b64url(json.dumps(d, separators=(",", ":")).encode())
    return f"{enc(header)}.{enc(claims)}.{b64url(sig)}"


def pem_der(path: pathlib.Path) -> bytes:
    lines = path.read_text().splitlines()
    body = "".join(l for l in lines if l and not l.startswith("-----"))
    return base64.b64decode(body)


def write(target: str, name: str, data) -> None:
    d = HERE / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
ASSERTION = jwt(
    {"alg": "ES256", "typ": "JWT", "kid": "k1"},
    {"iss": "svc", "sub": "svc", "aud": "https://as.example/token", "exp": 1800000000,
     "jti": "a1"},
)
ACCESS = jwt({"alg": "ES256", "kid": "k"}, {"sub": "alice", "jti": "0AbC-x_9", "exp": 1})

# params: one body per grant, the other endpoints' bodies, and the §3.1/§3.2 edge cases.
for name, body in {
    "client_credentials": "grant_type=client_credentials&scope=b+a&audience=x&resource=y",
    "authorization_code": "grant_type=authorization_code&code=c0de&redirect_uri=https%3A%2F%2F"
    f"app.example%2Fcb&code_verifier={VERIFIER}&code_challenge={CHALLENGE}"
    "&code_challenge_method=S256",
    "refresh_token": "grant_type=refresh_token&refresh_token=rt&scope=read",
    "token_exchange": "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange"
    "&subject_token=st&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token"
    "&actor_token=at&actor_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt"
    "&scope=a+b&audience=https%3A%2F%2Fapi.example&requested_token_type=urn%3Aietf%3Aparams"
    "%3Aoauth%3Atoken-type%3Aaccess_token",
    "ciba": "grant_type=urn%3Aopenid%3Aparams%3Agrant-type%3Aciba&auth_req_id=r1",
    "revoke": "token=abc&token_type_hint=refresh_token",
    "repeated": "grant_type=a&grant_type=b&scope=&scope=x",
    "empty_values": "scope=&grant_type=&=x&&=&%ZZ=%e2%82",
}.items():
    write("params", name, body)

# form_body: first line is the Authorization header value (empty: none), then the body.
for name, data in {
    "basic": "Basic " + b64(b"my%20client:s%3Acret+x") + "\ngrant_type=client_credentials",
    "basic_and_post": "Basic " + b64(b"a:b") + "\nclient_id=a&client_secret=b",
    "post": "\nclient_id=svc&client_secret=s3cret&grant_type=client_credentials",
    "public": "\nclient_id=app&grant_type=authorization_code&code=c",
    "assertion": "\nclient_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type"
    f"%3Ajwt-bearer&client_assertion={ASSERTION}&client_id=svc",
    "bearer": "Bearer abc\ntoken=x",
}.items():
    write("form_body", name, data)

write("unverified_jti", "access_token", ACCESS)
write("unverified_jti", "opaque", "tV1kq3Y8bq2n0r0ZKJQ4w2kM1d9yYfQ6xq5yR8tX0aU")

write("client_assertion", "es256", ASSERTION)
write("client_assertion", "aud_array", jwt(
    {"alg": "PS256"},
    {"iss": "c", "sub": "c", "aud": ["x", "https://as.example"], "jti": "j", "nbf": 0},
    b"\x02" * 256))
write("client_assertion", "hs256", jwt({"alg": "HS256"}, {"iss": "c", "sub": "c"}))

write("act_claims", "chain", '{"sub":"agent:sub","act":{"sub":"agent:build-bot"}}')
write("act_claims", "may_act", '{"sub":"agent:y"}')
write("act_claims", "unknown_field", '{"sub":"agent:a","act":{"sub":"b","extra":1}}')

# attest_json: one body of each kind; the TPM ones from the committed vectors, so a seed
# passes the verifier and the EK chain checks.
p256 = VECTORS / "ecc-p256"
nonce = bytes.fromhex((p256 / "nonce.hex").read_text().strip())
ek = VECTORS / "ek"
for name, body in {
    "challenge": {"agent": "build-bot"},
    "software": {"agent": "build-bot", "nonce": b64url(b"\x07" * 32),
                 "proof": jwt({"alg": "ES256"}, {"iss": "build-bot", "sub": "build-bot",
                                                 "aud": "https://as.example", "nonce": "n",
                                                 "iat": 1, "exp": 2, "jti": "j"})},
    "tpm_quote": {"agent": "build-bot", "nonce": b64url(nonce),
                  "quote": b64((p256 / "quote.msg").read_bytes()),
                  "signature": b64((p256 / "quote.sig").read_bytes()),
                  "pcrs": json.loads((p256 / "pcrs.json").read_text())},
    "enroll_rsa": {"agent": "tpm-bot", "ek_public": b64((ek / "ek_rsa.pub").read_bytes()),
                   "ek_certificate": b64((ek / "ek_rsa.der").read_bytes()),
                   "ek_chain": [b64(pem_der(ek / "intermediate.pem"))],
                   "ak_public": b64((ek / "ak.pub").read_bytes())},
    "enroll_p256_allowlisted": {"agent": "tpm-bot",
                                "ek_public": b64((ek / "ek_p256.pub").read_bytes()),
                                "ak_public": b64((ek / "ak.pub").read_bytes())},
    "activate": {"enrollment_id": "e1", "secret": b64(b"\x00" * 32)},
}.items():
    write("attest_json", name, json.dumps(body, indent=1))

# The TPM parser targets (they take raw TPM structures), from every committed vector.
for kind in ["ecc-p256", "ecc-p384", "rsa-pss", "rsa-rsassa"]:
    d = VECTORS / kind
    write("tpm_public", kind, (d / "ak.pub").read_bytes())
    write("tpm_attest", kind, (d / "quote.msg").read_bytes())
    write("tpm_signature", kind, (d / "quote.sig").read_bytes())
    write("tpm_pcr_json", kind, (d / "pcrs.json").read_bytes())
write("tpm_pcr_json", "policy", (p256 / "pcr-policy.json").read_bytes())
for name in ["ek_rsa.pub", "ek_p256.pub", "ek_p384.pub", "ak.pub"]:
    write("tpm_ek_public", name.replace(".", "_"), (ek / name).read_bytes())
# TPML_PCR_SELECTION: one sha256 bank selecting PCRs 0 and 7.
write("tpm_pcr_selection", "sha256_0_7", bytes.fromhex("00000001000b03810000"))
# tpm_verify: the quote's length in one byte, the quote, the signature (the committed P-256 AK's).
quote = (p256 / "quote.msg").read_bytes()
write("tpm_verify", "ecc-p256", bytes([len(quote)]) + quote + (p256 / "quote.sig").read_bytes())

# registration_metadata: RFC 7591 client metadata as MCP clients send it, and edge shapes.
for name, body in [
    ("mcp_native", {"client_name": "MCP client", "redirect_uris": ["http://127.0.0.1:33418/callback"],
                    "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
                    "token_endpoint_auth_method": "none", "scope": "orders:read"}),
    ("web", {"redirect_uris": ["https://app.example/cb"], "application_type": "web"}),
    ("private_use", {"redirect_uris": ["com.example.app:/cb", "http://[::1]/cb"]}),
    ("confidential", {"grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_post"}),
]:
    write("registration_metadata", name, json.dumps(body, indent=1))

# cimd_document: the client_id URL on the first line, then the document (which the target also
# reads, line by line, as Cache-Control, Expires, Date and Age).
CIMD_URL = "https://app.example.com/oauth/client.json"
for name, doc in {
    "mcp_example": {"client_id": CIMD_URL, "client_name": "Example MCP Client",
                    "client_uri": "https://app.example.com",
                    "logo_uri": "https://app.example.com/logo.png",
                    "redirect_uris": ["http://127.0.0.1:3000/callback",
                                      "http://localhost:3000/callback"],
                    "grant_types": ["authorization_code"], "response_types": ["code"],
                    "token_endpoint_auth_method": "none"},
    "native_app": {"client_id": CIMD_URL, "redirect_uris": ["com.example.app:/cb",
                                                            "https://app.example.com/cb"],
                   "grant_types": ["authorization_code", "refresh_token"], "scope": "read"},
    "secret": {"client_id": CIMD_URL, "client_secret": "x", "redirect_uris": ["https://a.b/c"]},
}.items():
    write("cimd_document", name, CIMD_URL + "\n" + json.dumps(doc, indent=1))
write("cimd_document", "headers", "https://[::1]:8443/c\nmax-age=600, no-store\n"
      "Wed, 21 Oct 2026 07:28:00 GMT\nWed, 21 Oct 2026 07:00:00 GMT\n30")

# A TPM-held DPoP key's certification, and the AK certifying itself (tests/vectors/tpm/dpop).
dpop_vectors = VECTORS / "dpop"
write("tpm_certify", "certify", (dpop_vectors / "certify.msg").read_bytes())
write("tpm_certify", "ak-certify", (dpop_vectors / "ak-certify.msg").read_bytes())

# DPoP proofs (RFC 9449 §4.2): the RFC's example key, and an RSA key, for the target's request.
DPOP_CLAIMS = {"jti": "-BwC3ESc6acc2lTc", "htm": "POST", "htu": "https://as.example/token",
               "iat": 1800000000, "ath": "x"}
write("dpop_proof", "es256", jwt({"typ": "dpop+jwt", "alg": "ES256", "jwk": {
    "kty": "EC", "crv": "P-256", "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
    "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA"}}, DPOP_CLAIMS))
write("dpop_proof", "rs256", jwt({"typ": "dpop+jwt", "alg": "RS256", "jwk": {
    "kty": "RSA", "n": b64url(b"\xc5" * 256), "e": "AQAB"}}, DPOP_CLAIMS, b"\x01" * 256))
