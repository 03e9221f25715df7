"""The judge: LLM scores of every dialogue (six CTRS items, technique fidelity, safety flags) to
decide what a clinician reads first, and the check of those scores against clinicians' ratings."""

from studio.judge.engine import Judge, JudgeSummary, judge_settings, rejudge_record

__all__ = ["Judge", "JudgeSummary", "judge_settings", "rejudge_record"]
