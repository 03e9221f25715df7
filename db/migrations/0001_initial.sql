-- 0001: the whole data model of CBT Studio.
-- Applied by studio.store.migrations inside one transaction; never edit a released migration,
-- add the next number instead.

-- One PatternReframe-style seed. content_hash is the dedupe key (persona, thought, patterns, reframes).
CREATE TABLE seeds (
    id            INTEGER PRIMARY KEY,
    content_hash  TEXT    NOT NULL UNIQUE,
    persona       TEXT    NOT NULL DEFAULT '',
    thought       TEXT    NOT NULL,
    patterns      TEXT    NOT NULL DEFAULT '[]',   -- JSON array of pattern names
    reframes      TEXT    NOT NULL DEFAULT '[]',   -- JSON array of reframes
    source        TEXT    NOT NULL DEFAULT '',
    created_at    TEXT    NOT NULL
);

-- One synthesized (or imported) chain for a seed. A seed may have several (modes, attempts).
-- dedupe_key: the content hash of an imported row, or "synth:<seed>:<mode>:<attempt>".
CREATE TABLE records (
    id             INTEGER PRIMARY KEY,
    seed_id        INTEGER NOT NULL REFERENCES seeds(id) ON DELETE CASCADE,
    dedupe_key     TEXT    NOT NULL UNIQUE,
    mode           TEXT    NOT NULL DEFAULT 'imported',  -- imported | script | two-agent
    attempt        INTEGER NOT NULL DEFAULT 1,
    status         TEXT    NOT NULL DEFAULT 'pending',   -- pending | in_review | accepted | rejected
    rejected       INTEGER NOT NULL DEFAULT 0,           -- rejected as a whole by a reviewer
    attitude       TEXT    NOT NULL DEFAULT '',          -- positive | neutral | negative | ''
    technique      TEXT    NOT NULL DEFAULT '',          -- mirror of the cbt_technique stage, for the queue
    note           TEXT    NOT NULL DEFAULT '',          -- reviewer's note on the whole record
    source         TEXT    NOT NULL DEFAULT '',
    last_reviewer  TEXT    NOT NULL DEFAULT '',
    created_at     TEXT    NOT NULL,
    updated_at     TEXT    NOT NULL
);
CREATE INDEX records_seed ON records(seed_id);
CREATE INDEX records_status ON records(status, id);
CREATE INDEX records_technique ON records(technique, id);

-- The four stages of a record. original_text is the LLM's (or the import's) text and is never
-- overwritten by a reviewer; a reviewer's text goes to edited_text. Current text:
-- COALESCE(edited_text, original_text).
CREATE TABLE stages (
    id                INTEGER PRIMARY KEY,
    record_id         INTEGER NOT NULL REFERENCES records(id) ON DELETE CASCADE,
    name              TEXT    NOT NULL,  -- intake_form | cbt_technique | cbt_plan | dialogue
    position          INTEGER NOT NULL,
    status            TEXT    NOT NULL DEFAULT 'pending',
    original_text     TEXT,
    edited_text       TEXT,
    note              TEXT    NOT NULL DEFAULT '',  -- reviewer's reason or comment
    error             TEXT    NOT NULL DEFAULT '',  -- why failed / invalid / stale
    model             TEXT    NOT NULL DEFAULT '',
    prompt_hash       TEXT    NOT NULL DEFAULT '',
    template_version  TEXT    NOT NULL DEFAULT '',
    tokens_in         INTEGER NOT NULL DEFAULT 0,
    tokens_out        INTEGER NOT NULL DEFAULT 0,
    latency_ms        INTEGER NOT NULL DEFAULT 0,
    updated_at        TEXT    NOT NULL,
    UNIQUE (record_id, name)
);
CREATE INDEX stages_status ON stages(status);

-- The audit log: every import, generation, decision and edit. Undo is built on it.
CREATE TABLE events (
    id         INTEGER PRIMARY KEY,
    ts         TEXT    NOT NULL,
    reviewer   TEXT    NOT NULL DEFAULT '',
    action     TEXT    NOT NULL,   -- import | generate | accept | edit | reject | reject_record | undo | ...
    record_id  INTEGER REFERENCES records(id) ON DELETE SET NULL,
    stage      TEXT,
    before     TEXT,               -- JSON snapshot
    after      TEXT,               -- JSON snapshot
    detail     TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX events_record ON events(record_id, id);

-- Synthesis resume: one response per (backend, model, parameters, rendered prompt).
CREATE TABLE llm_cache (
    key         TEXT PRIMARY KEY,
    backend     TEXT    NOT NULL,
    model       TEXT    NOT NULL,
    response    TEXT    NOT NULL,
    tokens_in   INTEGER NOT NULL DEFAULT 0,
    tokens_out  INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT    NOT NULL
);

-- Training runs (filled by studio.train).
CREATE TABLE runs (
    id            INTEGER PRIMARY KEY,
    status        TEXT    NOT NULL DEFAULT 'running',  -- running | completed | stopped | failed
    config        TEXT    NOT NULL DEFAULT '{}',
    dataset_hash  TEXT    NOT NULL DEFAULT '',
    n_records     INTEGER NOT NULL DEFAULT 0,
    n_examples    INTEGER NOT NULL DEFAULT 0,
    reviewers     TEXT    NOT NULL DEFAULT '[]',
    output_dir    TEXT    NOT NULL DEFAULT '',
    metrics       TEXT    NOT NULL DEFAULT '{}',
    started_at    TEXT    NOT NULL,
    ended_at      TEXT
);

CREATE TABLE run_metrics (
    run_id  INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step    INTEGER NOT NULL,
    kind    TEXT    NOT NULL DEFAULT 'train',  -- train | eval
    loss    REAL,
    lr      REAL,
    epoch   REAL,
    data    TEXT    NOT NULL DEFAULT '{}',
    ts      TEXT    NOT NULL,
    PRIMARY KEY (run_id, kind, step)
);
