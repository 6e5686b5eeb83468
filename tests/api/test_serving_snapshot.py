"""The serving snapshot: a slower refresh must never install an older view."""

from __future__ import annotations

import threading
from typing import Any

from fastapi.testclient import TestClient

from tests.api.serving_support import running_experiment


class _InterleavingLock:
    """A lock that, when one chosen thread releases it, lets another refresh run to the end.

    It reproduces the worst scheduling for a refresh: thread A has read the store and
    leaves the critical section; before it does anything else, thread B reads a newer
    state and finishes.
    """

    def __init__(self, on_release: Any) -> None:
        self._lock = threading.Lock()
        self._on_release = on_release
        self.victim: threading.Thread | None = None
        self.fired = False

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *_: object) -> None:
        self._lock.release()
        if not self.fired and threading.current_thread() is self.victim:
            self.fired = True
            self._on_release()


def test_a_slow_refresh_never_installs_an_older_snapshot(client: TestClient) -> None:
    running_experiment(client)
    service = client.app.state.serving  # type: ignore[attr-defined]
    version_before = service.runtime.experiments["e"].version

    def newer_allocation() -> None:
        # Committing through the app refreshes the snapshot in the request's thread.
        response = client.put(
            "/v1/experiments/e/allocation", json={"weights": {"a": 0.9, "b": 0.1}}
        )
        assert response.status_code == 200, response.text

    lock = _InterleavingLock(newer_allocation)
    service.snapshot._lock = lock
    slow = threading.Thread(target=service.refresh)
    lock.victim = slow
    slow.start()
    slow.join(timeout=30)
    assert lock.fired
    current = service.runtime.experiments["e"]
    assert current.version == version_before + 1
    assert dict(zip([a.name for a in current.arms], current.weights, strict=True)) == {
        "a": 0.9,
        "b": 0.1,
    }
