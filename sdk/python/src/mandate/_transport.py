"""Drivers of the sans-IO operations in :mod:`mandate._core`: one over ``httpx.Client``, one
over ``httpx.AsyncClient``. They send what an operation yields, sleep when it asks to, and
watch the caller's cancellation; nothing else."""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol, TypeVar

import anyio
import httpx

from ._core import HttpRequest, HttpResponse, Op, Sleep
from .errors import ApprovalCancelled, MandateError

T = TypeVar("T")

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


class AsyncEvent(Protocol):
    """``asyncio.Event``, ``anyio.Event`` or ``trio.Event``: something to ``await .wait()`` on."""

    async def wait(self) -> Any: ...

    def is_set(self) -> bool: ...


def _unreachable(req: HttpRequest, e: Exception) -> MandateError:
    # The URL is the server's endpoint: no token or secret is ever in it.
    return MandateError("unreachable", f"{req.method} {req.url} failed: {type(e).__name__}")


def _response(r: httpx.Response) -> HttpResponse:
    return HttpResponse(r.status_code, r.headers, r.content)


def run_sync(op: Op[T], http: httpx.Client, cancel: threading.Event | None = None) -> T:
    try:
        step = next(op)
        while True:
            if isinstance(step, Sleep):
                if cancel is not None:
                    if cancel.wait(step.seconds):
                        raise ApprovalCancelled("cancelled", "cancelled by the caller")
                else:
                    time.sleep(step.seconds)
                step = op.send(None)
                continue
            if cancel is not None and cancel.is_set():
                raise ApprovalCancelled("cancelled", "cancelled by the caller")
            try:
                r = http.request(step.method, step.url, headers=step.headers, content=step.body)
            except httpx.HTTPError as e:
                raise _unreachable(step, e) from None
            step = op.send(_response(r))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        op.close()


async def run_async(op: Op[T], http: httpx.AsyncClient, cancel: AsyncEvent | None = None) -> T:
    try:
        step = next(op)
        while True:
            if isinstance(step, Sleep):
                if cancel is not None:
                    with anyio.move_on_after(step.seconds):
                        await cancel.wait()
                    if cancel.is_set():
                        raise ApprovalCancelled("cancelled", "cancelled by the caller")
                else:
                    await anyio.sleep(step.seconds)
                step = op.send(None)
                continue
            if cancel is not None and cancel.is_set():
                raise ApprovalCancelled("cancelled", "cancelled by the caller")
            try:
                r = await http.request(step.method, step.url, headers=step.headers, content=step.body)
            except httpx.HTTPError as e:
                raise _unreachable(step, e) from None
            step = op.send(_response(r))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        op.close()
