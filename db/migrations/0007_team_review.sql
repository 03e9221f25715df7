-- 0007: team review. Each reviewer's decision on a stage is a row of its own; the `stages` row
-- keeps the record's final (derived) status and text, which export and training read as before.
-- Never edit a released migration.

-- Who reviews which record (`studio assign`). A record without assignments is open to anyone and
-- decided by one person, as before 0007; a record assigned to two or more is double-reviewed.
CREATE TABLE assignments (
    record_id    INTEGER NOT NULL REFERENCES records(id) ON DELETE CASCADE,
    reviewer     TEXT    NOT NULL,
    assigned_at  TEXT    NOT NULL,
    plan         TEXT    NOT NULL DEFAULT '{}',  -- JSON: the `studio assign` call (seed, overlap, filter)
    PRIMARY KEY (record_id, reviewer)
);
CREATE INDEX assignments_reviewer ON assignments(reviewer, record_id);

-- One reviewer's current decision on one stage of a record; stage 'record' is a rejection of the
-- record as a whole. Nobody writes another reviewer's row. The audit log (`events`) keeps the
-- history; this table is the present.
-- guideline: the version (a hash) of the review guidelines the reviewer decided under.
CREATE TABLE decisions (
    record_id    INTEGER NOT NULL REFERENCES records(id) ON DELETE CASCADE,
    stage        TEXT    NOT NULL,   -- intake_form | cbt_technique | cbt_plan | dialogue | record
    reviewer     TEXT    NOT NULL,
    status       TEXT    NOT NULL,   -- accepted | edited | rejected | invalid
    edited_text  TEXT,
    note         TEXT    NOT NULL DEFAULT '',
    guideline    TEXT    NOT NULL DEFAULT '',
    decided_at   TEXT    NOT NULL,
    PRIMARY KEY (record_id, stage, reviewer)
);
CREATE INDEX decisions_reviewer ON decisions(reviewer, record_id);

-- How a disagreement was settled. outcome: pick (the version of `picked`), merge (the
-- adjudicator's own text), reject. The stage's final status and text follow from it.
CREATE TABLE adjudications (
    record_id    INTEGER NOT NULL REFERENCES records(id) ON DELETE CASCADE,
    stage        TEXT    NOT NULL,
    adjudicator  TEXT    NOT NULL,
    outcome      TEXT    NOT NULL,   -- pick | merge | reject
    picked       TEXT    NOT NULL DEFAULT '',  -- the reviewer whose version was picked
    status       TEXT    NOT NULL,   -- the final stage status it sets: accepted | edited | rejected
    edited_text  TEXT,
    note         TEXT    NOT NULL DEFAULT '',
    guideline    TEXT    NOT NULL DEFAULT '',
    decided_at   TEXT    NOT NULL,
    PRIMARY KEY (record_id, stage)
);

-- The guideline version of each event's decision (empty for events that are not decisions).
ALTER TABLE events ADD COLUMN guideline TEXT NOT NULL DEFAULT '';

-- Today's decisions carry over: each decided stage becomes the decision of the reviewer of its
-- newest decision event (or the record's last reviewer when the log has none).
INSERT INTO decisions (record_id, stage, reviewer, status, edited_text, note, decided_at)
SELECT s.record_id, s.name,
       COALESCE((SELECT e.reviewer FROM events e
                 WHERE e.record_id = s.record_id AND e.stage = s.name
                   AND e.action IN ('accept', 'reject', 'edit') AND e.reviewer != ''
                 ORDER BY e.id DESC LIMIT 1),
                r.last_reviewer),
       s.status, s.edited_text, s.note, s.updated_at
FROM stages s JOIN records r ON r.id = s.record_id
WHERE s.status IN ('accepted', 'edited', 'rejected')
  AND COALESCE((SELECT e.reviewer FROM events e
                WHERE e.record_id = s.record_id AND e.stage = s.name
                  AND e.action IN ('accept', 'reject', 'edit') AND e.reviewer != ''
                ORDER BY e.id DESC LIMIT 1),
               r.last_reviewer) != '';
INSERT INTO decisions (record_id, stage, reviewer, status, note, decided_at)
SELECT r.id, 'record', r.last_reviewer, 'rejected', r.note, r.updated_at
FROM records r WHERE r.rejected = 1 AND r.last_reviewer != '';
