//! A client of a LAVA REST API v0.2 (basalt's master, or LAVA itself): what `basalt jobs`,
//! `basalt devices`, `basalt workers` and `basalt device-types` call. `Authorization: Token` on
//! every request when a token is given; pages are followed by their `next` links.

use std::time::Duration;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{url}: HTTP {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
        /// Where in what was sent the server says the error is (its `line` and `column`).
        position: Option<(u64, u64)>,
    },
    #[error("{url}: {message}")]
    Transport { url: String, message: String },
    #[error("{url}: the answer is not what LAVA's API sends: {message}")]
    Shape { url: String, message: String },
}

/// A server and the token to use.
#[derive(Clone, Debug)]
pub struct Client {
    /// `http://HOST:PORT` (the API is below `/api/v0.2/`).
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    /// A client of the API at `url` (requests time out after 30 s).
    pub fn new(url: &str, token: Option<String>) -> Client {
        Client::with_timeout(url, token, Duration::from_secs(30))
    }

    /// A client whose requests may take up to `timeout` (a reservation's exec waits for its
    /// command).
    pub fn with_timeout(url: &str, token: Option<String>, timeout: Duration) -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout(timeout)
            .redirects(0)
            .build();
        Client {
            base: url.trim_end_matches('/').to_string(),
            token,
            agent,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v0.2/{path}", self.base)
    }

    fn request(&self, method: &str, url: &str) -> ureq::Request {
        let r = self.agent.request(method, url);
        match &self.token {
            Some(t) => r.set("Authorization", &format!("Token {t}")),
            None => r,
        }
    }

    fn call(
        &self,
        url: &str,
        r: Result<ureq::Response, ureq::Error>,
    ) -> Result<ureq::Response, ClientError> {
        match r {
            Ok(resp) => Ok(resp),
            Err(ureq::Error::Status(status, resp)) => {
                let body = resp.into_string().unwrap_or_default();
                let json = serde_json::from_str::<serde_json::Value>(&body).ok();
                let field = |k: &str| json.as_ref().and_then(|v| v.get(k));
                let message = field("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
                    .unwrap_or(body);
                let position = field("line")
                    .and_then(|l| l.as_u64())
                    .zip(field("column").and_then(|c| c.as_u64()));
                Err(ClientError::Status {
                    url: url.to_string(),
                    status,
                    message,
                    position,
                })
            }
            Err(e) => Err(ClientError::Transport {
                url: url.to_string(),
                // ureq's message starts with the URL too
                message: e.to_string().replacen(&format!("{url}: "), "", 1),
            }),
        }
    }

    /// `GET` a JSON document.
    pub fn get(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        let url = self.url(path);
        let resp = self.call(&url, self.request("GET", &url).call())?;
        resp.into_json().map_err(|e| ClientError::Shape {
            url,
            message: e.to_string(),
        })
    }

    /// Every result of a paged list (`{count, next, results}`).
    pub fn list(&self, path: &str) -> Result<Vec<serde_json::Value>, ClientError> {
        let mut url = self.url(path);
        let mut all = Vec::new();
        loop {
            let resp = self.call(&url, self.request("GET", &url).call())?;
            let page: serde_json::Value = resp.into_json().map_err(|e| ClientError::Shape {
                url: url.clone(),
                message: e.to_string(),
            })?;
            let results = page
                .get("results")
                .and_then(|r| r.as_array())
                .ok_or_else(|| ClientError::Shape {
                    url: url.clone(),
                    message: "no `results` list".into(),
                })?;
            all.extend(results.iter().cloned());
            match page.get("next").and_then(|n| n.as_str()) {
                Some(next) if !next.is_empty() => url = next.to_string(),
                _ => return Ok(all),
            }
        }
    }

    /// `POST`s a JSON body (the admin writes: workers, device types, devices, dictionaries);
    /// returns the answer (`null` when it has no body, as LAVA's 204s).
    pub fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        self.send("POST", path, Some(body))
    }

    /// `PATCH`es a JSON body: the fields given change.
    pub fn patch(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        self.send("PATCH", path, Some(body))
    }

    /// `DELETE`s an object; returns the answer (`null` when it has no body).
    pub fn delete(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        self.send("DELETE", path, None)
    }

    /// A `GET` whose answer is text (a health check's YAML).
    pub fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let url = self.url(path);
        let resp = self.call(&url, self.request("GET", &url).call())?;
        resp.into_string().map_err(|e| ClientError::Shape {
            url,
            message: e.to_string(),
        })
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, ClientError> {
        let url = self.url(path);
        let r = self.request(method, &url);
        let resp = self.call(
            &url,
            match body {
                Some(b) => r.send_json(b),
                None => r.call(),
            },
        )?;
        let text = resp.into_string().map_err(|e| ClientError::Shape {
            url: url.clone(),
            message: e.to_string(),
        })?;
        if text.trim().is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| ClientError::Shape {
            url,
            message: e.to_string(),
        })
    }

    /// `PUT`s `len` bytes read from `body` as a raw body (an artifact upload), streamed as it
    /// is read; returns the JSON answer. No timeout for the whole request (a large file takes
    /// long), only for each read and write of the connection.
    pub fn put_stream(
        &self,
        path: &str,
        body: impl std::io::Read,
        len: u64,
    ) -> Result<serde_json::Value, ClientError> {
        let url = self.url(path);
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(30))
            .timeout_read(Duration::from_secs(600))
            .timeout_write(Duration::from_secs(600))
            .redirects(0)
            .build();
        let mut r = agent
            .request("PUT", &url)
            .set("Content-Type", "application/octet-stream")
            .set("Content-Length", &len.to_string());
        if let Some(t) = &self.token {
            r = r.set("Authorization", &format!("Token {t}"));
        }
        let resp = self.call(&url, r.send(body))?;
        resp.into_json().map_err(|e| ClientError::Shape {
            url,
            message: e.to_string(),
        })
    }

    /// Submits a job definition; returns its ids (several for MultiNode).
    pub fn submit(&self, definition: &str) -> Result<Vec<u64>, ClientError> {
        let url = self.url("jobs/");
        let body = serde_json::json!({ "definition": definition });
        let resp = self.call(&url, self.request("POST", &url).send_json(body))?;
        let v: serde_json::Value = resp.into_json().map_err(|e| ClientError::Shape {
            url: url.clone(),
            message: e.to_string(),
        })?;
        v.get("job_ids")
            .and_then(|ids| ids.as_array())
            .map(|ids| ids.iter().filter_map(|i| i.as_u64()).collect())
            .ok_or_else(|| ClientError::Shape {
                url,
                message: "no `job_ids`".into(),
            })
    }

    /// Cancels a job.
    pub fn cancel(&self, id: u64) -> Result<(), ClientError> {
        let url = self.url(&format!("jobs/{id}/cancel/"));
        self.call(&url, self.request("GET", &url).call())
            .map(|_| ())
    }

    /// The job's log lines from line `start` on (0-based); `None` when it has none yet.
    pub fn logs(&self, id: u64, start: u64) -> Result<Option<String>, ClientError> {
        let mut url = self.url(&format!("jobs/{id}/logs/"));
        if start > 0 {
            url.push_str(&format!("?start={start}"));
        }
        match self.call(&url, self.request("GET", &url).call()) {
            Ok(resp) => resp
                .into_string()
                .map(Some)
                .map_err(|e| ClientError::Shape {
                    url,
                    message: e.to_string(),
                }),
            Err(ClientError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// One line of LAVA's log (`- {"dt": ..., "lvl": ..., "msg": ...}`): its level and message
/// (print them with [`crate::log::terminal_line`]); `None` when the line is not a log record.
pub fn log_record(line: &str) -> Option<(crate::log::Level, crate::yaml::Node)> {
    let doc = crate::yaml::load(line).ok()?;
    let rec = doc.as_seq()?.first()?;
    let level = crate::log::Level::from_name(rec.get("lvl")?.as_str()?)?;
    Some((level, rec.get("msg")?.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{terminal_line, Level};

    #[test]
    fn log_lines_read_as_level_and_message() {
        let line = r#"- {"dt": "2026-07-01T00:00:00.000000", "lvl": "target", "msg": "/ # uname\u001b[2J"}"#;
        let (level, msg) = log_record(line).unwrap();
        assert_eq!(level, Level::Target);
        let shown = terminal_line(level, &msg).unwrap();
        assert!(shown.starts_with("  | / # uname"), "{shown}");
        assert!(
            !shown.contains('\u{1b}'),
            "escape sequences are not printed raw"
        );
        let result = r#"- {"dt": "2026-07-01T00:00:00.000000", "lvl": "results", "msg": {"case": "uname", "result": "pass"}}"#;
        let (level, msg) = log_record(result).unwrap();
        let shown = terminal_line(level, &msg).unwrap();
        assert!(
            shown.starts_with("result: ") && shown.contains("uname"),
            "{shown}"
        );
        let debug = r#"- {"dt": "x", "lvl": "debug", "msg": "noise"}"#;
        let (level, msg) = log_record(debug).unwrap();
        assert_eq!(terminal_line(level, &msg), None);
        assert!(log_record("not a record").is_none());
        assert!(log_record("- {\"lvl\": \"nonsense\", \"msg\": 1}").is_none());
    }
}
