-- 0004: batch synthesis (`studio synth --batch`). A batch is written here before anything is sent,
-- and every step of its submission (file uploaded, batch created) is committed as it happens, so
-- a kill, a reboot or another machine with this database finds it again and never submits (or
-- pays for) the same requests twice. Never edit a released migration.

-- One server-side batch: the requests of one stage, submitted as one JSONL file.
-- state: preparing (rows written, nothing sent) | uploaded (input file on the server, batch not
-- known yet) | the server's status (validating | in_progress | finalizing | cancelling) |
-- collected (results stored; `outcome` holds the server's final status).
CREATE TABLE batches (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: custom ids carry it
    label          TEXT    NOT NULL UNIQUE,     -- our name for it, also in the server's metadata
    stage          TEXT    NOT NULL,
    backend        TEXT    NOT NULL,
    model          TEXT    NOT NULL,
    base_url       TEXT    NOT NULL DEFAULT '',
    state          TEXT    NOT NULL DEFAULT 'preparing',
    outcome        TEXT    NOT NULL DEFAULT '',  -- completed | expired | cancelled | failed
    input_file_id  TEXT    NOT NULL DEFAULT '',
    batch_id       TEXT    NOT NULL DEFAULT '',  -- the server's id
    requests       INTEGER NOT NULL DEFAULT 0,
    done           INTEGER NOT NULL DEFAULT 0,  -- answered, as the server last counted
    failed         INTEGER NOT NULL DEFAULT 0,
    tokens_in      INTEGER NOT NULL DEFAULT 0,  -- real usage, from the results
    tokens_out     INTEGER NOT NULL DEFAULT 0,
    error          TEXT    NOT NULL DEFAULT '',
    created_at     TEXT    NOT NULL,
    updated_at     TEXT    NOT NULL
);
CREATE INDEX batches_state ON batches(state);

-- One request of a batch: which record's stage it answers, and what it became.
-- state: in_flight | answered | returned (no usable answer: back to pending, `error` says why) |
-- skipped (a reviewer changed the stage meanwhile; their work wins).
CREATE TABLE batch_requests (
    custom_id         TEXT    PRIMARY KEY,
    batch             INTEGER NOT NULL REFERENCES batches(id) ON DELETE CASCADE,
    record_id         INTEGER NOT NULL REFERENCES records(id) ON DELETE CASCADE,
    stage             TEXT    NOT NULL,
    state             TEXT    NOT NULL DEFAULT 'in_flight',
    cache_key         TEXT    NOT NULL,
    prompt_hash       TEXT    NOT NULL,
    template_version  TEXT    NOT NULL,
    stage_updated_at  TEXT    NOT NULL,  -- the stage as it was at submission (a later change wins)
    error             TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX batch_requests_batch ON batch_requests(batch, state);
CREATE INDEX batch_requests_record ON batch_requests(record_id, state);
