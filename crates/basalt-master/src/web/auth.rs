//! Who is looking at a page, signing in and out, and the CSRF tokens of the pages' forms.
//!
//! A user signs in with their API token (the one `basalt-master token add` made); it is
//! checked against the store and kept in the cookie [`COOKIE`] (`HttpOnly`: no script reads
//! it; `SameSite=Strict`: no other site's page sends it; `Path=/`). Requests may instead carry
//! `Authorization: Token TOKEN`, as the API's. A cookie whose token is no longer valid counts
//! as no cookie (the page offers to sign in again).
//!
//! Every POST form carries a CSRF token: the SHA-256 of a key made at the master's start and
//! the session's API token, so it is tied to the session, cannot be computed without the
//! cookie, and a form from before a restart is refused. With `SameSite=Strict` this is
//! belt and braces. The sign-in form has its own (login CSRF: another site's page must not
//! sign a browser in as someone else): `GET /login` sets a random nonce in the cookie
//! [`LOGIN_COOKIE`] (`SameSite=Strict`, `Path=/login`, an hour) and puts its keyed hash in
//! the form; `POST /login` needs both to match.

use super::{PageError, Web};
use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{AppendHeaders, IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

/// The session cookie's name.
pub const COOKIE: &str = "basalt_token";

/// The sign-in form's nonce cookie (see the module doc).
pub const LOGIN_COOKIE: &str = "basalt_login";

/// Whether `a` and `b` are the same, in the same time whatever the bytes (no timing tells
/// how much of a guess matched).
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The user of a request, if any.
#[derive(Clone, Debug, Default)]
pub struct Viewer {
    /// The user's name and whether they are an admin.
    pub user: Option<(String, bool)>,
    /// The session's CSRF token (signed-in users only).
    pub csrf: Option<String>,
}

impl Viewer {
    /// The user's name.
    pub fn name(&self) -> Option<&str> {
        self.user.as_ref().map(|(n, _)| n.as_str())
    }

    /// Whether the user is an admin.
    pub fn admin(&self) -> bool {
        self.user.as_ref().is_some_and(|(_, a)| *a)
    }

    /// What every page's template gets about its viewer.
    pub fn context(&self) -> serde_json::Value {
        json!({ "name": self.name(), "admin": self.admin(), "csrf": self.csrf })
    }
}

/// The token of a request: its `Authorization: Token`, else its session cookie; `true` when it
/// came from the header.
fn token_of(headers: &HeaderMap) -> Option<(String, bool)> {
    if let Some(t) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Token "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        return Some((t.to_string(), true));
    }
    cookie(headers, COOKIE).map(|t| (t, false))
}

/// The value of cookie `name`.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

impl Web {
    /// The CSRF token of the session of `token`.
    fn csrf_of(&self, token: &str) -> String {
        self.keyed(b"\0csrf\0", token)
    }

    /// The SHA-256 of the master's key, `purpose` and `value`, in hex.
    fn keyed(&self, purpose: &[u8], value: &str) -> String {
        let mut h = Sha256::new();
        h.update(&self.csrf_key[..]);
        h.update(purpose);
        h.update(value.as_bytes());
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A fresh sign-in form's nonce cookie and the form field that goes with it.
    fn login_nonce(&self) -> Result<(HeaderValue, String), PageError> {
        let mut bytes = [0u8; 16];
        getrandom::getrandom(&mut bytes)
            .map_err(|e| PageError::Internal(format!("random bytes for the sign-in form: {e}")))?;
        let nonce: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let cookie =
            format!("{LOGIN_COOKIE}={nonce}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=3600");
        let value =
            HeaderValue::from_str(&cookie).map_err(|e| PageError::Internal(e.to_string()))?;
        Ok((value, self.keyed(b"\0login\0", &nonce)))
    }

    /// Whether a sign-in form came from this site's `GET /login` in this browser.
    fn login_form_is_ours(&self, headers: &HeaderMap, field: Option<&str>) -> bool {
        match (cookie(headers, LOGIN_COOKIE), field) {
            (Some(nonce), Some(field)) => same_secret(&self.keyed(b"\0login\0", &nonce), field),
            _ => false,
        }
    }

    /// Who makes the request. A token in the header that is not valid is refused; one in the
    /// cookie is forgotten. Without a user, `path` (what was asked for) is where signing in
    /// returns to, unless anonymous reads are on.
    pub fn viewer(&self, headers: &HeaderMap, path: &str) -> Result<Viewer, PageError> {
        let user = match token_of(headers) {
            Some((token, header)) => match self.handle.store.token_user(&token)? {
                Some(u) => Some((u, self.csrf_of(&token))),
                None if header => {
                    return Err(PageError::Forbidden(
                        "the token is not valid: sign in again".into(),
                    ))
                }
                None => None,
            },
            None => None,
        };
        match user {
            Some((user, csrf)) => Ok(Viewer {
                user: Some(user),
                csrf: Some(csrf),
            }),
            None if self.handle.anonymous_read => Ok(Viewer::default()),
            None => Err(PageError::SignIn {
                next: path.to_string(),
            }),
        }
    }

    /// The user of a POST form: signed in, with the session's CSRF token in `csrf`.
    pub fn actor(&self, headers: &HeaderMap, csrf: &str) -> Result<(String, bool), PageError> {
        let Some((token, _)) = token_of(headers) else {
            return Err(PageError::Forbidden("sign in first".into()));
        };
        let user =
            self.handle.store.token_user(&token)?.ok_or_else(|| {
                PageError::Forbidden("the token is not valid: sign in again".into())
            })?;
        if !same_secret(&self.csrf_of(&token), csrf) {
            return Err(PageError::Forbidden(
                "the form is stale or not this site's (CSRF check): reload the page and try again"
                    .into(),
            ));
        }
        Ok(user)
    }
}

/// Where to go after signing in: a path of this site only (no `//host`, no scheme).
pub fn local_path(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.into(),
        _ => "/jobs".into(),
    }
}

#[derive(Deserialize)]
pub(super) struct Next {
    next: Option<String>,
}

/// `GET /login`: the sign-in form, with a fresh nonce cookie.
pub(super) async fn login_form(
    State(web): State<Web>,
    headers: HeaderMap,
    Query(q): Query<Next>,
) -> Result<Response, PageError> {
    let viewer = web.viewer(&headers, "/jobs").unwrap_or_default();
    sign_in_page(
        &web,
        viewer.context(),
        &local_path(q.next.as_deref()),
        None,
        axum::http::StatusCode::OK,
    )
}

/// The sign-in form (with `error` when one was refused), its nonce cookie set.
fn sign_in_page(
    web: &Web,
    viewer: serde_json::Value,
    next: &str,
    error: Option<&str>,
    status: axum::http::StatusCode,
) -> Result<Response, PageError> {
    let (nonce, field) = web.login_nonce()?;
    let page = web.render(
        "login.html",
        json!({ "viewer": viewer, "next": next, "error": error, "login_csrf": field }),
    )?;
    Ok((status, [(header::SET_COOKIE, nonce)], page).into_response())
}

#[derive(Deserialize)]
pub(super) struct SignIn {
    token: String,
    next: Option<String>,
    /// The sign-in form's own CSRF field (see the module doc).
    login_csrf: Option<String>,
}

/// `POST /login` (`token`, `next`, `login_csrf`): a valid token from this site's form sets
/// the session cookie and goes to `next`.
pub(super) async fn login(
    State(web): State<Web>,
    headers: HeaderMap,
    Form(f): Form<SignIn>,
) -> Result<Response, PageError> {
    let token = f.token.trim();
    let next = local_path(f.next.as_deref());
    let refused = |error: &str| {
        sign_in_page(
            &web,
            json!({"name": null}),
            &next,
            Some(error),
            axum::http::StatusCode::FORBIDDEN,
        )
    };
    if !web.login_form_is_ours(&headers, f.login_csrf.as_deref()) {
        return refused(
            "This sign-in form expired or came from another site (CSRF check): sign in again.",
        );
    }
    let valid = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_graphic() && b != b';')
        && web.handle.store.token_user(token)?.is_some();
    if !valid {
        return refused("That token is not valid.");
    }
    let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
    let value = HeaderValue::from_str(&cookie).map_err(|_| {
        PageError::BadRequest("the token has characters a cookie cannot hold".into())
    })?;
    let spent = HeaderValue::from_str(&format!(
        "{LOGIN_COOKIE}=; Path=/login; HttpOnly; SameSite=Strict; Max-Age=0"
    ))
    .map_err(|e| PageError::Internal(e.to_string()))?;
    Ok((
        AppendHeaders([(header::SET_COOKIE, value), (header::SET_COOKIE, spent)]),
        Redirect::to(&next),
    )
        .into_response())
}

#[derive(Deserialize)]
pub(super) struct Csrf {
    csrf: String,
}

/// `POST /logout`: forgets the session cookie.
pub(super) async fn logout(
    State(web): State<Web>,
    headers: HeaderMap,
    Form(f): Form<Csrf>,
) -> Result<Response, PageError> {
    web.actor(&headers, &f.csrf)?;
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    Ok((
        [(
            header::SET_COOKIE,
            HeaderValue::from_str(&cookie).map_err(|e| PageError::Internal(e.to_string()))?,
        )],
        Redirect::to("/login"),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_returns_to_this_site_only() {
        assert_eq!(local_path(Some("/jobs/3")), "/jobs/3");
        for bad in [
            "//evil.example/x",
            "https://evil.example/",
            "jobs",
            "/\\evil",
        ] {
            assert_eq!(local_path(Some(bad)), "/jobs", "{bad}");
        }
        assert_eq!(local_path(None), "/jobs");
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; basalt_token=abc ; b=2"),
        );
        assert_eq!(token_of(&h), Some(("abc".into(), false)));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Token xyz"));
        assert_eq!(token_of(&h), Some(("xyz".into(), true)));
    }
}
