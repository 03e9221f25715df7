"""The app's database work: one thread, one `Store`, jobs run in the order they were submitted.

The UI thread never waits on SQLite (a `studio synth` run may hold the write lock for a moment):
an action submits a job and a worker awaits its future. Submitting from the action itself, not
from inside the worker, fixes the order at key-press time, so `a` then `u` always undoes that
accept, and nothing shares a connection across threads.

The lane opens the store with `open_store` (the CLI passes one that opens a write-protected
database read-only). The app learns whether it got a read-only store from the store's own
`read_only` attribute (False when the store has none): see `store_is_read_only`.
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
#: Opens the app's store; called once, on the lane's thread.
StoreOpener = Callable[[], Store]


def store_is_read_only(store: Store) -> bool:
    """True when the store was opened read-only (its `read_only` attribute; absent means False)."""
    return bool(getattr(store, "read_only", False))


class StoreLane:
    def __init__(
        self,
        path: str | Path,
        *,
        clock: Clock | None = None,
        open_store: StoreOpener | None = None,
    ) -> None:
        self.path = Path(path)
        self.clock = clock or utc_now
        self._open_store = open_store or (lambda: Store.open(self.path, clock=self.clock))
        self._open_error: BaseException | None = None
        """Why the store could not be opened: every later job fails with it, without retrying."""
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
        if self._open_error is not None:
            raise self._open_error
        if self._store is None:
            try:
                self._store = self._open_store()
            except BaseException as exc:
                self._open_error = exc
                raise
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
