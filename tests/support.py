"""Helpers shared by test packages."""

from __future__ import annotations

import time
from typing import Any, Callable


def wait_until(predicate: Callable[[], Any], timeout_s: float = 60, what: str = "condition",
               every_s: float = 0.1) -> Any:
    """Poll `predicate` until it returns something truthy; fail the test naming `what` on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
