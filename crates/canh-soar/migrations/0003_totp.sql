-- Optional second factor (RFC 6238 TOTP). The secret is kept as base32; a pending secret is
-- one shown at enrolment and not yet confirmed with a code. totp_last_step is the time step of
-- the last accepted code, so that a code cannot be replayed within its window.

ALTER TABLE users ADD COLUMN totp_secret TEXT;
ALTER TABLE users ADD COLUMN totp_pending TEXT;
ALTER TABLE users ADD COLUMN totp_last_step BIGINT;
