//! `download-retry` with its handler: `http-download` for http(s) URLs, `file-download` for
//! `file://` URLs; extra image overlays are downloaded as nested `download-retry` actions and
//! applied by `append-overlays`.

use crate::job::ImageRef;
use crate::pipeline::build::{Builder, PipelineError, Scope};
use crate::pipeline::{ActionKind, ActionNode};
use crate::yaml::Node;

/// URL schemes basalt downloads from.
pub const SCHEMES: &[&str] = &["http", "https", "file"];

/// The scheme of a URL (`http`, `file`, ...), lower-cased.
pub fn scheme(url: &str) -> Option<String> {
    let (scheme, _) = url.split_once("://")?;
    Some(scheme.to_ascii_lowercase())
}

fn handler(
    b: &Builder<'_>,
    s: &Scope<'_>,
    key: &str,
    url: &str,
) -> Result<ActionKind, PipelineError> {
    match scheme(url).as_deref() {
        Some("http" | "https") => Ok(ActionKind::HttpDownload {
            key: key.into(),
            url: url.into(),
        }),
        Some("file") => Ok(ActionKind::FileDownload {
            key: key.into(),
            url: url.into(),
        }),
        Some(other) => Err(s.error(
            b,
            format!(
                "{key}: unsupported URL scheme '{other}' in '{url}'; basalt downloads {}",
                SCHEMES.join(", ")
            ),
        )),
        None => Err(s.error(
            b,
            format!("{key}: '{url}' is not a URL (expected scheme://...)"),
        )),
    }
}

/// Adds `download-retry` for image `key` to `parent`.
pub(crate) fn download(
    b: &Builder<'_>,
    s: &Scope<'_>,
    parent: &mut ActionNode,
    key: &str,
    img: &ImageRef,
) -> Result<(), PipelineError> {
    let kind = handler(b, s, key, &img.url)?;
    let retry = b.child(s, parent, ActionKind::DownloadRetry { key: key.into() });
    b.child(s, retry, kind);
    if let Some(overlays) = img.overlays.as_ref().and_then(Node::as_map) {
        for (k, v) in overlays {
            let Some(name) = k.as_str().filter(|n| *n != "lava") else {
                continue;
            };
            let url = v.get("url").and_then(Node::as_str).unwrap_or_default();
            let sub_key = format!("{key}.{name}");
            let kind = handler(b, s, &sub_key, url)?;
            let nested = b.child(s, retry, ActionKind::DownloadRetry { key: sub_key });
            b.child(s, nested, kind);
        }
        if !overlays.is_empty() {
            b.child(s, retry, ActionKind::AppendOverlays { key: key.into() });
        }
    }
    Ok(())
}
