"""The app's database work: one thread, one `Store`, jobs run in the order they were submitted.

The UI thread never waits on SQLite (a `studio synth` run may hold the write lock for a moment):
an action submits a job and a worker awaits its future. Submitting from the action itself, not
from inside the worker, fixes the order at key-press time, so `a` then `u` always undoes that
accept, and nothing shares a connection across threads.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from studio.store import Store
from studio.store.store import Clock, utc_now

T = TypeVar("T")


class StoreLane:
    def __init__(self, path: str | Path, *, clock: Clock | None = None) -> None:
        self.path = Path(path)
        self.clock = clock or utc_now
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="studio-store")
        self._store: Store | None = None
        self._closed = False
        self._lock = threading.Lock()

    def submit(self, job: Callable[[Store], T]) -> Future[T]:
        """Queue `job(store)`; it runs after every job submitted before it."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the store lane is closed")
            return self._executor.submit(self._run, job)

    async def run(self, job: Callable[[Store], T]) -> T:
        """Submit `job` and wait for it without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(job))

    def _run(self, job: Callable[[Store], T]) -> T:
        if self._store is None:
            self._store = Store(self.path, clock=self.clock)
        return job(self._store)

    def close(self) -> None:
        """Finish the queued jobs (autosaved drafts among them), then close the connection."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._executor.submit(self._close)
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
