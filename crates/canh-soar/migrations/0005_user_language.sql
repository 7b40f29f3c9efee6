-- The console language chosen by each user (NULL: not chosen yet, Vietnamese by default) and
-- the searches users saved in the console (a name, the query, and its time range as typed:
-- `now-24h`, an RFC 3339 time, ...).

ALTER TABLE users ADD COLUMN language TEXT;

CREATE TABLE saved_searches (
    id         INTEGER PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name       TEXT   NOT NULL,
    -- `filter` (the filter language) or `sql`.
    mode       TEXT   NOT NULL DEFAULT 'filter',
    query      TEXT   NOT NULL,
    range_from TEXT   NOT NULL DEFAULT '',
    range_to   TEXT   NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    UNIQUE (user_id, name)
);
CREATE INDEX saved_searches_user ON saved_searches(user_id);
