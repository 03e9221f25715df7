"""Evaluate a trained counselor the way CACTUS did: simulated sessions against an LLM client, scored
by the judge (CTRS items, safety flags) and by the client's feelings before and after (PANAS).

Core code: never imports textual (an import-linter contract checks it).
"""
