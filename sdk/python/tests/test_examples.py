"""The Python examples (examples/python/) run as a newcomer runs them: against mandate serving
the repository's demo config (mandate.toml, unchanged but for where it listens and keeps its
data), each one command, with this test playing alice at mandate's pages — following the sign-in
link the example prints and, for the high-risk call, approving (or denying) it on /approvals.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import Person, start_mandate

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples" / "python"
BINDING = "Pay invoice 4711: 42.00 EUR"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def demo() -> Iterator[str]:
    """mandate on the demo config (`cargo run --release` serves the same file)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="mandate-demo-") as tmp:
        d = Path(tmp)
        proc, got = start_mandate(
            d,
            None,
            config_file=REPO / "mandate.toml",
            overrides={
                "MANDATE_LISTEN": f"127.0.0.1:{port}",
                "MANDATE_ISSUER": url,
                "MANDATE_DATABASE_URL": f"sqlite://{d}/demo.db",
                "MANDATE_KEK_FILE": str(d / "kek"),
            },
        )
        assert got == url
        try:
            yield url
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)


class Example:
    """One example running as `python examples/python/NAME.py`, its output read line by line."""

    def __init__(self, name: str, issuer: str) -> None:
        env = dict(os.environ)
        env.update(
            MANDATE_ISSUER=issuer,
            EXAMPLE_BROWSER="none",
            PAYMENTS_API_PORT=str(free_port()),
            PYTHONUNBUFFERED="1",
        )
        self.proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / f"{name}.py")],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._q: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._q.put(line.rstrip("\n"))
        self._q.put(None)

    def wait_for(self, match: Callable[[str], bool], timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._q.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"waited {timeout:g} s; the example printed:\n" + "\n".join(self.lines)) from None
            if line is None:
                raise AssertionError("the example ended early; it printed:\n" + "\n".join(self.lines))
            self.lines.append(line)
            if match(line):
                return line

    def finish(self, timeout: float = 60) -> str:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        while (line := self._q.get(timeout=5)) is not None:
            self.lines.append(line)
        out = "\n".join(self.lines)
        assert self.proc.returncode == 0, f"exit {self.proc.returncode}:\n{out}"
        return out


def sign_in(example: Example, person: Person) -> None:
    """What alice's browser does with the link the example prints: sign in, consent, and land
    on the example's loopback redirect (RFC 8252 §7.3), which hands it the code."""
    link = example.wait_for(lambda l: "/authorize?" in l).strip()
    back = person.follow(link)
    assert back.startswith("http://127.0.0.1:9901/callback?"), back
    assert httpx.get(back).status_code == 200


def test_delegate_example_prints_alice_planner_payments_bot(demo: str) -> None:
    person = Person(demo, "alice", "alice-password")
    ex = Example("delegate", demo)
    sign_in(ex, person)
    out = ex.finish()
    # The FastAPI resource server saw the whole chain (RFC 8693 §4.1) and the agent's attestation.
    assert "payments-api: GET /payments for alice → planner → payments-bot (software)" in out
    assert "'chain': 'alice → planner → payments-bot'" in out
    assert "revoked" in out


def test_approval_example_waits_for_alice_and_pays_once_she_approves(demo: str) -> None:
    person = Person(demo, "alice", "alice-password")
    ex = Example("approval", demo)
    sign_in(ex, person)
    ex.wait_for(lambda l: l.startswith("Waiting for alice to approve"))
    # Nothing was paid before alice's say (CIBA Core §7: the grant waits for the user).
    assert not any("POST /payments" in l for l in ex.lines)
    person.decide(BINDING, "Approve")
    out = ex.finish()
    assert "straight exchange refused, as policy says: invalid_scope" in out
    assert "payments-api: POST /payments for alice → payments-bot (software)" in out
    assert "payments-bot paid" in out


def test_approval_example_pays_nothing_when_alice_denies(demo: str) -> None:
    person = Person(demo, "alice", "alice-password")
    ex = Example("approval", demo)
    sign_in(ex, person)
    ex.wait_for(lambda l: l.startswith("Waiting for alice to approve"))
    person.decide(BINDING, "Deny")
    out = ex.finish()
    assert "alice said no: nothing paid" in out
    assert "POST /payments" not in out
