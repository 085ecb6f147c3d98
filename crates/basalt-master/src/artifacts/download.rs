//! Downloads: `GET /artifacts/NAME` (and `HEAD`), read-only and without a token — workers,
//! QEMU and U-Boot fetch job URLs with no credentials — served only on the listener the admin
//! configures (`--artifacts-http`), never on the API's unless it is the same address.
//!
//! Answers carry `Content-Length`, `ETag` (the content's SHA-256, quoted), `Accept-Ranges:
//! bytes`; a `Range: bytes=A-B` / `A-` / `-N` request gets 206 with `Content-Range`, one out
//! of the file 416; several ranges at once are answered with the whole file (200), which
//! RFC 9110 allows. `If-Range` with another ETag gets the whole file, `If-None-Match` with
//! this one 304. The body is streamed from the file in 64 KiB reads.
//!
//! Written here rather than with `tower-http`'s `ServeFile`: that one opens a path and sets
//! no content ETag, while the store resolves a name to an already opened blob whose ETag is
//! known (so a replace between the lookup and the read cannot pair one ETag with other bytes).

use super::{ArtifactName, Artifacts};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// The bytes of one read of the file while streaming.
const READ_CHUNK: usize = 64 * 1024;

/// The download routes (`/artifacts/{*name}`), for the artifacts listener.
pub fn router(store: Arc<Artifacts>) -> Router {
    Router::new()
        .route("/artifacts/{*name}", get(download))
        .with_state(store)
}

/// Which part of a file a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Part {
    Whole,
    /// Bytes `start..=end`.
    Range(u64, u64),
    /// Nothing of the file is in the range asked: 416.
    Unsatisfiable,
}

/// The part a `Range` header asks of a file of `size` bytes. A header that is not a single
/// byte range (another unit, several ranges, a syntax error) is ignored, as RFC 9110 lets a
/// server do: the whole file is served.
fn part(range: Option<&str>, size: u64) -> Part {
    let Some(spec) = range.and_then(|r| r.trim().strip_prefix("bytes=")) else {
        return Part::Whole;
    };
    if spec.contains(',') {
        return Part::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Part::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let number = |s: &str| s.parse::<u64>().ok();
    match (first.is_empty(), last.is_empty()) {
        // `-N`: the last N bytes
        (true, false) => match number(last) {
            Some(0) => Part::Unsatisfiable,
            Some(_) if size == 0 => Part::Unsatisfiable,
            Some(n) => Part::Range(size.saturating_sub(n), size - 1),
            None => Part::Whole,
        },
        // `A-`: from A to the end
        (false, true) => match number(first) {
            Some(a) if a >= size => Part::Unsatisfiable,
            Some(a) => Part::Range(a, size - 1),
            None => Part::Whole,
        },
        // `A-B`
        (false, false) => match (number(first), number(last)) {
            (Some(a), Some(b)) if a > b => Part::Whole,
            (Some(a), Some(_)) if a >= size => Part::Unsatisfiable,
            (Some(a), Some(b)) => Part::Range(a, b.min(size - 1)),
            _ => Part::Whole,
        },
        (true, true) => Part::Whole,
    }
}

/// True when an `If-None-Match` / `If-Range` value names `etag` (`*` names any).
fn matches(value: Option<&HeaderValue>, etag: &str) -> Option<bool> {
    let v = value?.to_str().ok()?;
    Some(
        v.split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t == etag),
    )
}

fn not_found(name: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("no artifact {name:?}\n"),
    )
        .into_response()
}

async fn download(
    State(store): State<Arc<Artifacts>>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Ok(name) = ArtifactName::new(&path) else {
        return not_found(&path);
    };
    let Some((artifact, mut file)) = store.open_blob(&name).await else {
        return not_found(&path);
    };
    let size = artifact.size;
    let etag = format!("\"{}\"", artifact.sha256);
    let common = [
        (header::ETAG, etag.clone()),
        (header::ACCEPT_RANGES, "bytes".to_string()),
        (header::CONTENT_TYPE, "application/octet-stream".to_string()),
    ];
    if matches(headers.get(header::IF_NONE_MATCH), &etag) == Some(true) {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    let mut asked = part(
        headers.get(header::RANGE).and_then(|r| r.to_str().ok()),
        size,
    );
    if matches(headers.get(header::IF_RANGE), &etag) == Some(false) {
        asked = Part::Whole;
    }
    let (status, start, len, content_range) = match asked {
        Part::Whole => (StatusCode::OK, 0, size, None),
        Part::Range(a, b) => (
            StatusCode::PARTIAL_CONTENT,
            a,
            b - a + 1,
            Some(format!("bytes {a}-{b}/{size}")),
        ),
        Part::Unsatisfiable => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [
                    (header::CONTENT_RANGE, format!("bytes */{size}")),
                    (header::ETAG, etag),
                ],
            )
                .into_response();
        }
    };
    if start > 0 {
        if let Err(e) = file.seek(std::io::SeekFrom::Start(start)).await {
            tracing::error!("artifact {name}: {e}");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    }
    let stream = tokio_util::io::ReaderStream::with_capacity(file.take(len), READ_CHUNK);
    let mut response = (status, common, Body::from_stream(stream)).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Some(range) = content_range {
        if let Ok(v) = HeaderValue::from_str(&range) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        assert_eq!(part(None, 100), Part::Whole);
        assert_eq!(part(Some("bytes=0-9"), 100), Part::Range(0, 9));
        assert_eq!(part(Some("bytes=90-"), 100), Part::Range(90, 99));
        assert_eq!(part(Some("bytes=-10"), 100), Part::Range(90, 99));
        assert_eq!(part(Some("bytes=-500"), 100), Part::Range(0, 99));
        assert_eq!(part(Some("bytes=50-500"), 100), Part::Range(50, 99));
        assert_eq!(part(Some("bytes=100-"), 100), Part::Unsatisfiable);
        assert_eq!(part(Some("bytes=100-200"), 100), Part::Unsatisfiable);
        assert_eq!(part(Some("bytes=-0"), 100), Part::Unsatisfiable);
        assert_eq!(part(Some("bytes=0-0"), 0), Part::Unsatisfiable);
        assert_eq!(part(Some("bytes=-5"), 0), Part::Unsatisfiable);
        // ignored: the whole file
        for ignored in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=9-1",
            "bytes=x-",
            "bytes=-",
        ] {
            assert_eq!(part(Some(ignored), 100), Part::Whole, "{ignored}");
        }
    }

    #[test]
    fn etags_are_matched() {
        let v = HeaderValue::from_static("\"abc\", W/\"def\"");
        assert_eq!(matches(Some(&v), "\"def\""), Some(true));
        assert_eq!(matches(Some(&v), "\"xyz\""), Some(false));
        assert_eq!(matches(None, "\"abc\""), None);
    }
}
