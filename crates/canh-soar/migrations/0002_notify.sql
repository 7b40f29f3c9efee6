-- E-mail notifications: the on-duty roster and an outbox with one row per message and recipient,
-- plus one row per delivery attempt, so that a failed delivery is always visible.

CREATE TABLE roster (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    email      TEXT    NOT NULL UNIQUE,
    on_duty    BOOLEAN NOT NULL DEFAULT TRUE,
    updated_at BIGINT  NOT NULL
);

CREATE TABLE notifications (
    id              INTEGER PRIMARY KEY,
    dedup_key       TEXT   NOT NULL,
    kind            TEXT   NOT NULL,
    incident_id     BIGINT REFERENCES incidents(id),
    recipient       TEXT   NOT NULL,
    subject         TEXT   NOT NULL,
    body            TEXT   NOT NULL,
    attachment_name TEXT,
    attachment_type TEXT,
    attachment      TEXT,
    status          TEXT   NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    server_reply    TEXT,
    created_at      BIGINT NOT NULL,
    sent_at         BIGINT,
    UNIQUE (dedup_key, recipient)
);
CREATE INDEX notifications_due ON notifications(status, next_attempt_at);
CREATE INDEX notifications_incident ON notifications(incident_id);

CREATE TABLE notification_attempts (
    id              INTEGER PRIMARY KEY,
    notification_id BIGINT  NOT NULL REFERENCES notifications(id),
    at              BIGINT  NOT NULL,
    ok              BOOLEAN NOT NULL,
    detail          TEXT    NOT NULL
);
CREATE INDEX notification_attempts_notification ON notification_attempts(notification_id);
