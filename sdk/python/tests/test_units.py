"""What needs no server, or no working one: keys, the chain, reprs, an unreachable server."""

from __future__ import annotations

import socket

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.jwk import ECKey

from mandate import MandateClient, MandateError, SoftwareKey, SyncMandateClient, read_chain
from mandate.resource import ResourceServer, Unavailable

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_software_key_pem_round_trip_and_proof() -> None:
    key = SoftwareKey.generate()
    again = SoftwareKey.from_pem(key.to_pem())
    assert again.public_jwk() == key.public_jwk() and set(key.public_jwk()) == {"kty", "crv", "x", "y"}
    # SEC1 ("EC PRIVATE KEY") PEM, as openssl ecparam writes it.
    sec1 = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    assert SoftwareKey.from_pem(sec1).public_jwk()["crv"] == "P-256"
    # The proof (docs/attestation.md): ES256, typ JWT, iss = sub = agent, aud = issuer, nonce, exp ≤ iat + 300.
    proof = key.proof("planner", "https://mandate.example", "n0nce")
    t = jwt.decode(proof, ECKey.import_key(key.public_jwk()), algorithms=["ES256"])
    assert t.header == {"alg": "ES256", "typ": "JWT"}
    c = t.claims
    assert (c["iss"], c["sub"], c["aud"], c["nonce"]) == ("planner", "planner", "https://mandate.example", "n0nce")
    assert 0 < c["exp"] - c["iat"] <= 300 and c["jti"]
    assert "PRIVATE" not in repr(key) and "thumbprint" in repr(key)


def test_software_key_refuses_what_is_not_a_p256_private_key() -> None:
    for bad in (b"not a pem", ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )):
        with pytest.raises(ValueError):
            SoftwareKey.from_pem(bad)


def test_read_chain_reads_act_innermost_first_rfc8693_4_1() -> None:
    key = ECKey.generate_key("P-256", private=True)
    claims = {"sub": "alice", "att": "tpm", "act": {"sub": "agent:payments-bot", "act": {"sub": "agent:planner"}}}
    chain = read_chain(jwt.encode({"alg": "ES256"}, claims, key))
    assert str(chain) == "alice → planner → payments-bot"
    assert [a.name for a in chain.actors] == ["planner", "payments-bot"]
    assert chain.attestation == "tpm"  # the current actor's, from mandate's top-level `att`
    assert chain.agent is not None and chain.agent.subject == "agent:payments-bot" and chain.depth == 2
    with pytest.raises(ValueError):
        read_chain("not.a.jwt")


async def test_an_unreachable_server_is_a_mandate_error_without_secrets() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    async with MandateClient(f"http://127.0.0.1:{port}", "agent-runtime", "top-secret") as c:
        assert "top-secret" not in repr(c)
        with pytest.raises(MandateError) as e:
            await c.metadata()
    assert e.value.error == "unreachable" and "top-secret" not in str(e.value)
    with SyncMandateClient(f"http://127.0.0.1:{port}", "agent-runtime", "top-secret") as sc:
        with pytest.raises(MandateError):
            sc.metadata()
    rs = ResourceServer(f"http://127.0.0.1:{port}", "orders-api", mode="introspection", client_id="rs", client_secret="top-secret")
    assert "top-secret" not in repr(rs)
    # Not the token's fault: 503, not invalid_token (tests/test_resource.py checks the answer).
    with pytest.raises(Unavailable) as u:
        await rs.verify("a.b.c")
    assert u.value.status == 503 and "top-secret" not in str(u.value)
    await rs.aclose()


def test_resource_server_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        ResourceServer("https://m.example", "api", mode="introspection")  # no credentials
    with pytest.raises(ValueError):
        ResourceServer("https://m.example", "api", leeway=300)
    with pytest.raises(ValueError):
        MandateClient("not a url", "c")
