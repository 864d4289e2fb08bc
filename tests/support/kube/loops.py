"""An event loop in its own thread: the test server and the Job runner each run in one, never in
kopf's loop or the test's thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

Startup = Callable[[], Coroutine[Any, Any, None]]


def start_loop_thread(
    name: str, startup: Startup, timeout: float = 30
) -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    """Start a loop in a daemon thread and run `startup()` in it to completion."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name=name, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(startup(), loop).result(timeout=timeout)
    return loop, thread


def stop_loop_thread(
    loop: asyncio.AbstractEventLoop,
    thread: threading.Thread,
    shutdown: Startup,
    timeout: float = 30,
) -> None:
    """Run `shutdown()` in the loop, then stop and close the loop and join its thread (even if
    the shutdown failed)."""
    try:
        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=timeout)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=timeout)
        loop.close()
