-- Canh SOAR state. Times are UTC milliseconds since the Unix epoch (BIGINT), ids are 64-bit
-- integers, JSON is TEXT: the same schema can be served by PostgreSQL (BIGSERIAL/JSONB) later.

CREATE TABLE agencies (
    id          INTEGER PRIMARY KEY,
    code        TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL,
    level       TEXT    NOT NULL,
    parent_id   BIGINT  REFERENCES agencies(id),
    merged_into BIGINT  REFERENCES agencies(id),
    created_at  BIGINT  NOT NULL
);
CREATE INDEX agencies_parent ON agencies(parent_id);

-- Every name an agency has had; the row with valid_to NULL is the current one.
CREATE TABLE agency_names (
    id         INTEGER PRIMARY KEY,
    agency_id  BIGINT NOT NULL REFERENCES agencies(id),
    name       TEXT   NOT NULL,
    valid_from BIGINT NOT NULL,
    valid_to   BIGINT
);
CREATE INDEX agency_names_agency ON agency_names(agency_id, id);

CREATE TABLE agency_ranges (
    id        INTEGER PRIMARY KEY,
    agency_id BIGINT NOT NULL REFERENCES agencies(id),
    cidr      TEXT    NOT NULL,
    public    BOOLEAN NOT NULL DEFAULT TRUE,
    UNIQUE (agency_id, cidr)
);

CREATE TABLE agency_contacts (
    id         INTEGER PRIMARY KEY,
    agency_id  BIGINT NOT NULL REFERENCES agencies(id),
    kind       TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    position   TEXT   NOT NULL DEFAULT '',
    phone      TEXT   NOT NULL DEFAULT '',
    mobile     TEXT   NOT NULL DEFAULT '',
    email      TEXT   NOT NULL DEFAULT '',
    updated_at BIGINT NOT NULL
);

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE,
    role          TEXT    NOT NULL,
    agency_id     BIGINT  REFERENCES agencies(id),
    password_hash TEXT    NOT NULL,
    failed_logins BIGINT  NOT NULL DEFAULT 0,
    locked_until  BIGINT,
    disabled      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    BIGINT  NOT NULL
);

-- Session cookies and API tokens; only the SHA-256 of the secret is stored.
CREATE TABLE credentials (
    token_hash TEXT   PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users(id),
    kind       TEXT   NOT NULL,
    label      TEXT   NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX credentials_user ON credentials(user_id);

CREATE TABLE incidents (
    id                     INTEGER PRIMARY KEY,
    title                  TEXT    NOT NULL,
    description            TEXT    NOT NULL DEFAULT '',
    severity               TEXT    NOT NULL,
    agency_id              BIGINT  NOT NULL REFERENCES agencies(id),
    agency_name            TEXT    NOT NULL,
    step                   TEXT    NOT NULL,
    closed                 BOOLEAN NOT NULL DEFAULT FALSE,
    profile_id             TEXT    NOT NULL,
    profile_version        BIGINT  NOT NULL,
    notice_hours           BIGINT  NOT NULL,
    initial_report_hours   BIGINT  NOT NULL,
    closing_report_hours   BIGINT  NOT NULL,
    detected_at            BIGINT  NOT NULL,
    opened_at              BIGINT  NOT NULL,
    beyond_capacity_at     BIGINT,
    response_ended_at      BIGINT,
    notice_sent_at         BIGINT,
    initial_report_sent_at BIGINT,
    closing_report_sent_at BIGINT,
    closing_waiver         TEXT,
    assignee_id            BIGINT  REFERENCES users(id),
    created_by             BIGINT  REFERENCES users(id),
    version                BIGINT  NOT NULL DEFAULT 1,
    updated_at             BIGINT  NOT NULL
);
CREATE INDEX incidents_agency ON incidents(agency_id, id);
CREATE INDEX incidents_open ON incidents(closed, id);

-- Sign-offs: one row per step transition.
CREATE TABLE incident_signoffs (
    id          INTEGER PRIMARY KEY,
    incident_id BIGINT NOT NULL REFERENCES incidents(id),
    from_step   TEXT   NOT NULL,
    to_step     TEXT   NOT NULL,
    signed_by   BIGINT NOT NULL REFERENCES users(id),
    signed_at   BIGINT NOT NULL,
    summary     TEXT   NOT NULL
);
CREATE INDEX incident_signoffs_incident ON incident_signoffs(incident_id);

CREATE TABLE incident_tasks (
    id          INTEGER PRIMARY KEY,
    incident_id BIGINT  NOT NULL REFERENCES incidents(id),
    step        TEXT    NOT NULL,
    title       TEXT    NOT NULL,
    done        BOOLEAN NOT NULL DEFAULT FALSE,
    assignee_id BIGINT  REFERENCES users(id),
    created_at  BIGINT  NOT NULL,
    done_at     BIGINT
);
CREATE INDEX incident_tasks_incident ON incident_tasks(incident_id);

CREATE TABLE incident_timeline (
    id          INTEGER PRIMARY KEY,
    incident_id BIGINT NOT NULL REFERENCES incidents(id),
    at          BIGINT NOT NULL,
    kind        TEXT   NOT NULL,
    actor_id    BIGINT REFERENCES users(id),
    text        TEXT   NOT NULL
);
CREATE INDEX incident_timeline_incident ON incident_timeline(incident_id, at);

CREATE TABLE incident_observables (
    id          INTEGER PRIMARY KEY,
    incident_id BIGINT  NOT NULL REFERENCES incidents(id),
    kind        TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    ioc         BOOLEAN NOT NULL DEFAULT FALSE,
    UNIQUE (incident_id, kind, value)
);

CREATE TABLE alerts (
    id          INTEGER PRIMARY KEY,
    dedup_key   TEXT    NOT NULL,
    rule_id     TEXT    NOT NULL,
    rule_title  TEXT    NOT NULL,
    rule_level  TEXT    NOT NULL,
    severity    TEXT    NOT NULL,
    agency_id   BIGINT  REFERENCES agencies(id),
    host        TEXT    NOT NULL DEFAULT '',
    event       TEXT    NOT NULL,
    first_seen  BIGINT  NOT NULL,
    last_seen   BIGINT  NOT NULL,
    count       BIGINT  NOT NULL DEFAULT 1,
    state       TEXT    NOT NULL,
    reason      TEXT,
    assignee_id BIGINT  REFERENCES users(id),
    group_id    BIGINT,
    incident_id BIGINT  REFERENCES incidents(id),
    updated_at  BIGINT  NOT NULL
);
CREATE INDEX alerts_dedup ON alerts(dedup_key, last_seen);
CREATE INDEX alerts_group ON alerts(host, rule_id, last_seen);
CREATE INDEX alerts_state ON alerts(state, id);
CREATE INDEX alerts_agency ON alerts(agency_id, id);
CREATE INDEX alerts_incident ON alerts(incident_id);

CREATE TABLE alert_comments (
    id         INTEGER PRIMARY KEY,
    alert_id   BIGINT NOT NULL REFERENCES alerts(id),
    user_id    BIGINT REFERENCES users(id),
    body       TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX alert_comments_alert ON alert_comments(alert_id);

CREATE TABLE evidence (
    id          INTEGER PRIMARY KEY,
    incident_id BIGINT NOT NULL REFERENCES incidents(id),
    sha256      TEXT   NOT NULL,
    size        BIGINT NOT NULL,
    filename    TEXT   NOT NULL,
    description TEXT   NOT NULL DEFAULT '',
    uploaded_by BIGINT REFERENCES users(id),
    uploaded_at BIGINT NOT NULL
);
CREATE INDEX evidence_incident ON evidence(incident_id);

-- Chain of custody: every hand-over, download and export of an evidence item.
CREATE TABLE evidence_custody (
    id          INTEGER PRIMARY KEY,
    evidence_id BIGINT NOT NULL REFERENCES evidence(id),
    at          BIGINT NOT NULL,
    actor_id    BIGINT REFERENCES users(id),
    action      TEXT   NOT NULL,
    detail      TEXT   NOT NULL DEFAULT ''
);
CREATE INDEX evidence_custody_evidence ON evidence_custody(evidence_id);

-- Append-only, hash-chained audit log: hash = SHA-256(prev_hash || canonical JSON of the row).
CREATE TABLE audit_log (
    seq         INTEGER PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT   NOT NULL,
    source      TEXT   NOT NULL,
    action      TEXT   NOT NULL,
    object_type TEXT   NOT NULL,
    object_id   TEXT   NOT NULL,
    before      TEXT,
    after       TEXT,
    prev_hash   TEXT   NOT NULL,
    hash        TEXT   NOT NULL
);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
