//! The master's web pages: jobs, a job (definition, pipeline, results, metadata, the live log
//! viewer), devices and device types, workers, MultiNode groups and reservations, served by
//! `basalt-master` itself on the API's address. Templates ([minijinja], auto-escaped HTML),
//! the stylesheet and the viewer's script are embedded in the binary (`assets/`); nothing is
//! built at run time. The lists, the job page and the raw log work without JavaScript (plain
//! links and GET forms); the log viewer needs it.
//!
//! Who may see what is the API's rule ([`crate::http`]): a user's API token, given once on the
//! sign-in page and kept in an `HttpOnly`, `SameSite=Strict` cookie, or `Authorization: Token`;
//! without one, pages are served only when the master serves anonymous reads
//! (`--anonymous-read`). Actions (cancel a job, set a device's health) are POST forms carrying
//! the session's CSRF token ([`auth`]) and need the permission the API asks for them.
//!
//! The log viewer reads the log through a line index ([`logindex`]) and its own record reader
//! ([`record`]); its endpoints are under `/jobs/ID/log/` ([`logview`]), its live stream is
//! Server-Sent Events woken by the engine's [`crate::logs::LogSignal`].

pub mod auth;
pub mod logindex;
pub mod logview;
pub mod pages;
pub mod record;
pub mod synthetic;

use crate::engine::Handle;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

/// What every page handler gets: the engine's handle, the log indexes, the templates and the
/// key of the CSRF tokens.
#[derive(Clone)]
pub struct Web {
    pub handle: Handle,
    pub indexes: Arc<logindex::IndexCache>,
    templates: Arc<minijinja::Environment<'static>>,
    csrf_key: Arc<[u8; 32]>,
}

/// The templates, by name (embedded).
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../assets/base.html")),
    ("jobs.html", include_str!("../assets/jobs.html")),
    ("jobs_table.html", include_str!("../assets/jobs_table.html")),
    ("job.html", include_str!("../assets/job.html")),
    ("devices.html", include_str!("../assets/devices.html")),
    ("device.html", include_str!("../assets/device.html")),
    (
        "device_types.html",
        include_str!("../assets/device_types.html"),
    ),
    ("workers.html", include_str!("../assets/workers.html")),
    ("groups.html", include_str!("../assets/groups.html")),
    (
        "reservations.html",
        include_str!("../assets/reservations.html"),
    ),
    ("login.html", include_str!("../assets/login.html")),
];

const CSS: &str = include_str!("../assets/basalt.css");
const LOG_JS: &str = include_str!("../assets/log.js");

/// Why the web could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("web templates: {0}")]
    Template(#[from] minijinja::Error),
    #[error("no random bytes from the system: {0}")]
    Random(getrandom::Error),
}

impl Web {
    /// The pages' state on the engine's handle; the CSRF key is new at each start (a form
    /// older than the master is refused).
    pub fn new(handle: Handle) -> Result<Web, WebError> {
        let mut env = minijinja::Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)?;
        }
        // a path segment or query value (minijinja's own needs a crate feature)
        env.add_filter("urlencode", |s: String| pages::encode_component(&s));
        let mut key = [0u8; 32];
        getrandom::getrandom(&mut key).map_err(WebError::Random)?;
        Ok(Web {
            handle,
            indexes: Arc::default(),
            templates: Arc::new(env),
            csrf_key: Arc::new(key),
        })
    }

    /// Renders template `name` with `ctx`.
    fn render(&self, name: &str, ctx: serde_json::Value) -> Result<Html<String>, PageError> {
        let t = self
            .templates
            .get_template(name)
            .map_err(|e| PageError::Internal(format!("template {name}: {e}")))?;
        t.render(ctx)
            .map(Html)
            .map_err(|e| PageError::Internal(format!("template {name}: {e:#}")))
    }
}

/// The pages' routes (at the root of the API's address; the API stays under `/api/v0.2/`).
pub fn router(web: Web) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/jobs") }))
        .route("/static/basalt.css", get(css))
        .route("/static/log.js", get(js))
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/jobs", get(pages::jobs))
        .route("/jobs/{id}", get(pages::job))
        .route("/jobs/{id}/raw", get(pages::raw_log))
        .route("/jobs/{id}/junit.xml", get(pages::junit))
        .route("/jobs/{id}/cancel", post(pages::cancel))
        .route("/jobs/{id}/log/meta", get(logview::meta))
        .route("/jobs/{id}/log/levels", get(logview::levels))
        .route("/jobs/{id}/log/lines", get(logview::lines))
        .route("/jobs/{id}/log/stream", get(logview::stream))
        .route("/devices", get(pages::devices))
        .route("/devices/{hostname}", get(pages::device))
        .route("/devices/{hostname}/health", post(pages::set_health))
        .route("/device-types", get(pages::device_types))
        .route("/device-types/{name}", get(pages::device_type))
        .route("/workers", get(pages::workers))
        .route("/multinode", get(pages::groups))
        .route("/multinode/{group}", get(pages::group))
        .route("/reservations", get(pages::reservations))
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .with_state(web)
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            ),
        ],
        body,
    )
        .into_response()
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", LOG_JS)
}

/// Why a page could not be shown: an HTML page with the status (a page that needs a user
/// without one sends the browser to the sign-in page).
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// No user and no anonymous reads: sign in, then come back to `next`.
    #[error("sign in to see this page")]
    SignIn { next: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Internal(String),
}

impl PageError {
    fn status(&self) -> StatusCode {
        match self {
            PageError::SignIn { .. } => StatusCode::SEE_OTHER,
            PageError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PageError::Forbidden(_) => StatusCode::FORBIDDEN,
            PageError::NotFound(_) => StatusCode::NOT_FOUND,
            PageError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(e: crate::store::StoreError) -> PageError {
        PageError::Internal(e.to_string())
    }
}

impl From<crate::logs::LogError> for PageError {
    fn from(e: crate::logs::LogError) -> PageError {
        PageError::Internal(e.to_string())
    }
}

impl From<crate::engine::EngineError> for PageError {
    fn from(e: crate::engine::EngineError) -> PageError {
        match e {
            crate::engine::EngineError::NotFound(m) => PageError::NotFound(m),
            crate::engine::EngineError::Invalid(m) => PageError::BadRequest(m),
            e => PageError::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if let PageError::SignIn { next } = &self {
            let to = format!("/login?next={}", pages::encode(next));
            return Redirect::to(&to).into_response();
        }
        if let PageError::Internal(why) = &self {
            tracing::error!("web: {why}");
        }
        let status = self.status();
        // the error page is plain HTML, the message escaped
        let body = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{code}</title>\
             <link rel=\"stylesheet\" href=\"/static/basalt.css\"></head><body><main>\
             <h1>{code}</h1><p class=\"error\">{msg}</p><p><a href=\"/jobs\">Jobs</a></p>\
             </main></body></html>",
            code = status,
            msg = pages::escape(&self.to_string()),
        );
        (status, Html(body)).into_response()
    }
}

/// Why a request of the log viewer failed: JSON `{"message"}` with the status.
#[derive(Debug)]
pub struct DataError(pub PageError);

impl<E: Into<PageError>> From<E> for DataError {
    fn from(e: E) -> DataError {
        DataError(e.into())
    }
}

impl IntoResponse for DataError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            PageError::SignIn { .. } => StatusCode::UNAUTHORIZED,
            e => e.status(),
        };
        if let PageError::Internal(why) = &self.0 {
            tracing::error!("web: {why}");
        }
        (
            status,
            axum::Json(serde_json::json!({ "message": self.0.to_string() })),
        )
            .into_response()
    }
}
