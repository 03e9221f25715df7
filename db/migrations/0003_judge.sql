-- 0003: the judge's scores of each dialogue and the clinicians' ratings of the same items.
-- Never edit a released migration.

-- One judgement of one record's dialogue. A score belongs to the exact text it read: text_hash is
-- the hash of the dialogue text (edited text wins) when it was judged, so an edit or a
-- regeneration makes it stale without touching this row. Rows are kept (history); the newest
-- `scored` row whose hash matches the current text is the record's current judgement.
CREATE TABLE judge_scores (
    id                INTEGER PRIMARY KEY,
    record_id         INTEGER NOT NULL REFERENCES records(id) ON DELETE CASCADE,
    text_hash         TEXT    NOT NULL,
    status            TEXT    NOT NULL,               -- scored | failed
    items             TEXT    NOT NULL DEFAULT '{}',  -- JSON {item: {"score": 0-6, "explanation": …}}
    ctrs_mean         REAL,                           -- mean of the six CTRS items (scored only)
    fidelity          INTEGER,                        -- technique fidelity 0-6 (scored only)
    plan_steps        TEXT    NOT NULL DEFAULT '[]',  -- JSON: plan step numbers the dialogue covers
    flags             TEXT    NOT NULL DEFAULT '[]',  -- JSON: [{kind, turn, quote, counselor_response, explanation}]
    flagged           INTEGER NOT NULL DEFAULT 0,
    raw               TEXT    NOT NULL DEFAULT '',    -- the answer as received (kept for failed ones)
    error             TEXT    NOT NULL DEFAULT '',    -- why it failed
    model             TEXT    NOT NULL DEFAULT '',
    template_version  TEXT    NOT NULL DEFAULT '',
    prompt_hash       TEXT    NOT NULL DEFAULT '',
    tokens_in         INTEGER NOT NULL DEFAULT 0,
    tokens_out        INTEGER NOT NULL DEFAULT 0,
    latency_ms        INTEGER NOT NULL DEFAULT 0,
    created_at        TEXT    NOT NULL
);
CREATE INDEX judge_scores_record ON judge_scores(record_id, id);

-- A clinician's own 0-6 rating of one item (the six CTRS items or `fidelity`) of one record.
-- Every change is also an audited `rate` event (before/after), which is what undo walks back.
CREATE TABLE clinician_ratings (
    record_id  INTEGER NOT NULL REFERENCES records(id) ON DELETE CASCADE,
    item       TEXT    NOT NULL,
    reviewer   TEXT    NOT NULL,
    value      INTEGER NOT NULL CHECK (value BETWEEN 0 AND 6),
    text_hash  TEXT    NOT NULL DEFAULT '',  -- the dialogue text the clinician rated
    rated_at   TEXT    NOT NULL,
    PRIMARY KEY (record_id, item, reviewer)
);
CREATE INDEX clinician_ratings_reviewer ON clinician_ratings(reviewer);

-- `studio synth --balance`: the ranked top three the technique stage answered and the technique
-- the run chose from it (the highest-ranked one still under its share), kept with the stage.
CREATE TABLE technique_choices (
    record_id   INTEGER PRIMARY KEY REFERENCES records(id) ON DELETE CASCADE,
    ranking     TEXT    NOT NULL,  -- JSON array of three technique names, best first
    chosen      TEXT    NOT NULL,
    created_at  TEXT    NOT NULL
);
