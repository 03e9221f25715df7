-- 0006: the links between events get columns of their own, out of the free-text `detail`, so the
-- audit log can be written once and never changed (accept-all tagged its events after the fact).
-- Never edit a released migration.

-- The id of the first event of an accept-all: every accept of the group carries it, and one undo
-- reverts them all. NULL for an event on its own.
ALTER TABLE events ADD COLUMN accept_group INTEGER;
-- On an `undo` event: the id of the event it reverted. NULL otherwise.
ALTER TABLE events ADD COLUMN undoes INTEGER;

-- Today's prefixes, 'accept_all:<id>' and 'undoes:<id>', move into the columns.
UPDATE events SET accept_group = CAST(substr(detail, 12) AS INTEGER), detail = ''
    WHERE detail LIKE 'accept_all:%';
UPDATE events SET undoes = CAST(substr(detail, 8) AS INTEGER), detail = ''
    WHERE action = 'undo' AND detail LIKE 'undoes:%';

-- Undo looks up "is this event undone?" and "the rest of this group" (0002's index on detail
-- served the first).
DROP INDEX events_undo;
CREATE INDEX events_undoes ON events(undoes) WHERE undoes IS NOT NULL;
CREATE INDEX events_accept_group ON events(accept_group) WHERE accept_group IS NOT NULL;
