"""The README's quick start is true: its Python blocks run, in order, against the real mandate
(its URLs swapped for the test servers'), with the results it claims."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import anyio
import httpx
import pytest

from mandate import AgentSession, MandateClient

from .conftest import RUNTIME, Mandate, Person, Served

pytestmark = pytest.mark.anyio

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_the_readme_quick_start_runs(
    mandate: Mandate, alice_person: Person, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], mcp_server: str
) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) == 9

    # 1. A new key and its JWK (in a folder of its own: it is not a registered key).
    (tmp_path / "new").mkdir()
    monkeypatch.chdir(tmp_path / "new")
    exec(blocks[0], {})
    assert (tmp_path / "new" / "planner.pem").exists() and "'crv': 'P-256'" in capsys.readouterr().out

    # The registered keys, where the README reads them.
    monkeypatch.chdir(tmp_path)
    for name in ("planner", "payments-bot"):
        (tmp_path / f"{name}.pem").write_bytes(mandate.keys[name].to_pem())
    (tmp_path / "orders.ssf.credential").write_text("Bearer readme-ssf-credential\n")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    api_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    ns: dict[str, object] = {}
    for code in blocks[1:]:
        exec(code.replace("http://127.0.0.1:8080", mandate.url).replace("http://127.0.0.1:8000", api_url), ns)

    alice = alice_person.token("orders:read orders:write payments:write mcp:tools")
    await ns["plan"](alice)  # type: ignore[operator]
    out = capsys.readouterr().out
    assert "alice → planner → payments-bot" in out and alice not in out

    async with MandateClient(mandate.url, *RUNTIME) as client:
        planner = AgentSession(client, "planner", mandate.keys["planner"])
        payer = AgentSession(client, "payments-bot", mandate.keys["payments-bot"])

        async def deny() -> None:
            await anyio.sleep(0.5)
            await anyio.to_thread.run_sync(alice_person.decide, "Pay invoice 4711", "Deny")

        async with anyio.create_task_group() as tg:
            tg.start_soon(deny)
            await ns["pay"](payer, alice)  # type: ignore[operator]
        assert "alice said no" in capsys.readouterr().out

        served = Served(ns["app"], sock)  # type: ignore[arg-type]
        try:
            # The SSF route is mounted, outside `require`: it asks for the stream's credential.
            async with httpx.AsyncClient() as http:
                r = await http.post(f"{api_url}/ssf/events", content=b"x", headers={"content-type": "application/secevent+jwt"})
            assert r.status_code == 401 and r.json()["err"] == "authentication_failed"
            await ns["call_orders"](planner, alice)  # type: ignore[operator]
            # RFC 9449: the sub-agent's DPoP-bound token, with its proofs, at the same route.
            await ns["call_orders_dpop"](alice)  # type: ignore[operator]
        finally:
            served.stop()
        out = capsys.readouterr().out
        assert "{'caller': 'alice → planner'}" in out
        assert "DPoP\n{'caller': 'alice → planner → payments-bot'}" in out
        await ns["use_mcp"](planner, alice, mcp_server)  # type: ignore[operator]
        tpm = ns["tpm_planner"](client, RUNTIME[1])  # type: ignore[operator]
        assert tpm.agent == "planner" and "mandate-agent" in repr(tpm._attester)
