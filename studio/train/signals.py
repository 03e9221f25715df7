"""SIGINT / SIGTERM during a run: finish the current step, save the adapter, end as `stopped`.

The first signal only raises a flag that the trainer checks after every optimizer step. A second
one gives up on a clean stop (`KeyboardInterrupt`), for when a step takes too long to wait for.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt(f"{signal.Signals(signum).name} again: stopping without saving")
        self.requested = True
        self.signal_name = signal.Signals(signum).name
        print(
            f"{self.signal_name}: stopping after this step and saving the adapter "
            "(send it again to stop at once)",
            file=sys.stderr,
            flush=True,
        )

    def requested_anywhere(self, device: Any = None) -> bool:
        """Whether any rank was asked to stop: ranks must stop at the same step, or DDP hangs."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return self.requested
        import torch

        flag = torch.tensor([1.0 if self.requested else 0.0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item() > 0)
