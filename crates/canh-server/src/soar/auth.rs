//! Authentication: a session cookie (`canh_session`, Secure, HttpOnly, SameSite=Strict) or
//! `Authorization: Bearer <token>`, resolved to a user with a role and an agency scope.

use super::SoarState;
use super::api::ApiError;
use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use canh_soar::{Actor, Role, User};
use std::net::SocketAddr;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "canh_session";

/// The authenticated caller.
#[derive(Clone, Debug)]
pub struct AuthUser {
    /// The user.
    pub user: User,
    /// Agencies the user may see; `None` = all.
    pub scope: Option<Vec<i64>>,
    /// Client address.
    pub source: String,
}

impl AuthUser {
    /// The caller as an audit actor.
    pub fn actor(&self) -> Actor {
        Actor::user(self.user.id, &self.user.name, &self.source)
    }

    /// The caller's role.
    pub fn role(&self) -> Role {
        self.user.role
    }

    /// Whether the caller may see data of this agency (`None` = unattributed data, which only
    /// unscoped users see).
    pub fn can_see(&self, agency: Option<i64>) -> bool {
        match (&self.scope, agency) {
            (None, _) => true,
            (Some(s), Some(a)) => s.contains(&a),
            (Some(_), None) => false,
        }
    }

    /// 403 unless the role may change cases.
    pub fn require_write(&self) -> Result<(), ApiError> {
        if self.user.role.can_write_cases() {
            Ok(())
        } else {
            Err(ApiError::forbidden())
        }
    }

    /// 403 unless administrator or SOC lead.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.user.role.can_administer() {
            Ok(())
        } else {
            Err(ApiError::forbidden())
        }
    }

    /// 403 unless the role may read the audit log.
    pub fn require_audit(&self) -> Result<(), ApiError> {
        if self.user.role.can_read_audit() {
            Ok(())
        } else {
            Err(ApiError::forbidden())
        }
    }

    /// 403 unless the caller sees this agency.
    pub fn require_agency(&self, agency: Option<i64>) -> Result<(), ApiError> {
        if self.can_see(agency) {
            Ok(())
        } else {
            Err(ApiError::forbidden())
        }
    }
}

pub(crate) fn client_source(parts: &Parts) -> String {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn secret_from(parts: &Parts) -> Option<String> {
    if let Some(v) = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return v.strip_prefix("Bearer ").map(|t| t.trim().to_owned());
    }
    for v in parts.headers.get_all(header::COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        for pair in v.split(';') {
            if let Some((k, val)) = pair.trim().split_once('=')
                && k == SESSION_COOKIE
            {
                return Some(val.to_owned());
            }
        }
    }
    None
}

impl<S> FromRequestParts<S> for AuthUser
where
    SoarState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let st = SoarState::from_ref(state);
        let secret = secret_from(parts).ok_or_else(ApiError::unauthenticated)?;
        let user = st
            .soar
            .authenticate(&secret)
            .await
            .map_err(|_| ApiError::unauthenticated())?;
        let scope = st.soar.user_scope(&user).await?;
        Ok(Self {
            user,
            scope,
            source: client_source(parts),
        })
    }
}

/// The `Set-Cookie` value for a new session.
pub(crate) fn session_cookie(secret: &str, max_age_secs: i64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{SESSION_COOKIE}={secret}; Path=/; Max-Age={max_age_secs}; HttpOnly; SameSite=Strict{secure}"
    )
}
