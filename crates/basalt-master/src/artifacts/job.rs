//! `artifact:NAME` in a job definition: at submission every `url:` of a deploy action whose
//! value is `artifact:NAME` becomes the artifact's download URL, so the worker fetches it as
//! it fetches any URL. An unknown (or expired) name refuses the submission, naming it and
//! where it is. The definition is rewritten in place (only those values change, comments and
//! layout stay); should a value be written in a way that cannot be replaced in place, the
//! document is written anew from its tree instead.

use super::{ArtifactName, Artifacts, SCHEME};
use basalt_model::yaml::{self, Mark, Node, Value};
use std::borrow::Cow;

/// Why a definition's `artifact:` URLs could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    #[error("{at}: unknown artifact {name:?} ({path})")]
    Unknown {
        name: String,
        path: String,
        at: Mark,
    },
    #[error("{at}: {path}: {source}")]
    Name {
        path: String,
        at: Mark,
        source: super::NameError,
    },
    #[error(
        "{at}: {path} is artifact:{name}, but this master has no artifact store (--artifacts-http)"
    )]
    NoStore {
        name: String,
        path: String,
        at: Mark,
    },
}

/// One `url: artifact:NAME` found.
struct Found {
    /// Where its value starts.
    at: Mark,
    /// What was written (`artifact:NAME`).
    value: String,
    /// The download URL.
    url: String,
}

/// The definition with its deploy actions' `url: artifact:NAME` values replaced by the
/// artifacts' URLs (borrowed as it is when it has none). A definition that is not YAML is
/// returned as it is: the submission's validation reports it.
pub fn rewrite<'a>(
    store: Option<&Artifacts>,
    definition: &'a str,
) -> Result<Cow<'a, str>, RewriteError> {
    if !definition.contains(SCHEME) {
        return Ok(Cow::Borrowed(definition));
    }
    let Ok(mut doc) = yaml::load(definition) else {
        return Ok(Cow::Borrowed(definition));
    };
    let mut found = Vec::new();
    if let Some(Value::Seq(actions)) = doc_actions(&mut doc) {
        for (i, action) in actions.iter_mut().enumerate() {
            if let Value::Map(entries) = &mut action.value {
                for (key, value) in entries.iter_mut() {
                    if key.as_str() == Some("deploy") {
                        let path = format!("actions[{i}].deploy");
                        resolve(store, value, &path, &mut found)?;
                    }
                }
            }
        }
    }
    if found.is_empty() {
        return Ok(Cow::Borrowed(definition));
    }
    if let Some(text) = in_place(definition, &found) {
        return Ok(Cow::Owned(text));
    }
    Ok(Cow::Owned(yaml::emit_document(&doc)))
}

/// The document's `actions` value, to change.
fn doc_actions(doc: &mut Node) -> Option<&mut Value> {
    let Value::Map(entries) = &mut doc.value else {
        return None;
    };
    entries
        .iter_mut()
        .find(|(k, _)| k.as_str() == Some("actions"))
        .map(|(_, v)| &mut v.value)
}

/// Replaces every `url: artifact:NAME` below `node` (a deploy action) by the URL, noting each.
fn resolve(
    store: Option<&Artifacts>,
    node: &mut Node,
    path: &str,
    found: &mut Vec<Found>,
) -> Result<(), RewriteError> {
    match &mut node.value {
        Value::Map(entries) => {
            for (key, value) in entries.iter_mut() {
                let key_text = key.scalar_text().unwrap_or_default();
                let here = format!("{path}.{key_text}");
                match (&value.value, key_text.as_str()) {
                    (Value::Str(s), "url") if s.starts_with(SCHEME) => {
                        let written = s.clone();
                        let raw = &written[SCHEME.len()..];
                        let at = value.mark;
                        let name = ArtifactName::new(raw).map_err(|source| RewriteError::Name {
                            path: here.clone(),
                            at,
                            source,
                        })?;
                        let store = store.ok_or_else(|| RewriteError::NoStore {
                            name: name.to_string(),
                            path: here.clone(),
                            at,
                        })?;
                        let url = store.artifact_url(name.as_str()).ok_or_else(|| {
                            RewriteError::Unknown {
                                name: name.to_string(),
                                path: here.clone(),
                                at,
                            }
                        })?;
                        value.value = Value::Str(url.clone());
                        found.push(Found {
                            at,
                            value: written,
                            url,
                        });
                    }
                    _ => resolve(store, value, &here, found)?,
                }
            }
        }
        Value::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                resolve(store, item, &format!("{path}[{i}]"), found)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The definition with each found value replaced where it is written (plain, `'...'` or
/// `"..."` on one line); `None` when one is written otherwise (or the result does not read
/// back with the URLs).
fn in_place(definition: &str, found: &[Found]) -> Option<String> {
    // byte offsets of line starts (marks are 1-based lines and character columns)
    let mut lines = vec![0usize];
    lines.extend(definition.match_indices('\n').map(|(i, _)| i + 1));
    let mut spans = Vec::new();
    for f in found {
        let line_start = *lines.get(usize::try_from(f.at.line).ok()?.checked_sub(1)?)?;
        let line = &definition[line_start..];
        let col = usize::try_from(f.at.col).ok()?.checked_sub(1)?;
        let offset = line_start
            + line
                .char_indices()
                .nth(col)
                .map(|(i, _)| i)
                .unwrap_or(line.len());
        let rest = &definition[offset..];
        let len = [
            f.value.clone(),
            format!("'{}'", f.value),
            format!("\"{}\"", f.value),
        ]
        .into_iter()
        .find(|w| rest.starts_with(w.as_str()))?
        .len();
        spans.push((offset, len, yaml::quote_str(&f.url)));
    }
    spans.sort_by_key(|s| s.0);
    let mut out = String::with_capacity(definition.len() + 64 * spans.len());
    let mut at = 0;
    for (offset, len, with) in &spans {
        if *offset < at {
            return None;
        }
        out.push_str(&definition[at..*offset]);
        out.push_str(with);
        at = offset + len;
    }
    out.push_str(&definition[at..]);
    // what reads back must hold the URLs, and no artifact: value of those left
    let check = yaml::load(&out).ok()?;
    let mut urls = Vec::new();
    collect_urls(&check, &mut urls);
    let all = found.iter().all(|f| urls.contains(&f.url.as_str()))
        && !urls.iter().any(|u| found.iter().any(|f| f.value == *u));
    all.then_some(out)
}

/// Every string value of a `url` key in `node`.
fn collect_urls<'a>(node: &'a Node, out: &mut Vec<&'a str>) {
    match &node.value {
        Value::Map(entries) => {
            for (k, v) in entries {
                match (k.as_str(), v.as_str()) {
                    (Some("url"), Some(s)) => out.push(s),
                    _ => collect_urls(v, out),
                }
            }
        }
        Value::Seq(items) => items.iter().for_each(|i| collect_urls(i, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    async fn store_with(names: &[&str]) -> (tempfile::TempDir, Arc<Artifacts>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Artifacts::open(
            &dir.path().join("a"),
            super::super::Config {
                max_age: Duration::from_secs(60),
                quota: 1 << 20,
                base_url: "http://10.0.0.1:8090".into(),
            },
        )
        .expect("open");
        for n in names {
            let mut up = store
                .begin(ArtifactName::new(n).expect("name"), "ci", false, None, None)
                .await
                .expect("begin");
            up.write(n.as_bytes()).await.expect("write");
            up.finish().await.expect("finish");
        }
        (dir, store)
    }

    const JOB: &str = "\
job_name: boot # a comment
actions:
- deploy:
    to: tmpfs
    images:
      kernel:
        url: artifact:ci/bzImage
      rootfs:
        url: \"artifact:ci/rootfs.ext4\"
        image_arg: -drive file={rootfs}
- boot:
    method: qemu
- test:
    definitions:
    - repository: http://example.invalid/x.git
      url: artifact:not-in-a-deploy
";

    #[tokio::test]
    async fn deploy_urls_are_replaced_in_place() {
        let (_dir, store) = store_with(&["ci/bzImage", "ci/rootfs.ext4"]).await;
        let out = rewrite(Some(&store), JOB).expect("rewrite");
        assert!(
            out.contains("url: http://10.0.0.1:8090/artifacts/ci/bzImage\n"),
            "{out}"
        );
        assert!(
            out.contains("url: http://10.0.0.1:8090/artifacts/ci/rootfs.ext4\n"),
            "{out}"
        );
        assert!(out.contains("# a comment"), "the layout stays: {out}");
        assert!(out.contains("url: artifact:not-in-a-deploy"), "{out}");
    }

    #[tokio::test]
    async fn flow_style_is_replaced_too() {
        let (_dir, store) = store_with(&["k"]).await;
        let job = "actions: [{deploy: {images: {kernel: {url: 'artifact:k'}}}}]\n";
        let out = rewrite(Some(&store), job).expect("rewrite");
        let doc = yaml::load(&out).expect("yaml");
        let url = doc
            .get("actions")
            .and_then(|a| a.as_seq())
            .and_then(|a| a.first());
        let url = url.and_then(|d| d.path(&["deploy", "images", "kernel", "url"]));
        assert_eq!(
            url.and_then(Node::as_str),
            Some("http://10.0.0.1:8090/artifacts/k")
        );
    }

    #[tokio::test]
    async fn unknown_names_are_refused_where_they_are() {
        let (_dir, store) = store_with(&["ci/bzImage"]).await;
        let e = rewrite(Some(&store), JOB).expect_err("rootfs is unknown");
        let msg = e.to_string();
        assert!(
            msg.contains("\"ci/rootfs.ext4\"")
                && msg.contains("actions[0].deploy.images.rootfs.url"),
            "{msg}"
        );
        let e = rewrite(None, JOB).expect_err("no store");
        assert!(e.to_string().contains("--artifacts-http"), "{e}");
        let bad = "actions:\n- deploy:\n    kernel:\n      url: artifact:../x\n";
        let e = rewrite(Some(&store), bad).expect_err("bad name");
        assert!(e.to_string().contains("'.'"), "{e}");
    }

    #[test]
    fn definitions_without_artifacts_are_untouched() {
        let job = "actions:\n- deploy:\n    kernel:\n      url: http://x/k\n";
        assert!(matches!(rewrite(None, job), Ok(Cow::Borrowed(_))));
        assert!(matches!(
            rewrite(None, "artifact: [unclosed"),
            Ok(Cow::Borrowed(_))
        ));
    }
}
