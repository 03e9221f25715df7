"""Regeneration off the UI thread: the synthesis core on an event loop of its own.

`studio.synth.regenerate_stage` is async and does blocking SQLite writes between its network
calls. Running it on a private loop in a private thread keeps both off the UI thread, and keeps
the backend's HTTP client on the one loop it was created on. The synthesis modules (and the LLM
SDKs they import) load on the first `r`, not at start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING

from studio.errors import NoBackend as NoBackend  # re-exported: its old home
from studio.model import Stage
from studio.store import StageView, Store
from studio.store.store import Clock, utc_now

if TYPE_CHECKING:
    from studio.store.judging import JudgeResult
    from studio.synth import Backend, SynthSettings

#: Builds the backend (and the synthesis settings to use with it) on the first `r`.
BackendFactory = Callable[[], "tuple[Backend, SynthSettings | None]"]


class Regenerator:
    def __init__(
        self,
        path: str | Path,
        *,
        backend: Backend | None = None,
        backend_factory: BackendFactory | None = None,
        settings: SynthSettings | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.path = Path(path)
        self.settings = settings
        self.clock = clock or utc_now
        self._backend = backend
        self._factory = backend_factory
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        return self._backend is not None or self._factory is not None

    def submit(self, record_id: int, stage: Stage, *, reviewer: str) -> Future[StageView]:
        """Start regenerating one stage; the future gives the new stage (or the failure)."""
        if not self.configured:
            raise NoBackend("no synthesis backend is configured")
        loop = self._ensure_loop()
        return asyncio.run_coroutine_threadsafe(self._regenerate(record_id, stage, reviewer), loop)

    def submit_judge(self, record_id: int) -> Future[JudgeResult]:
        """Start judging one record's dialogue afresh, on the same loop and backend; the future
        gives the stored judgement (a failed one too: it says why)."""
        if not self.configured:
            raise NoBackend("no synthesis backend is configured")
        return asyncio.run_coroutine_threadsafe(self._judge(record_id), self._ensure_loop())

    async def _judge(self, record_id: int) -> JudgeResult:
        from studio.judge import rejudge_record

        backend = self._get_backend()
        with Store(self.path, clock=self.clock) as store:
            return await rejudge_record(store, backend, record_id, settings=self.settings)

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="studio-regenerate", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    async def _regenerate(self, record_id: int, stage: Stage, reviewer: str) -> StageView:
        from studio.synth import regenerate_stage

        backend = self._get_backend()
        # One Store per regeneration: several may be in flight on this loop at once.
        with Store.open(self.path, clock=self.clock) as store:
            return await regenerate_stage(
                store, backend, record_id, stage, settings=self.settings, reviewer=reviewer
            )

    def _get_backend(self) -> Backend:
        if self._backend is None:
            assert self._factory is not None
            try:
                backend, settings = self._factory()
            except Exception as exc:
                raise NoBackend(f"no synthesis backend: {exc}") from exc
            self._backend = backend
            self.settings = settings or self.settings
        return self._backend

    def close(self) -> None:
        """Cancel what is in flight, close the backend and stop the loop's thread."""
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._backend is not None:
                await self._backend.aclose()

        # Closing down: a backend that fails to close has nobody left to report to.
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()
