"""Synthesis: the CACTUS prompt chain (intake form → technique → plan → dialogue) over an LLM backend."""

from studio.synth.backends import (
    Backend,
    BackendConfigError,
    BackendError,
    ChatRequest,
    ChatResponse,
    make_backend,
)
from studio.synth.engine import CallFailed, Synthesizer, SynthEvent, SynthSummary, regenerate_stage
from studio.synth.settings import SynthSettings

__all__ = [
    "Backend",
    "BackendConfigError",
    "BackendError",
    "CallFailed",
    "ChatRequest",
    "ChatResponse",
    "SynthEvent",
    "SynthSettings",
    "SynthSummary",
    "Synthesizer",
    "make_backend",
    "regenerate_stage",
]
