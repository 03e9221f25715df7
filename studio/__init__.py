"""CBT Studio: synthesize, review and train on CBT counseling dialogues.

The package is layered the way the data flows (a newcomer can read it from the folders):

    studio.ingest  -> files and datasets into the store
    studio.synth   -> the LLM prompt chain that fills the review queue
    studio.tui     -> the clinician's review app (the only place that imports textual)
    studio.train   -> curated rows into an SFT dataset and a QLoRA run

`studio.store` (SQLite) and `studio.cbt` (techniques, dialogue parsing) sit underneath all of them.
"""

__version__ = "0.1.0"
