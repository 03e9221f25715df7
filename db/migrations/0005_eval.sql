-- 0005: evaluations of a trained counselor by simulated sessions (the CACTUS protocol).
-- Never edit a released migration.

-- One evaluation: one counselor under test against a set of simulated clients. `key` is a hash
-- of everything that decides its sessions (counselor, clients, attitudes, turn limits, client
-- and judge models), so running the same evaluation again resumes it instead of starting over.
CREATE TABLE evaluations (
    id          INTEGER PRIMARY KEY,
    key         TEXT    NOT NULL UNIQUE,
    run_id      INTEGER REFERENCES runs(id) ON DELETE SET NULL,  -- the training run evaluated
    label       TEXT    NOT NULL,      -- e.g. "run 3 (adapter)", "base model", "openai:gpt-x"
    counselor   TEXT    NOT NULL DEFAULT '{}',  -- JSON: kind, model, adapter, backend
    settings    TEXT    NOT NULL DEFAULT '{}',  -- JSON: clients, attitudes, limits, client, judge
    created_at  TEXT    NOT NULL
);
CREATE INDEX evaluations_run ON evaluations(run_id);

-- One simulated session: a client (intake form) with an attitude, its transcript and scores.
-- status: finished (transcript stored, judged) | failed (error says why; a rerun tries again).
-- A session is written once it is finished, so `kill -9` loses only the sessions in flight.
CREATE TABLE eval_sessions (
    id             INTEGER PRIMARY KEY,
    evaluation_id  INTEGER NOT NULL REFERENCES evaluations(id) ON DELETE CASCADE,
    client_key     TEXT    NOT NULL,   -- which client: `record:<id>`, `file:<index>`, `chat`
    record_id      INTEGER REFERENCES records(id) ON DELETE SET NULL,
    attitude       TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    transcript     TEXT    NOT NULL DEFAULT '',  -- Counselor:/Client: lines
    turns          INTEGER NOT NULL DEFAULT 0,
    ended_by       TEXT    NOT NULL DEFAULT '',  -- client (`[/END]`) | limit | clinician
    ctrs           TEXT    NOT NULL DEFAULT '{}', -- JSON {item: {"score": 0-6, "explanation": …}}
    ctrs_mean      REAL,
    flags          TEXT    NOT NULL DEFAULT '[]', -- JSON safety flags, as the judge gives them
    panas_before   TEXT    NOT NULL DEFAULT '{}', -- JSON {feeling: 1-5} from the intake form
    panas_after    TEXT    NOT NULL DEFAULT '{}', -- JSON {feeling: 1-5} from the transcript
    positive_change REAL,                        -- positive affect after - before (sum of 10)
    negative_change REAL,                        -- negative affect after - before (sum of 10)
    error          TEXT    NOT NULL DEFAULT '',
    tokens         INTEGER NOT NULL DEFAULT 0,
    elapsed_s      REAL    NOT NULL DEFAULT 0,
    created_at     TEXT    NOT NULL,
    UNIQUE (evaluation_id, client_key, attitude)
);
