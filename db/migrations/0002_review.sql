-- 0002: what the review app needs beyond the data model: drafts of edits in progress, and the
-- indexes behind undo and the per-reviewer counts. Never edit a released migration.

-- An edit that a reviewer has not saved yet, autosaved every few seconds by the review app, so
-- that a crash or a kill loses nothing. Saving or discarding the edit deletes its draft.
-- base_text is the stage text the edit started from (to tell the reviewer if it changed since).
CREATE TABLE drafts (
    record_id   INTEGER NOT NULL REFERENCES records(id) ON DELETE CASCADE,
    stage       TEXT    NOT NULL,
    reviewer    TEXT    NOT NULL,
    text        TEXT    NOT NULL,
    base_text   TEXT    NOT NULL DEFAULT '',
    updated_at  TEXT    NOT NULL,
    PRIMARY KEY (record_id, stage, reviewer)
);
CREATE INDEX drafts_reviewer ON drafts(reviewer, updated_at);

-- Undo walks one reviewer's events newest first, skipping those an `undo` event points at
-- (detail = 'undoes:<event id>'); the partial index keeps that look-up off the import path.
CREATE INDEX events_reviewer ON events(reviewer, id);
CREATE INDEX events_undo ON events(detail) WHERE action = 'undo';
