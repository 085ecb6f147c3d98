//! `lava-multinode` (LAVA's `lava_dispatcher/protocols/multinode.py`): the sub-job's facts read
//! from its definition, the [`Coordinator`] the dispatcher reaches the group through, and the
//! calls made on it (group data at start, delayed start, API calls, clear at the end).

use crate::job::Job;
use crate::log::JobLog;
use crate::yaml::Node;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One message (key -> value) and the replies to a wait (sender client -> its message), as
/// the coordinator client has them.
pub use basalt_coordinator::{Message, Replies};

/// LAVA's `LAVA_MULTINODE_SYSTEM_TIMEOUT`: how long `group_data` and `clear_group` may take.
pub const SYSTEM_TIMEOUT: Duration = Duration::from_secs(90);
/// The message id a delayed start waits for (`lava-send lava_start` releases it).
pub const LAVA_START: &str = "lava_start";

/// Why a coordinator call did not succeed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CoordinatorError {
    /// The coordinator refused the request (`{"response": "nack"}`).
    #[error("the coordinator answered nack")]
    Nack,
    /// The request was not satisfied in time.
    #[error("timed out waiting for the coordinator")]
    Timeout,
    /// The coordinator could not be reached or answered nonsense.
    #[error("coordinator: {0}")]
    Io(String),
}

/// The group's coordinator as one client (this sub-job) sees it. The real one speaks LAVA's
/// wire protocol (`basalt_coordinator::Client`); tests use an in-memory one.
#[async_trait::async_trait]
pub trait Coordinator: Send + Sync {
    /// Blocks until every client of the group registered; client name -> role.
    async fn group_data(
        &self,
        group_size: u32,
        timeout: Duration,
    ) -> Result<BTreeMap<String, String>, CoordinatorError>;
    /// Sends `message` under `message_id` to the whole group.
    async fn send(&self, message_id: &str, message: Message) -> Result<(), CoordinatorError>;
    /// Blocks until any client sent `message_id`.
    async fn wait(&self, message_id: &str, timeout: Duration) -> Result<Replies, CoordinatorError>;
    /// Blocks until every client (of `role`, if given) sent `message_id`.
    async fn wait_all(
        &self,
        message_id: &str,
        role: Option<&str>,
        timeout: Duration,
    ) -> Result<Replies, CoordinatorError>;
    /// Blocks until every client of the group called `sync` with `message_id`.
    async fn sync(&self, message_id: &str, timeout: Duration) -> Result<(), CoordinatorError>;
    /// Says this client is done with the group.
    async fn clear_group(&self, group_size: u32) -> Result<(), CoordinatorError>;
}

impl std::fmt::Debug for dyn Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Coordinator")
    }
}

/// Who this sub-job is to the coordinator (LAVA's base message keys: `target_group`, the
/// numeric job id, the role, the worker's host name).
pub use basalt_coordinator::Identity as CoordinatorIdentity;

/// The coordinator at `addr` ("HOST:PORT") for `identity`: LAVA's wire protocol through
/// `basalt_coordinator::Client`, which holds its waits on basalt's coordinator and polls
/// LAVA's.
pub fn connect_coordinator(
    addr: String,
    identity: CoordinatorIdentity,
    token: Option<String>,
) -> Arc<dyn Coordinator> {
    Arc::new(Remote(basalt_coordinator::Client::new(
        addr, identity, token,
    )))
}

/// [`Coordinator`] over the TCP client.
struct Remote(basalt_coordinator::Client);

impl From<basalt_coordinator::ClientError> for CoordinatorError {
    fn from(e: basalt_coordinator::ClientError) -> CoordinatorError {
        use basalt_coordinator::ClientError as E;
        match e {
            E::Nack => CoordinatorError::Nack,
            E::Timeout => CoordinatorError::Timeout,
            e @ (E::TooLong(_) | E::Io(_)) => CoordinatorError::Io(e.to_string()),
        }
    }
}

#[async_trait::async_trait]
impl Coordinator for Remote {
    async fn group_data(
        &self,
        group_size: u32,
        timeout: Duration,
    ) -> Result<BTreeMap<String, String>, CoordinatorError> {
        Ok(self.0.group_data(group_size, timeout).await?)
    }
    async fn send(&self, message_id: &str, message: Message) -> Result<(), CoordinatorError> {
        Ok(self.0.send(message_id, message).await?)
    }
    async fn wait(&self, message_id: &str, timeout: Duration) -> Result<Replies, CoordinatorError> {
        Ok(self.0.wait(message_id, timeout).await?)
    }
    async fn wait_all(
        &self,
        message_id: &str,
        role: Option<&str>,
        timeout: Duration,
    ) -> Result<Replies, CoordinatorError> {
        Ok(self.0.wait_all(message_id, role, timeout).await?)
    }
    async fn sync(&self, message_id: &str, timeout: Duration) -> Result<(), CoordinatorError> {
        Ok(self.0.sync(message_id, timeout).await?)
    }
    async fn clear_group(&self, group_size: u32) -> Result<(), CoordinatorError> {
        Ok(self.0.clear_group(group_size).await?)
    }
}

/// A sub-job's MultiNode facts, read once from `protocols.lava-multinode` (lava-formats.md §4.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    /// `target_group`.
    pub group: String,
    pub role: String,
    pub group_size: u32,
    /// Client (job id) -> role, as the scheduler injected it.
    pub roles: BTreeMap<String, String>,
    /// The protocol's `timeout`: API calls and the delayed start.
    pub timeout: Duration,
    /// `request: lava-start` with `expect_role`: wait for that role's `lava-send lava_start`.
    pub expect_role: Option<String>,
}

/// Why a sub-job's MultiNode block cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("protocols.lava-multinode: {0}")]
pub struct FactsError(pub String);

impl Facts {
    /// The facts of a MultiNode sub-job; `None` for a job that is not one.
    pub fn of(job: &Job) -> Result<Option<Facts>, FactsError> {
        let Some(mn) = &job.multinode else {
            return Ok(None);
        };
        if mn.target_group.is_none() && mn.role.is_none() {
            return Ok(None);
        }
        let err = |s: &str| FactsError(s.to_string());
        let group = mn
            .target_group
            .clone()
            .ok_or_else(|| err("a sub-job needs target_group"))?;
        let role = mn.role.clone().ok_or_else(|| err("a sub-job needs role"))?;
        let n = &mn.node;
        let group_size = n
            .get("group_size")
            .and_then(Node::as_i64)
            .and_then(|v| u32::try_from(v).ok())
            .filter(|v| *v > 0)
            .ok_or_else(|| err("a sub-job needs group_size, a positive number"))?;
        let roles: BTreeMap<String, String> = mn
            .roles
            .iter()
            .filter_map(|(k, v)| v.scalar_text().map(|v| (k.clone(), v)))
            .collect();
        let timeout = mn
            .timeout
            .map(|t| Duration::from_secs(t.secs))
            .unwrap_or(SYSTEM_TIMEOUT);
        let expect_role = n
            .get("expect_role")
            .and_then(Node::scalar_text)
            .filter(|_| n.get("request").and_then(Node::as_str) == Some("lava-start"));
        if expect_role.as_deref() == Some(role.as_str()) {
            return Err(err(
                "expect_role must not match the role declaring lava_start",
            ));
        }
        Ok(Some(Facts {
            group,
            role,
            group_size,
            roles,
            timeout,
            expect_role,
        }))
    }

    /// LAVA's `lava-group` text: `<client>\t<role>` lines, escapes written out (printf expands).
    pub fn group_text(&self) -> String {
        self.roles
            .iter()
            .map(|(c, r)| format!("{c}\\t{r}\\n"))
            .collect()
    }
}

/// A running sub-job's MultiNode side: its facts, its coordinator and the values protocol
/// calls received (LAVA's namespace data of `lava-multinode`: message id -> key -> value).
pub struct MultiNode {
    pub facts: Facts,
    pub coordinator: Arc<dyn Coordinator>,
    pub data: BTreeMap<String, Message>,
}

/// One call of the MultiNode API (test shell or an action's `protocols:`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiCall {
    Send { id: String, message: Message },
    Wait { id: String },
    WaitAll { id: String, role: Option<String> },
    Sync { id: String },
}

impl ApiCall {
    /// The message id.
    pub fn id(&self) -> &str {
        match self {
            ApiCall::Send { id, .. }
            | ApiCall::Wait { id }
            | ApiCall::WaitAll { id, .. }
            | ApiCall::Sync { id } => id,
        }
    }
    /// LAVA's request name (`lava_send`, ...).
    pub fn request(&self) -> &'static str {
        match self {
            ApiCall::Send { .. } => "lava_send",
            ApiCall::Wait { .. } => "lava_wait",
            ApiCall::WaitAll { .. } => "lava_wait_all",
            ApiCall::Sync { .. } => "lava_sync",
        }
    }
}

impl MultiNode {
    /// Makes `call` (waiting at most `timeout`) and logs what was asked and how long it took.
    pub async fn call(
        &self,
        log: &JobLog,
        call: &ApiCall,
        timeout: Duration,
    ) -> Result<Replies, CoordinatorError> {
        let what = match call {
            ApiCall::WaitAll { id, role: Some(r) } => format!("{} '{id}' '{r}'", call.request()),
            ApiCall::Send { id, message } => format!("{} {id} {message:?}", call.request()),
            _ => format!("{} '{}'", call.request(), call.id()),
        };
        log.debug(format!("lava-multinode: requesting {what}"));
        let started = Instant::now();
        let c = &self.coordinator;
        let r = match call {
            ApiCall::Send { id, message } => {
                c.send(id, message.clone()).await.map(|_| Replies::new())
            }
            ApiCall::Wait { id } => c.wait(id, timeout).await,
            ApiCall::WaitAll { id, role } => c.wait_all(id, role.as_deref(), timeout).await,
            ApiCall::Sync { id } => c.sync(id, timeout).await.map(|_| Replies::new()),
        };
        let took = started.elapsed().as_secs_f64();
        match &r {
            Ok(_) => log.info(format!("lava-multinode: {what} answered after {took:.2} s")),
            Err(e) => log.error(format!(
                "lava-multinode: {what} failed after {took:.2} s: {e}"
            )),
        }
        r
    }

    /// At job start: `group_data` (blocks until the whole group is up), then for a delayed
    /// start the wait for `lava_start` from `expect_role`. Returns the group (client -> role).
    pub async fn set_up(&self, log: &JobLog) -> Result<BTreeMap<String, String>, CoordinatorError> {
        let f = &self.facts;
        log.info(format!(
            "lava-multinode: requesting group_data for group {} (size {}, role {})",
            f.group, f.group_size, f.role
        ));
        let started = Instant::now();
        let roles = self
            .coordinator
            .group_data(f.group_size, SYSTEM_TIMEOUT)
            .await
            .inspect_err(|e| log.error(format!("lava-multinode: group_data failed: {e}")))?;
        log.info(format!(
            "lava-multinode: group_data answered after {:.2} s: {roles:?}",
            started.elapsed().as_secs_f64()
        ));
        if let Some(expect) = &f.expect_role {
            log.info(format!(
                "lava-multinode: delayed start: waiting for '{LAVA_START}' from role {expect} (timeout {} s)",
                f.timeout.as_secs()
            ));
            let call = ApiCall::WaitAll {
                id: LAVA_START.into(),
                role: Some(expect.clone()),
            };
            self.call(log, &call, f.timeout).await?;
        }
        Ok(roles)
    }

    /// At job end: `clear_group`, logged.
    pub async fn finalise(&self, log: &JobLog) {
        let started = Instant::now();
        let r = tokio::time::timeout(
            SYSTEM_TIMEOUT,
            self.coordinator.clear_group(self.facts.group_size),
        )
        .await
        .unwrap_or(Err(CoordinatorError::Timeout));
        let took = started.elapsed().as_secs_f64();
        match r {
            Ok(()) => log.info(format!(
                "lava-multinode: clear_group of {} answered after {took:.2} s",
                self.facts.group
            )),
            Err(e) => log.warning(format!(
                "lava-multinode: clear_group of {} failed after {took:.2} s: {e}",
                self.facts.group
            )),
        }
    }
}

/// The console answer to a test-shell API call (lava-formats.md §4.6): `<LAVA_SYNC_COMPLETE>`,
/// `<LAVA_WAIT_COMPLETE 123:k=v ...>`, `<LAVA_WAIT_ALL_COMPLETE ...>` or the `nack` form; `None`
/// for `lava-send`, which gets no answer.
pub fn console_reply(call: &ApiCall, reply: &Result<Replies, CoordinatorError>) -> Option<String> {
    let head = match call {
        ApiCall::Send { .. } => return None,
        ApiCall::Sync { .. } => "LAVA_SYNC_COMPLETE",
        ApiCall::Wait { .. } => "LAVA_WAIT_COMPLETE",
        ApiCall::WaitAll { .. } => "LAVA_WAIT_ALL_COMPLETE",
    };
    Some(match reply {
        Err(_) => format!("<{head} nack>"),
        Ok(replies) => {
            let mut s = format!("<{head}");
            for (sender, msg) in replies {
                for (k, v) in msg {
                    s.push_str(&format!(" {sender}:{k}={v}"));
                }
            }
            s.push('>');
            s
        }
    })
}

/// The values of an action's protocol call its `message` asks for with `$NAME` (LAVA's
/// `collate`): from the first sender's reply, key -> value.
pub fn collate(params: &Message, replies: &Replies) -> Message {
    let Some((_, first)) = replies.iter().next() else {
        return Message::new();
    };
    params
        .iter()
        .filter(|(_, v)| v.starts_with('$'))
        .filter_map(|(k, _)| first.get(k).map(|v| (k.clone(), v.clone())))
        .collect()
}

/// Whether `s` matches `\w+` (message ids and keys of the API).
pub fn is_word(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_replies_are_lavas() {
        let mut r = Replies::new();
        r.insert("123".into(), [("k".to_string(), "v".to_string())].into());
        r.insert("124".into(), [("k".to_string(), "w".to_string())].into());
        let wait = ApiCall::Wait { id: "x".into() };
        assert_eq!(
            console_reply(&wait, &Ok(r.clone())).unwrap(),
            "<LAVA_WAIT_COMPLETE 123:k=v 124:k=w>"
        );
        let all = ApiCall::WaitAll {
            id: "x".into(),
            role: None,
        };
        assert_eq!(
            console_reply(&all, &Err(CoordinatorError::Nack)).unwrap(),
            "<LAVA_WAIT_ALL_COMPLETE nack>"
        );
        let sync = ApiCall::Sync { id: "x".into() };
        assert_eq!(
            console_reply(&sync, &Ok(Replies::new())).unwrap(),
            "<LAVA_SYNC_COMPLETE>"
        );
        let send = ApiCall::Send {
            id: "x".into(),
            message: Message::new(),
        };
        assert!(console_reply(&send, &Ok(Replies::new())).is_none());
        let params: Message = [("k".to_string(), "$K".to_string())].into();
        assert_eq!(collate(&params, &r).get("k").map(String::as_str), Some("v"));
        assert!(is_word("ipv4_a") && !is_word("a-b") && !is_word(""));
    }
}
