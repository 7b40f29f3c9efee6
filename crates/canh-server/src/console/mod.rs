//! The web console under `/console`: server-rendered pages (askama templates, Fluent message
//! catalogues), a few htmx swaps and one server-sent-event stream for the wall. Every page
//! goes through [`Viewer`], which resolves the session cookie to a user with a role and an
//! agency scope; every query passes that scope down, so that a viewer never receives data it
//! may not see.
//!
//! Assets (htmx, the stylesheet, the keyboard script) are compiled into the binary; nothing is
//! fetched from elsewhere.

mod admin;
mod i18n;
mod incidents;
mod rules;
mod search;
mod triage;
mod wall;

pub use i18n::{Lang, Tr, fmt_time};

use crate::http::AppState;
use crate::soar::SoarState;
use crate::soar::auth::AuthUser;
use askama::Template;
use axum::Router;
use axum::extract::{FromRef, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use canh_soar::SoarError;
use canh_soar::user::TOTP_REQUIRED;
use serde::Deserialize;
use std::sync::Arc;

/// Name of the language cookie.
pub const LANG_COOKIE: &str = "canh_lang";

/// What the console handlers share.
#[derive(Clone)]
pub struct ConsoleState {
    /// The node (store, metrics, configuration).
    pub app: Arc<AppState>,
    /// Incident handling (users, alerts, incidents).
    pub soar: SoarState,
    /// Ingest-rate samples, filled by a background task.
    pub rates: Arc<wall::RateSampler>,
    /// Searches whose store work is running (for Cancel).
    pub searches: Arc<search::Running>,
}

impl FromRef<ConsoleState> for SoarState {
    fn from_ref(st: &ConsoleState) -> Self {
        st.soar.clone()
    }
}

/// The console routes; mount with `.merge(console::router(app, soar))`.
pub fn router(app: Arc<AppState>, soar: SoarState) -> Router {
    let rates = wall::RateSampler::start(&app);
    let state = ConsoleState {
        app,
        soar,
        rates,
        searches: Arc::default(),
    };
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/wall") }))
        .route("/console/static/{*file}", get(asset))
        .route("/console/login", get(login_page).post(login))
        .route("/console/logout", post(logout))
        .route("/console/lang", get(set_lang))
        .merge(wall::routes())
        .merge(triage::routes())
        .merge(incidents::routes())
        .merge(search::routes())
        .merge(admin::routes())
        .merge(rules::routes())
        .with_state(state)
}

// ---- the caller ----

/// A logged-in console user and the chosen language. Pages redirect to the login page when
/// there is no valid session.
pub struct Viewer {
    /// The user, role and agency scope.
    pub auth: AuthUser,
    /// Translations.
    pub tr: Tr,
}

impl Viewer {
    /// Whether the user may change alerts and incidents.
    pub fn can_write(&self) -> bool {
        self.auth.role().can_write_cases()
    }

    /// Whether the user sees every agency.
    pub fn unscoped(&self) -> bool {
        self.auth.scope.is_none()
    }
}

/// The language of a request without a session (the login page): the `canh_lang` cookie,
/// else Vietnamese.
pub fn lang_of(headers: &HeaderMap) -> Lang {
    cookie(headers, LANG_COOKIE).map_or(Lang::Vi, |v| Lang::parse(&v))
}

/// The language of a logged-in user: the one stored on the account, else the cookie, else
/// Vietnamese.
async fn user_lang(st: &ConsoleState, user_id: i64, headers: &HeaderMap) -> Lang {
    match st.soar.soar.user_language(user_id).await {
        Ok(Some(l)) => Lang::parse(&l),
        Ok(None) => lang_of(headers),
        Err(e) => {
            tracing::warn!(error = %e, "stored language not read");
            lang_of(headers)
        }
    }
}

fn lang_cookie(lang: Lang) -> String {
    format!(
        "{LANG_COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax",
        lang.code()
    )
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

impl FromRequestParts<ConsoleState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        match AuthUser::from_request_parts(parts, state).await {
            Ok(auth) => {
                let tr = Tr {
                    lang: user_lang(state, auth.user.id, &parts.headers).await,
                };
                Ok(Viewer { auth, tr })
            }
            Err(_) => {
                let hx = parts.headers.contains_key("hx-request");
                if hx {
                    // An htmx swap cannot follow a redirect into a full page; ask for a reload.
                    Err((
                        StatusCode::UNAUTHORIZED,
                        [("hx-redirect", "/console/login")],
                    )
                        .into_response())
                } else {
                    Err(Redirect::to("/console/login").into_response())
                }
            }
        }
    }
}

// ---- page chrome ----

/// What the layout needs: language, user, active tab.
pub struct Chrome {
    /// Translations.
    pub tr: Tr,
    /// User name.
    pub user: String,
    /// Role label.
    pub role: String,
    /// Active tab (`wall`, `alerts`, `incidents`, `search`, `admin`).
    pub active: &'static str,
    /// Path of the page (for the language switch to come back to).
    pub path: String,
    /// Whether the admin tab is shown.
    pub show_admin: bool,
}

impl Chrome {
    /// A translated message.
    pub fn t(&self, id: &str) -> String {
        self.tr.t(id)
    }

    /// The other language's code, for the switch.
    pub fn other_lang(&self) -> &'static str {
        match self.tr.lang {
            Lang::Vi => "en",
            Lang::En => "vi",
        }
    }

    /// The page's language code.
    pub fn lang(&self) -> &'static str {
        self.tr.lang.code()
    }

    /// `aria-current` for a tab.
    pub fn current(&self, tab: &str) -> &'static str {
        if tab == self.active { "page" } else { "false" }
    }
}

fn chrome(v: &Viewer, active: &'static str, path: impl Into<String>) -> Chrome {
    Chrome {
        tr: v.tr,
        user: v.auth.user.name.clone(),
        role: v.tr.k("console-role", v.auth.role().as_str()),
        active,
        path: path.into(),
        show_admin: v.auth.role().can_administer() || v.auth.role().can_read_audit(),
    }
}

/// Renders a template into a response.
pub fn render<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "console template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "template error").into_response()
        }
    }
}

/// A console error shown as a page in the user's language.
#[derive(Debug)]
pub struct PageError {
    status: StatusCode,
    message_id: &'static str,
    detail: String,
}

impl PageError {
    fn new(status: StatusCode, message_id: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            message_id,
            detail: detail.into(),
        }
    }

    /// 403.
    pub fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, "console-error-forbidden", "")
    }

    /// 404 (also for what exists but lies outside the viewer's agencies).
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "console-error-not-found", "")
    }

    /// 400 with a reason.
    pub fn bad(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "console-error-invalid", detail)
    }
}

impl From<SoarError> for PageError {
    fn from(e: SoarError) -> Self {
        match &e {
            SoarError::Invalid(m) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "console-error-invalid", m)
            }
            SoarError::NotFound { .. } => {
                Self::new(StatusCode::NOT_FOUND, "console-error-not-found", "")
            }
            SoarError::Denied(_) => Self::forbidden(),
            SoarError::Conflict(m) => Self::new(StatusCode::CONFLICT, "console-error-conflict", m),
            _ => {
                tracing::error!(error = %e, "console request failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "console-error-internal",
                    "",
                )
            }
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    c: Chrome,
    status: u16,
    message: String,
    detail: String,
}

impl PageError {
    /// The error as a page for this viewer.
    pub fn page(self, v: &Viewer) -> Response {
        let page = ErrorPage {
            c: chrome(v, "", "/console/wall"),
            status: self.status.as_u16(),
            message: v.tr.t(self.message_id),
            detail: self.detail,
        };
        (self.status, render(&page)).into_response()
    }
}

/// Shorthand for handlers: `Ok(page)` or an error page.
pub type PageResult = Result<Response, Response>;

/// Maps an error to its page for this viewer.
pub fn fail(v: &Viewer) -> impl FnOnce(PageError) -> Response + '_ {
    move |e| e.page(v)
}

/// A soar error as an error page.
pub fn soar_fail(v: &Viewer) -> impl FnOnce(SoarError) -> Response + '_ {
    move |e| PageError::from(e).page(v)
}

// ---- assets ----

async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind): (&'static [u8], &str) = match file.as_str() {
        "vendor/htmx.min.js" => (
            include_bytes!("../../static/vendor/htmx.min.js"),
            "text/javascript",
        ),
        "console.js" => (include_bytes!("../../static/console.js"), "text/javascript"),
        "console.css" => (include_bytes!("../../static/console.css"), "text/css"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

// ---- login, logout, language ----

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    tr: Tr,
    /// Message id of the error shown, empty for none.
    error: &'static str,
    name: String,
    /// Whether the code field is the one to fill in (the account has TOTP on).
    totp_needed: bool,
}

impl LoginPage {
    fn t(&self, id: &str) -> String {
        self.tr.t(id)
    }
    fn lang(&self) -> &'static str {
        self.tr.lang.code()
    }
    fn other_lang(&self) -> &'static str {
        match self.tr.lang {
            Lang::Vi => "en",
            Lang::En => "vi",
        }
    }
}

async fn login_page(headers: HeaderMap) -> Response {
    render(&LoginPage {
        tr: Tr {
            lang: lang_of(&headers),
        },
        error: "",
        name: String::new(),
        totp_needed: false,
    })
}

#[derive(Deserialize)]
struct LoginForm {
    name: String,
    password: String,
    /// The TOTP code, for accounts with the second factor on.
    #[serde(default)]
    totp: String,
}

async fn login(
    State(st): State<ConsoleState>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    axum::Form(f): axum::Form<LoginForm>,
) -> Response {
    let tr = Tr {
        lang: lang_of(&headers),
    };
    let source = ext
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string());
    let code = Some(f.totp.trim()).filter(|c| !c.is_empty());
    match st
        .soar
        .soar
        .login_with_totp(&f.name, &f.password, code, &source)
        .await
    {
        Ok((user, issued)) => {
            let max_age = (issued.expires_at - st.soar.soar.now())
                .num_seconds()
                .max(0);
            let cookie = crate::soar::auth::session_cookie(
                &issued.secret,
                max_age,
                st.soar.config.secure_cookie,
            );
            let mut resp = (
                StatusCode::SEE_OTHER,
                [
                    (header::SET_COOKIE, cookie),
                    (header::LOCATION, "/console/wall".to_owned()),
                ],
            )
                .into_response();
            // The account's language also becomes the browser's, so that the login page
            // after a logout speaks it too.
            if let Ok(Some(l)) = st.soar.soar.user_language(user.id).await
                && let Ok(v) = lang_cookie(Lang::parse(&l)).parse()
            {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
            resp
        }
        Err(e) => {
            let totp_needed = matches!(&e, SoarError::Denied(m) if m == TOTP_REQUIRED);
            if !matches!(e, SoarError::Denied(_)) {
                tracing::warn!(error = %e, "console login failed");
            }
            let error = if totp_needed {
                "console-login-totp-required"
            } else if code.is_some() {
                "console-login-error-totp"
            } else {
                "console-login-error"
            };
            let page = LoginPage {
                tr,
                error,
                name: f.name,
                totp_needed,
            };
            (StatusCode::UNAUTHORIZED, render(&page)).into_response()
        }
    }
}

async fn logout(State(st): State<ConsoleState>, headers: HeaderMap) -> Response {
    if let Some(secret) = cookie(&headers, crate::soar::auth::SESSION_COOKIE)
        && let Err(e) = st.soar.soar.revoke(secret.trim()).await
    {
        tracing::warn!(error = %e, "console logout: session not revoked");
    }
    let clear = crate::soar::auth::session_cookie("", 0, st.soar.config.secure_cookie);
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, clear),
            (header::LOCATION, "/console/login".to_owned()),
        ],
    )
        .into_response()
}

#[derive(Deserialize)]
struct LangQuery {
    to: String,
    #[serde(default)]
    back: String,
}

/// Sets the language cookie (one year), stores the choice on the account of a logged-in user,
/// and goes back to a console page.
async fn set_lang(
    State(st): State<ConsoleState>,
    user: Result<AuthUser, crate::soar::api::ApiError>,
    Query(q): Query<LangQuery>,
) -> Response {
    let lang = Lang::parse(&q.to);
    if let Ok(u) = user
        && let Err(e) = st
            .soar
            .soar
            .set_user_language(&u.actor(), u.user.id, lang.code())
            .await
    {
        tracing::warn!(error = %e, "language not stored on the account");
    }
    // Only local console paths, so that the switch cannot be used as an open redirect.
    let back = if q.back.starts_with("/console/") && !q.back.starts_with("//") {
        q.back
    } else {
        "/console/wall".to_owned()
    };
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, lang_cookie(lang)),
            (header::LOCATION, back),
        ],
    )
        .into_response()
}

/// Percent-encodes a query value.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// CSS class of a severity.
pub fn sev_class(s: canh_soar::Severity) -> &'static str {
    s.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoding_escapes_everything_but_unreserved() {
        assert_eq!(url_encode("host.name:\"a b\""), "host.name%3A%22a%20b%22");
        assert_eq!(url_encode("Tấn"), "T%E1%BA%A5n");
    }

    /// WCAG 2 relative luminance of `#rrggbb`.
    fn luminance(hex: &str) -> f64 {
        let h = hex.trim_start_matches('#');
        let c = |i: usize| {
            let v = f64::from(u8::from_str_radix(&h[i..i + 2], 16).unwrap()) / 255.0;
            if v <= 0.039_28 {
                v / 12.92
            } else {
                ((v + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * c(0) + 0.7152 * c(2) + 0.0722 * c(4)
    }

    fn contrast(a: &str, b: &str) -> f64 {
        let (x, y) = (luminance(a), luminance(b));
        (x.max(y) + 0.05) / (x.min(y) + 0.05)
    }

    #[test]
    fn dark_theme_text_meets_wcag_aa_contrast() {
        let css = include_str!("../../static/console.css");
        let var = |name: &str| -> String {
            let key = format!("--{name}: ");
            let at = css.find(&key).unwrap_or_else(|| panic!("no --{name}")) + key.len();
            css[at..at + 7].to_owned()
        };
        assert!((contrast("#000000", "#ffffff") - 21.0).abs() < 1e-9);
        // Page, panel, form controls / list items, header and code blocks, the current row.
        let backgrounds = [
            var("bg"),
            var("panel"),
            "#21262d".into(),
            "#010409".into(),
            "#1f2937".into(),
        ];
        for fg in [
            "text",
            "muted",
            "link",
            "emergency",
            "high",
            "medium",
            "ok",
            "low",
        ] {
            for bg in &backgrounds {
                let r = contrast(&var(fg), bg);
                assert!(r >= 4.5, "--{fg} on {bg}: {r:.2}");
            }
        }
        // Badges: black on the severity colours; white on the active tab and primary buttons.
        for bg in ["low", "medium", "high", "emergency", "ok", "focus"] {
            let r = contrast("#000000", &var(bg));
            assert!(r >= 4.5, "black on --{bg}: {r:.2}");
        }
        for bg in ["#1f6feb", "#238636", "#8b949e"] {
            let fg = if bg == "#8b949e" {
                "#000000"
            } else {
                "#ffffff"
            };
            let r = contrast(fg, bg);
            assert!(r >= 4.5, "{fg} on {bg}: {r:.2}");
            assert!(css.contains(bg), "{bg} no longer used");
        }
    }

    #[test]
    fn the_language_cookie_is_read() {
        let mut h = HeaderMap::new();
        assert_eq!(lang_of(&h), Lang::Vi);
        h.insert(header::COOKIE, "a=b; canh_lang=en".parse().unwrap());
        assert_eq!(lang_of(&h), Lang::En);
    }
}
