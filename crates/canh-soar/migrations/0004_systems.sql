-- Per agency: domains and information systems (security level 1–5, owner, operator, Internet
-- uplinks); follow-up tasks of an agency (R-14: a contact change is to be reported within 24 h);
-- alert classification, team assignment and suppression rules; lead and supporting units of
-- incident tasks; the serious-incident checklist (R-11); case templates with task checklists.

CREATE TABLE agency_domains (
    id         INTEGER PRIMARY KEY,
    agency_id  BIGINT NOT NULL REFERENCES agencies(id),
    domain     TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (agency_id, domain)
);

CREATE TABLE info_systems (
    id          INTEGER PRIMARY KEY,
    agency_id   BIGINT NOT NULL REFERENCES agencies(id),
    name        TEXT   NOT NULL,
    level       BIGINT NOT NULL CHECK (level BETWEEN 1 AND 5),
    owner       TEXT   NOT NULL DEFAULT '',
    operator    TEXT   NOT NULL DEFAULT '',
    -- JSON array of {provider, cidr} objects: the system's Internet uplinks.
    uplinks     TEXT   NOT NULL DEFAULT '[]',
    description TEXT   NOT NULL DEFAULT '',
    updated_at  BIGINT NOT NULL,
    UNIQUE (agency_id, name)
);
CREATE INDEX info_systems_agency ON info_systems(agency_id);

CREATE TABLE agency_tasks (
    id         INTEGER PRIMARY KEY,
    agency_id  BIGINT  NOT NULL REFERENCES agencies(id),
    kind       TEXT    NOT NULL,
    title      TEXT    NOT NULL,
    due_at     BIGINT  NOT NULL,
    done       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT  NOT NULL,
    done_at    BIGINT
);
CREATE INDEX agency_tasks_open ON agency_tasks(done, due_at);
CREATE INDEX agency_tasks_agency ON agency_tasks(agency_id, id);

ALTER TABLE alerts ADD COLUMN incident_type TEXT;
ALTER TABLE alerts ADD COLUMN team TEXT;
ALTER TABLE alerts ADD COLUMN suppression_id BIGINT;

CREATE TABLE alert_suppressions (
    id         INTEGER PRIMARY KEY,
    rule_id    TEXT   NOT NULL,
    -- Empty: every host.
    host       TEXT   NOT NULL DEFAULT '',
    reason     TEXT   NOT NULL,
    created_by BIGINT REFERENCES users(id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    hits       BIGINT NOT NULL DEFAULT 0,
    removed_at BIGINT
);
CREATE INDEX alert_suppressions_rule ON alert_suppressions(rule_id);

ALTER TABLE incident_tasks ADD COLUMN lead_unit TEXT NOT NULL DEFAULT '';
-- JSON array of unit names.
ALTER TABLE incident_tasks ADD COLUMN supporting_units TEXT NOT NULL DEFAULT '[]';

ALTER TABLE incidents ADD COLUMN system_id BIGINT REFERENCES info_systems(id);
-- JSON of the R-11 checklist answers; NULL until filled in.
ALTER TABLE incidents ADD COLUMN serious_checklist TEXT;

CREATE TABLE case_templates (
    id            INTEGER PRIMARY KEY,
    name          TEXT   NOT NULL UNIQUE,
    incident_type TEXT   NOT NULL DEFAULT '',
    severity      TEXT,
    -- JSON array of {step, title, lead_unit, supporting_units}.
    tasks         TEXT   NOT NULL,
    created_at    BIGINT NOT NULL
);
