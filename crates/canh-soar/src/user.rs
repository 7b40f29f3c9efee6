//! Users, roles and credentials: argon2id password hashes, session and API-token secrets stored
//! as SHA-256, lock-out after repeated failed logins.

use crate::Soar;
use crate::audit::Actor;
use crate::clock::{from_ms, to_ms};
use crate::error::{Result, SoarError};
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;

/// The fixed roles (display names come from the regulation profile).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including users.
    Administrator,
    /// Triage, incidents, profiles, evidence export; reads the audit log.
    SocLead,
    /// Triage and incident work.
    Analyst,
    /// Reads its own agency subtree only.
    AgencyViewer,
    /// Reads everything, including the audit log; changes nothing.
    Auditor,
}

impl Role {
    /// All roles.
    pub const ALL: [Role; 5] = [
        Self::Administrator,
        Self::SocLead,
        Self::Analyst,
        Self::AgencyViewer,
        Self::Auditor,
    ];

    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Administrator => "administrator",
            Self::SocLead => "soc_lead",
            Self::Analyst => "analyst",
            Self::AgencyViewer => "agency_viewer",
            Self::Auditor => "auditor",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| SoarError::Invalid(format!("unknown role {s:?}")))
    }

    /// May change alerts, incidents, tasks, evidence.
    pub fn can_write_cases(self) -> bool {
        matches!(self, Self::Administrator | Self::SocLead | Self::Analyst)
    }

    /// May manage agencies, profiles and (administrator only) users.
    pub fn can_administer(self) -> bool {
        matches!(self, Self::Administrator | Self::SocLead)
    }

    /// May read the audit log.
    pub fn can_read_audit(self) -> bool {
        matches!(self, Self::Administrator | Self::SocLead | Self::Auditor)
    }
}

/// A user.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct User {
    /// Id.
    pub id: i64,
    /// Login name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Agency (required for agency viewers: the root of what they can see).
    pub agency_id: Option<i64>,
    /// Disabled users cannot log in.
    pub disabled: bool,
    /// Locked until (failed logins).
    pub locked_until: Option<DateTime<Utc>>,
}

/// A freshly issued secret: shown once, stored only as a hash.
#[derive(Clone, Debug, Serialize)]
pub struct Issued {
    /// The secret (cookie value or bearer token).
    pub secret: String,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
}

/// Minimum password length.
pub const MIN_PASSWORD_CHARS: usize = 12;

fn random_secret() -> Result<String> {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf).map_err(|e| SoarError::Internal(format!("no randomness: {e}")))?;
    Ok(hex::encode(buf))
}

/// SHA-256 of a secret, as stored.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn hash_password(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| SoarError::Internal(format!("no randomness: {e}")))?;
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| SoarError::Internal(format!("salt encoding: {e}")))?;
    // Argon2::default() is argon2id, v19, with the RFC 9106 second recommended parameters.
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| SoarError::Internal(format!("password hashing: {e}")))
}

fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

const COLS: &str = "id, name, role, agency_id, disabled, locked_until";

fn from_row(r: &sqlx::sqlite::SqliteRow) -> Result<User> {
    Ok(User {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        role: Role::parse(&r.try_get::<String, _>("role")?)?,
        agency_id: r.try_get("agency_id")?,
        disabled: r.try_get("disabled")?,
        locked_until: r.try_get::<Option<i64>, _>("locked_until")?.map(from_ms),
    })
}

impl Soar {
    /// Creates a user. Agency viewers need an agency.
    pub async fn create_user(
        &self,
        actor: &Actor,
        name: &str,
        role: Role,
        agency_id: Option<i64>,
        password: &str,
    ) -> Result<User> {
        let name = name.trim();
        if name.is_empty() || name.len() > 64 || name.chars().any(char::is_whitespace) {
            return Err(SoarError::Invalid(
                "user name: 1 to 64 characters, no spaces".into(),
            ));
        }
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(SoarError::Invalid(format!(
                "password must have at least {MIN_PASSWORD_CHARS} characters"
            )));
        }
        if role == Role::AgencyViewer && agency_id.is_none() {
            return Err(SoarError::Invalid("an agency viewer needs --agency".into()));
        }
        if let Some(a) = agency_id {
            self.agency(a).await?;
        }
        // Hashing is slow by design; keep it off the async workers.
        let pw = password.to_owned();
        let hash = tokio::task::spawn_blocking(move || hash_password(&pw))
            .await
            .map_err(|e| SoarError::Internal(format!("hashing task: {e}")))??;
        let mut tx = self.begin().await?;
        let exists = sqlx::query("SELECT 1 FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx);
        if exists.await?.is_some() {
            return Err(SoarError::Conflict(format!("user {name:?} already exists")));
        }
        let id: i64 = sqlx::query(
            "INSERT INTO users (name, role, agency_id, password_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(name)
        .bind(role.as_str())
        .bind(agency_id)
        .bind(hash)
        .bind(to_ms(self.now()))
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        let user = User {
            id,
            name: name.into(),
            role,
            agency_id,
            disabled: false,
            locked_until: None,
        };
        self.audit(
            &mut tx,
            actor,
            "user.create",
            "user",
            id,
            None,
            serde_json::to_value(&user).ok(),
        )
        .await?;
        tx.commit().await?;
        Ok(user)
    }

    /// One user.
    pub async fn user(&self, id: i64) -> Result<User> {
        let row = sqlx::query(&format!("SELECT {COLS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| SoarError::not_found("user", id))?;
        from_row(&row)
    }

    /// All users.
    pub async fn users(&self) -> Result<Vec<User>> {
        let rows = sqlx::query(&format!("SELECT {COLS} FROM users ORDER BY id"))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// Checks a password and opens a session. Failed attempts count towards a lock-out; a
    /// locked, disabled or unknown account gets the same `Denied` answer.
    pub async fn login(&self, name: &str, password: &str, source: &str) -> Result<(User, Issued)> {
        self.login_with_totp(name, password, None, source).await
    }

    /// As `login`, with the TOTP code of a user who enabled the second factor. Without a code
    /// such a login is refused with `Denied(TOTP_REQUIRED)` (the password was right); a wrong or
    /// replayed code counts as a failed login.
    pub async fn login_with_totp(
        &self,
        name: &str,
        password: &str,
        code: Option<&str>,
        source: &str,
    ) -> Result<(User, Issued)> {
        let now = self.now();
        if self.source_blocked(source, now) {
            return Err(SoarError::Denied(
                "too many failed logins from this address; try again later".into(),
            ));
        }
        let denied = || {
            self.source_failed(source, now);
            SoarError::Denied("invalid user name or password".into())
        };
        let row = sqlx::query(&format!(
            "SELECT {COLS}, password_hash, failed_logins, totp_secret, totp_last_step \
             FROM users WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            // Spend the same time as a real check so that names cannot be probed by timing.
            let pw = password.to_owned();
            let _ = tokio::task::spawn_blocking(move || verify_password(&pw, DUMMY_HASH)).await;
            return Err(denied());
        };
        let user = from_row(&row)?;
        let stored: String = row.try_get("password_hash")?;
        let failed: i64 = row.try_get("failed_logins")?;
        if user.disabled || user.locked_until.is_some_and(|t| t > now) {
            return Err(denied());
        }
        let totp_secret: Option<String> = row.try_get("totp_secret")?;
        let last_step: Option<i64> = row.try_get("totp_last_step")?;
        let pw = password.to_owned();
        let mut ok = tokio::task::spawn_blocking(move || verify_password(&pw, &stored))
            .await
            .map_err(|e| SoarError::Internal(format!("hashing task: {e}")))?;
        let mut accepted_step = None;
        if ok && let Some(secret) = &totp_secret {
            let Some(code) = code.map(str::trim).filter(|c| !c.is_empty()) else {
                return Err(SoarError::Denied(TOTP_REQUIRED.into()));
            };
            accepted_step = totp_match(secret, code, now, last_step)?;
            ok = accepted_step.is_some();
        }
        let actor = Actor::user(user.id, &user.name, source);
        let mut tx = self.begin().await?;
        if let Some(step) = accepted_step {
            // Only a later time step may be used next: no replay within the window.
            let updated = sqlx::query(
                "UPDATE users SET totp_last_step = $1 WHERE id = $2 \
                 AND (totp_last_step IS NULL OR totp_last_step < $1)",
            )
            .bind(step)
            .bind(user.id)
            .execute(&mut *tx)
            .await?;
            ok = updated.rows_affected() == 1;
        }
        if !ok {
            let failed = failed + 1;
            let lock = (failed >= self.settings().max_failed_logins)
                .then(|| to_ms(now + self.settings().lockout));
            sqlx::query("UPDATE users SET failed_logins = $1, locked_until = $2 WHERE id = $3")
                .bind(if lock.is_some() { 0 } else { failed })
                .bind(lock)
                .bind(user.id)
                .execute(&mut *tx)
                .await?;
            let action = if lock.is_some() {
                "user.locked"
            } else {
                "user.login_failed"
            };
            self.audit(&mut tx, &actor, action, "user", user.id, None, None)
                .await?;
            tx.commit().await?;
            return Err(denied());
        }
        sqlx::query("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = $1")
            .bind(user.id)
            .execute(&mut *tx)
            .await?;
        let issued = self
            .issue_in_tx(
                &mut tx,
                user.id,
                "session",
                "",
                now + self.settings().session_ttl,
            )
            .await?;
        self.audit(&mut tx, &actor, "user.login", "user", user.id, None, None)
            .await?;
        tx.commit().await?;
        Ok((user, issued))
    }

    /// Issues an API token for a user, valid for `ttl` (capped by the settings).
    pub async fn issue_token(
        &self,
        actor: &Actor,
        user_id: i64,
        label: &str,
        ttl: Duration,
    ) -> Result<Issued> {
        if ttl <= Duration::zero() || ttl > self.settings().max_token_ttl {
            return Err(SoarError::Invalid("token lifetime out of range".into()));
        }
        self.user(user_id).await?;
        let mut tx = self.begin().await?;
        let issued = self
            .issue_in_tx(&mut tx, user_id, "api", label, self.now() + ttl)
            .await?;
        self.audit(
            &mut tx,
            actor,
            "user.token",
            "user",
            user_id,
            None,
            Some(serde_json::json!({"label": label, "expires_at": issued.expires_at})),
        )
        .await?;
        tx.commit().await?;
        Ok(issued)
    }

    async fn issue_in_tx(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
        user_id: i64,
        kind: &str,
        label: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<Issued> {
        let secret = random_secret()?;
        sqlx::query(
            "INSERT INTO credentials (token_hash, user_id, kind, label, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(secret_hash(&secret))
        .bind(user_id)
        .bind(kind)
        .bind(label)
        .bind(to_ms(self.now()))
        .bind(to_ms(expires_at))
        .execute(&mut **tx)
        .await?;
        Ok(Issued { secret, expires_at })
    }

    /// The user holding this session cookie or API token, if it is valid now.
    pub async fn authenticate(&self, secret: &str) -> Result<User> {
        let row = sqlx::query(
            "SELECT u.id, u.name, u.role, u.agency_id, u.disabled, u.locked_until \
             FROM credentials c JOIN users u ON u.id = c.user_id \
             WHERE c.token_hash = $1 AND c.expires_at > $2",
        )
        .bind(secret_hash(secret))
        .bind(to_ms(self.now()))
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| SoarError::Denied("invalid or expired credentials".into()))?;
        let user = from_row(&row)?;
        if user.disabled {
            return Err(SoarError::Denied("account disabled".into()));
        }
        Ok(user)
    }

    /// Ends a session or revokes a token.
    pub async fn revoke(&self, secret: &str) -> Result<()> {
        sqlx::query("DELETE FROM credentials WHERE token_hash = $1")
            .bind(secret_hash(secret))
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The agencies a user may see: `None` = all; `Some(ids)` = an agency viewer's subtree.
    pub async fn user_scope(&self, user: &User) -> Result<Option<Vec<i64>>> {
        match (user.role, user.agency_id) {
            (Role::AgencyViewer, Some(a)) => Ok(Some(self.agency_subtree(a).await?)),
            (Role::AgencyViewer, None) => Ok(Some(Vec::new())),
            _ => Ok(None),
        }
    }
}

/// A valid argon2id hash of a random string, checked against when the user does not exist.
impl Soar {
    fn source_blocked(&self, source: &str, now: DateTime<Utc>) -> bool {
        let map = self
            .failed_by_source
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(source).is_some_and(|(n, since)| {
            *n >= self.settings().max_failed_per_source && now - *since < self.settings().lockout
        })
    }

    fn source_failed(&self, source: &str, now: DateTime<Utc>) {
        let mut map = self
            .failed_by_source
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Forget windows that are over, so the map stays small.
        let lockout = self.settings().lockout;
        map.retain(|_, (_, since)| now - *since < lockout);
        let e = map.entry(source.to_owned()).or_insert((0, now));
        e.0 += 1;
    }
}

/// The `Denied` message of a login that needs a TOTP code.
pub const TOTP_REQUIRED: &str = "a TOTP code is required";

/// RFC 6238 parameters: SHA-1, 6 digits, 30-second steps, one step of clock skew either way.
const TOTP_STEP: u64 = 30;

fn totp_for(secret_b32: &str, account: &str) -> Result<totp_rs::TOTP> {
    let bytes = totp_rs::Secret::Encoded(secret_b32.to_owned())
        .to_bytes()
        .map_err(|e| SoarError::Internal(format!("stored TOTP secret: {e:?}")))?;
    totp_rs::TOTP::new(
        totp_rs::Algorithm::SHA1,
        6,
        1,
        TOTP_STEP,
        bytes,
        Some("Canh".into()),
        account.to_owned(),
    )
    .map_err(|e| SoarError::Internal(format!("TOTP parameters: {e}")))
}

/// The TOTP code of a base32 secret at a time (for authenticator checks and tests).
pub fn totp_code(secret_b32: &str, at: DateTime<Utc>) -> Result<String> {
    let totp = totp_for(secret_b32, "user")?;
    Ok(totp.generate(u64::try_from(at.timestamp()).unwrap_or(0)))
}

/// The time step at which `code` is valid (now, one before or one after), if it is later than
/// `last_step`.
fn totp_match(
    secret_b32: &str,
    code: &str,
    now: DateTime<Utc>,
    last_step: Option<i64>,
) -> Result<Option<i64>> {
    let totp = totp_for(secret_b32, "user")?;
    let now_step = u64::try_from(now.timestamp()).unwrap_or(0) / TOTP_STEP;
    for step in [now_step.saturating_sub(1), now_step, now_step + 1] {
        let s = i64::try_from(step).unwrap_or(i64::MAX);
        if last_step.is_some_and(|l| s <= l) {
            continue;
        }
        let expected = totp.generate(step * TOTP_STEP);
        if expected.len() == code.len()
            && expected
                .bytes()
                .zip(code.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
        {
            return Ok(Some(s));
        }
    }
    Ok(None)
}

/// A TOTP secret, shown once.
#[derive(Clone, Debug, Serialize)]
pub struct TotpEnrolment {
    /// Base32 secret.
    pub secret: String,
    /// `otpauth://totp/…` URI for authenticator apps.
    pub otpauth_uri: String,
    /// True once active; false while it waits for a confirming code.
    pub active: bool,
}

impl Soar {
    /// Starts TOTP enrolment: a new random secret, shown once. With `confirm` the second factor
    /// becomes active only after `totp_confirm` with a valid code (self-service); without, it is
    /// active at once (administrator on the command line).
    pub async fn totp_enrol(
        &self,
        actor: &Actor,
        user_id: i64,
        confirm: bool,
    ) -> Result<TotpEnrolment> {
        let user = self.user(user_id).await?;
        let mut raw = [0u8; 20];
        getrandom::fill(&mut raw)
            .map_err(|e| SoarError::Internal(format!("no randomness: {e}")))?;
        let secret = totp_rs::Secret::Raw(raw.to_vec()).to_encoded().to_string();
        let totp = totp_for(&secret, &user.name)?;
        let mut tx = self.begin().await?;
        let sql = if confirm {
            "UPDATE users SET totp_pending = $1 WHERE id = $2"
        } else {
            "UPDATE users SET totp_secret = $1, totp_pending = NULL, totp_last_step = NULL \
             WHERE id = $2"
        };
        sqlx::query(sql)
            .bind(&secret)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let action = if confirm {
            "user.totp_enrol"
        } else {
            "user.totp_enable"
        };
        self.audit(&mut tx, actor, action, "user", user_id, None, None)
            .await?;
        tx.commit().await?;
        Ok(TotpEnrolment {
            otpauth_uri: totp.get_url(),
            secret,
            active: !confirm,
        })
    }

    /// Confirms a pending enrolment with a current code; the second factor is then required.
    pub async fn totp_confirm(&self, actor: &Actor, user_id: i64, code: &str) -> Result<()> {
        let row = sqlx::query("SELECT totp_pending FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| SoarError::not_found("user", user_id))?;
        let pending: Option<String> = row.try_get(0)?;
        let pending =
            pending.ok_or_else(|| SoarError::Invalid("no TOTP enrolment is pending".into()))?;
        let step = totp_match(&pending, code.trim(), self.now(), None)?
            .ok_or_else(|| SoarError::Invalid("wrong TOTP code".into()))?;
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE users SET totp_secret = totp_pending, totp_pending = NULL, \
             totp_last_step = $1 WHERE id = $2",
        )
        .bind(step)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        self.audit(
            &mut tx,
            actor,
            "user.totp_enable",
            "user",
            user_id,
            None,
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Turns the second factor off.
    pub async fn totp_disable(&self, actor: &Actor, user_id: i64) -> Result<()> {
        self.user(user_id).await?;
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE users SET totp_secret = NULL, totp_pending = NULL, totp_last_step = NULL \
             WHERE id = $1",
        )
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        self.audit(
            &mut tx,
            actor,
            "user.totp_disable",
            "user",
            user_id,
            None,
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether the user has the second factor on.
    pub async fn totp_enabled(&self, user_id: i64) -> Result<bool> {
        let row = sqlx::query("SELECT totp_secret IS NOT NULL FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| SoarError::not_found("user", user_id))?;
        Ok(row.try_get(0)?)
    }

    /// The user with this name.
    pub async fn user_by_name(&self, name: &str) -> Result<User> {
        let row = sqlx::query(&format!("SELECT {COLS} FROM users WHERE name = $1"))
            .bind(name)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| SoarError::not_found("user", name))?;
        from_row(&row)
    }
}

/// The console languages a user may choose.
pub const LANGUAGES: [&str; 2] = ["vi", "en"];

/// A search saved by a user in the console.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SavedSearch {
    /// Id.
    pub id: i64,
    /// Name given by the user (unique per user).
    pub name: String,
    /// `filter` (filter language) or `sql`.
    pub mode: String,
    /// The query text.
    pub query: String,
    /// Start of the time range as typed (`now-24h`, an RFC 3339 time); empty for SQL.
    pub range_from: String,
    /// End of the time range as typed; empty = now.
    pub range_to: String,
    /// When it was saved.
    pub created_at: DateTime<Utc>,
}

/// Longest saved query, in bytes.
pub const MAX_SAVED_QUERY: usize = 8192;

/// Searches kept per user.
pub const MAX_SAVED_SEARCHES: i64 = 100;

impl Soar {
    /// Changes a user's role (and agency, which agency viewers need).
    pub async fn set_user_role(
        &self,
        actor: &Actor,
        user_id: i64,
        role: Role,
        agency_id: Option<i64>,
    ) -> Result<User> {
        if role == Role::AgencyViewer && agency_id.is_none() {
            return Err(SoarError::Invalid(
                "an agency viewer needs an agency".into(),
            ));
        }
        if let Some(a) = agency_id {
            self.agency(a).await?;
        }
        let before = self.user(user_id).await?;
        if actor.user_id == Some(user_id) && role != before.role {
            return Err(SoarError::Invalid(
                "users cannot change their own role".into(),
            ));
        }
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE users SET role = $1, agency_id = $2 WHERE id = $3")
            .bind(role.as_str())
            .bind(agency_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let after = User {
            role,
            agency_id,
            ..before.clone()
        };
        self.audit(
            &mut tx,
            actor,
            "user.role",
            "user",
            user_id,
            serde_json::to_value(&before).ok(),
            serde_json::to_value(&after).ok(),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Disables (ending every session and token) or re-enables a user.
    pub async fn set_user_disabled(
        &self,
        actor: &Actor,
        user_id: i64,
        disabled: bool,
    ) -> Result<User> {
        let before = self.user(user_id).await?;
        if disabled && actor.user_id == Some(user_id) {
            return Err(SoarError::Invalid("users cannot disable themselves".into()));
        }
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2")
            .bind(disabled)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        if disabled {
            sqlx::query("DELETE FROM credentials WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        }
        let action = if disabled {
            "user.disable"
        } else {
            "user.enable"
        };
        self.audit(&mut tx, actor, action, "user", user_id, None, None)
            .await?;
        tx.commit().await?;
        Ok(User { disabled, ..before })
    }

    /// The console language the user chose (`vi`, `en`), if any.
    pub async fn user_language(&self, user_id: i64) -> Result<Option<String>> {
        let row = sqlx::query("SELECT language FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| SoarError::not_found("user", user_id))?;
        Ok(row.try_get(0)?)
    }

    /// Stores the user's console language (one of [`LANGUAGES`]).
    pub async fn set_user_language(&self, actor: &Actor, user_id: i64, lang: &str) -> Result<()> {
        if !LANGUAGES.contains(&lang) {
            return Err(SoarError::Invalid(format!("unknown language {lang:?}")));
        }
        let before = self.user_language(user_id).await?;
        if before.as_deref() == Some(lang) {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE users SET language = $1 WHERE id = $2")
            .bind(lang)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        self.audit(
            &mut tx,
            actor,
            "user.language",
            "user",
            user_id,
            before.map(serde_json::Value::from),
            Some(serde_json::Value::from(lang)),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Saves a search under a name (replacing the user's search of the same name).
    pub async fn save_search(
        &self,
        actor: &Actor,
        user_id: i64,
        search: &SavedSearch,
    ) -> Result<SavedSearch> {
        let name = search.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(SoarError::Invalid(
                "search name: 1 to 100 characters".into(),
            ));
        }
        if !matches!(search.mode.as_str(), "filter" | "sql") {
            return Err(SoarError::Invalid(format!(
                "unknown search mode {:?}",
                search.mode
            )));
        }
        if search.query.len() > MAX_SAVED_QUERY
            || search.range_from.len() > 100
            || search.range_to.len() > 100
        {
            return Err(SoarError::Invalid("saved search too long".into()));
        }
        self.user(user_id).await?;
        let now = self.now();
        let mut tx = self.begin().await?;
        let count: i64 =
            sqlx::query("SELECT count(*) FROM saved_searches WHERE user_id = $1 AND name <> $2")
                .bind(user_id)
                .bind(name)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
        if count >= MAX_SAVED_SEARCHES {
            return Err(SoarError::Invalid(format!(
                "at most {MAX_SAVED_SEARCHES} saved searches per user"
            )));
        }
        let id: i64 = sqlx::query(
            "INSERT INTO saved_searches \
             (user_id, name, mode, query, range_from, range_to, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (user_id, name) DO UPDATE SET mode = excluded.mode, \
             query = excluded.query, range_from = excluded.range_from, \
             range_to = excluded.range_to, created_at = excluded.created_at \
             RETURNING id",
        )
        .bind(user_id)
        .bind(name)
        .bind(&search.mode)
        .bind(&search.query)
        .bind(search.range_from.trim())
        .bind(search.range_to.trim())
        .bind(to_ms(now))
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        let saved = SavedSearch {
            id,
            name: name.to_owned(),
            mode: search.mode.clone(),
            query: search.query.clone(),
            range_from: search.range_from.trim().to_owned(),
            range_to: search.range_to.trim().to_owned(),
            created_at: now,
        };
        self.audit(
            &mut tx,
            actor,
            "search.save",
            "saved_search",
            id,
            None,
            serde_json::to_value(&saved).ok(),
        )
        .await?;
        tx.commit().await?;
        Ok(saved)
    }

    /// A user's saved searches, by name.
    pub async fn saved_searches(&self, user_id: i64) -> Result<Vec<SavedSearch>> {
        let rows = sqlx::query(
            "SELECT id, name, mode, query, range_from, range_to, created_at \
             FROM saved_searches WHERE user_id = $1 ORDER BY name",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SavedSearch {
                    id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    mode: r.try_get(2)?,
                    query: r.try_get(3)?,
                    range_from: r.try_get(4)?,
                    range_to: r.try_get(5)?,
                    created_at: from_ms(r.try_get(6)?),
                })
            })
            .collect()
    }

    /// Deletes one of the user's saved searches.
    pub async fn delete_saved_search(&self, actor: &Actor, user_id: i64, id: i64) -> Result<()> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("DELETE FROM saved_searches WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(SoarError::not_found("saved search", id));
        }
        self.audit(
            &mut tx,
            actor,
            "search.delete",
            "saved_search",
            id,
            None,
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$\
                          0bm7nN0bF3LD0tGAbWbHkJcFjTBW0tXNTmkHl3ls0Ow";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hash_round_trip_is_argon2id() {
        let h = hash_password("đúng-mật-khẩu-123").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("đúng-mật-khẩu-123", &h));
        assert!(!verify_password("sai-mật-khẩu-123", &h));
        assert!(!verify_password("x", "not a hash"));
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }

    #[test]
    fn roles_round_trip() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()).unwrap(), r);
        }
        assert!(Role::parse("root").is_err());
    }
}
