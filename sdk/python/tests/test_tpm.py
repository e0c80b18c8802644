"""The TPM path, live: a Python agent whose attestation key lives in a TPM (swtpm), attesting
through the Rust agent's command line (`mandate-agent`, built with its `tpm` feature) with
:class:`mandate.CommandAttester`. The agent enrolls zero-touch by its EK certificate (the
swtpm's own CA is the server's `ek_roots`), its delegated token says `att: tpm`, and a
resource server that requires a TPM-attested agent lets it in and keeps a software-keyed one
out.

Needs `swtpm`, `swtpm_setup` and `MANDATE_AGENT_BIN`; tests/sdk/main.rs gives the binary
whenever mandate's `tpm` feature is on (scripts/test, CI), so this runs in CI.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import Depends, FastAPI, HTTPException

from mandate import AgentSession, CommandAttester, MandateClient, SoftwareKey
from mandate.fastapi import require
from mandate.resource import Principal, ResourceServer

from .conftest import ALICE, RUNTIME, Person, config_text, start_mandate

AGENT_BIN = os.environ.get("MANDATE_AGENT_BIN", "")
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        not AGENT_BIN or not shutil.which("swtpm") or not shutil.which("swtpm_setup"),
        reason="needs swtpm and MANDATE_AGENT_BIN (mandate-agent with the tpm feature)",
    ),
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Tpm:
    dir: Path
    port: int

    @property
    def tcti(self) -> str:
        return f"swtpm:host=127.0.0.1,port={self.port}"


def two_free_ports() -> int:
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            p = int(a.getsockname()[1])
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", p + 1))
                except OSError:
                    continue
                return p
    raise RuntimeError("no two consecutive free ports")


@pytest.fixture(scope="module")
def tpm() -> Iterator[Tpm]:
    """A swtpm with an EK certificate from its own local CA (swtpm_setup), on loopback."""
    with tempfile.TemporaryDirectory(prefix="mandate-swtpm-") as tmp:
        d = Path(tmp)
        (d / "state").mkdir()
        (d / "ca").mkdir()
        (d / "swtpm-localca.conf").write_text(
            f"statedir = {d}/ca\nsigningkey = {d}/ca/signkey.pem\nissuercert = {d}/ca/issuercert.pem\n"
            f"certserial = {d}/ca/certserial\n"
        )
        (d / "swtpm_setup.conf").write_text(
            f"create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = {d}/swtpm-localca.conf\n"
            "create_certs_tool_options = /etc/swtpm-localca.options\nactive_pcr_banks = sha256\n"
        )
        subprocess.run(
            ["swtpm_setup", "--tpm2", "--tpm-state", str(d / "state"), "--createek", "--create-ek-cert",
             "--create-platform-cert", "--overwrite", "--config", str(d / "swtpm_setup.conf")],
            check=True, capture_output=True,
        )
        port = two_free_ports()
        proc = subprocess.Popen(
            ["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={d / 'state'}",
             "--server", f"type=tcp,port={port},bindaddr=127.0.0.1",
             "--ctrl", f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
             "--flags", "not-need-init,startup-clear"],
        )
        try:
            yield Tpm(d, port)
        finally:
            proc.terminate()
            proc.wait(10)


@dataclass
class Server:
    url: str
    planner: SoftwareKey


@pytest.fixture(scope="module")
def server(tpm: Tpm) -> Iterator[Server]:
    """mandate trusting the swtpm's CA for zero-touch enrollment."""
    with tempfile.TemporaryDirectory(prefix="mandate-sdk-tpm-") as tmp:
        d = Path(tmp)
        keys = {"planner": SoftwareKey.generate()}
        text = config_text(d, keys, "http://127.0.0.1:9/mcp") + (
            f'\n[attestation]\nek_roots = ["{tpm.dir}/ca/swtpm-localca-rootca-cert.pem"]\n'
        )
        proc, url = start_mandate(d, text)
        try:
            yield Server(url, keys["planner"])
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)


def agent_cli(*args: str) -> list[str]:
    return [AGENT_BIN, *args]


async def test_a_tpm_attested_python_agent_acts_for_alice_and_a_tpm_only_route_lets_it_in(tpm: Tpm, server: Server) -> None:
    url = server.url
    state = tpm.dir / "agent-state"
    common = ["--server", url, "--name", "tpm-planner", "--tpm", tpm.tcti, "--state-dir", str(state)]
    env = {**os.environ, "MANDATE_AGENT_CLIENT_SECRET": RUNTIME[1], "MANDATE_LOG": "warn"}
    # Zero-touch enrollment (docs/attestation.md): the EK certificate chains to ek_roots, and
    # TPM2_ActivateCredential proves the AK lives beside that EK.
    enrolled = subprocess.run(
        agent_cli("enroll", *common, "--client-id", RUNTIME[0], "--ek-chain", str(tpm.dir / "ca" / "issuercert.pem")),
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert enrolled.returncode == 0, enrolled.stderr

    attester = CommandAttester(
        agent_cli("attest", *common, "--client-id", RUNTIME[0]),
        env={"MANDATE_AGENT_CLIENT_SECRET": RUNTIME[1], "MANDATE_LOG": "warn"},
    )
    alice = Person(url, *ALICE).token("orders:read orders:write")
    async with MandateClient(url, *RUNTIME) as client:
        tpm_agent = AgentSession(client, "tpm-planner", attester)
        token = await tpm_agent.act_for(alice, scope="orders:read", audience="orders-api")
        # The agent token came from a TPM quote: the delegated token says so (mandate's `att`).
        assert tpm_agent.attestation == "tpm"
        assert str(token.chain) == "alice → tpm-planner" and token.chain.attestation == "tpm"

        # A software-keyed agent, for contrast.
        planner = AgentSession(client, "planner", server.planner)
        soft = await planner.act_for(alice, scope="orders:read", audience="orders-api")
        assert soft.chain.attestation == "software"

        rs = ResourceServer(url, "orders-api")
        app = FastAPI()

        @app.get("/payouts")
        async def payouts(who: Principal = Depends(require(rs, "orders:read"))) -> dict[str, str]:
            # What a resource server does to keep software-keyed agents out.
            if who.attestation != "tpm":
                raise HTTPException(403, "this needs a TPM-attested agent")
            return {"who": str(who), "attestation": who.attestation}

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://rs.test") as http:
            r = await http.get("/payouts", headers={"authorization": f"Bearer {token.access_token}"})
            assert r.status_code == 200, r.text
            assert r.json() == {"who": "alice → tpm-planner", "attestation": "tpm"}
            r = await http.get("/payouts", headers={"authorization": f"Bearer {soft.access_token}"})
            assert r.status_code == 403 and "TPM-attested" in r.text
        await rs.aclose()
