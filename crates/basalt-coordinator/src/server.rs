//! The coordinator's state machine (LAVA's `lava/coordinator/__init__.py`, `LavaCoordinator`):
//! groups, messages, waits and syncs, synchronous and without I/O.
//!
//! [`Coordinator::handle`] answers a request as LAVA's server does for a polling client.
//! [`Coordinator::hold`] is basalt's extension: a request that would be answered `wait` is
//! kept and evaluated again after every change of its group, exactly as a poll would be, and
//! its reply is handed out by [`Coordinator::take_released`] the moment it is not `wait`.

use basalt_proto::coordinator::{Call, Json, Reply, Request};
use indexmap::IndexMap;
use std::collections::HashMap;

/// LAVA's `rpc_delay`: how many polls sub_id 0 is asked to wait in `aggregate`.
const RPC_DELAY: i64 = 2;

/// Names a held request (chosen by the caller, unique while held).
pub type HoldId = u64;

/// One group (LAVA's `self.group` dict), in insertion order as Python dicts are.
#[derive(Debug, Default)]
struct Group {
    count: i64,
    complete: i64,
    rpc_delay: i64,
    /// client name → hostname
    clients: IndexMap<String, String>,
    /// role → its clients, in registration order
    roles: IndexMap<String, Vec<String>>,
    /// message id → client → 1 (waiting) / 0 (collected)
    syncs: IndexMap<String, IndexMap<String, u8>>,
    /// receiving client → message id → what it gets (`{sender: message}`, or a sync's message)
    messages: IndexMap<String, IndexMap<String, Json>>,
    /// message id → the senders and their messages (`waits[id]` and `waits[id]["data"]`)
    waits: IndexMap<String, Waits>,
    /// client → bundle (legacy `aggregate`)
    bundles: IndexMap<String, Json>,
}

#[derive(Debug, Default)]
struct Waits {
    senders: Vec<String>,
    data: Json,
}

/// A request kept until its reply is not `wait`.
#[derive(Debug)]
struct Held {
    id: HoldId,
    request: Request,
}

/// All groups of one coordinator; groups of several masters share it (their names are uuids).
#[derive(Debug, Default)]
pub struct Coordinator {
    groups: HashMap<String, Group>,
    /// group name → its held requests, in arrival order (a change is evaluated against
    /// its own group's only)
    held: HashMap<String, Vec<Held>>,
    /// held id → its group
    held_group: HashMap<HoldId, String>,
    released: Vec<(HoldId, Reply)>,
}

impl Coordinator {
    /// An empty coordinator.
    pub fn new() -> Coordinator {
        Coordinator::default()
    }

    /// Answers one request as LAVA's server does (`dataReceived`), then releases the held
    /// requests of its group that this satisfied.
    pub fn handle(&mut self, request: &Request) -> Reply {
        let reply = self.evaluate(request);
        if let Some(group) = &request.group_name {
            self.release(group.clone());
        }
        reply
    }

    /// basalt's `basalt_hold`: answers now (`Some`) unless the reply would be `wait` for a
    /// holdable call; then the request is kept under `id` (`None`) and its reply comes out of
    /// [`Coordinator::take_released`] once satisfied.
    pub fn hold(&mut self, id: HoldId, request: Request) -> Option<Reply> {
        let reply = self.evaluate(&request);
        let group = request.group_name.clone();
        let kept = match (&reply, &group) {
            (Reply::Wait, Some(g)) if request.holdable() => {
                self.held_group.insert(id, g.clone());
                self.held
                    .entry(g.clone())
                    .or_default()
                    .push(Held { id, request });
                true
            }
            _ => false,
        };
        if let Some(g) = group {
            self.release(g);
        }
        // the release above may already have answered it
        if kept {
            if let Some(pos) = self.released.iter().position(|(i, _)| *i == id) {
                return Some(self.released.remove(pos).1);
            }
            None
        } else {
            Some(reply)
        }
    }

    /// Drops a held request (its client left, or its hold timed out). `false` if it is not
    /// held (any more): its reply is then among the released ones.
    pub fn forget(&mut self, id: HoldId) -> bool {
        let Some(group) = self.held_group.remove(&id) else {
            return false;
        };
        if let Some(list) = self.held.get_mut(&group) {
            list.retain(|h| h.id != id);
            if list.is_empty() {
                self.held.remove(&group);
            }
        }
        true
    }

    /// The held requests answered since the last call, with their replies.
    pub fn take_released(&mut self) -> Vec<(HoldId, Reply)> {
        std::mem::take(&mut self.released)
    }

    /// How many requests are held.
    pub fn held(&self) -> usize {
        self.held_group.len()
    }

    /// Whether a group exists (it is deleted once all its clients cleared it).
    pub fn has_group(&self, name: &str) -> bool {
        self.groups.contains_key(name)
    }

    /// Evaluates the held requests of `group` again until none is released any more (each
    /// released one may change the state, as a sync's collection does).
    fn release(&mut self, group: String) {
        let Some(mut list) = self.held.remove(&group) else {
            return;
        };
        loop {
            let mut changed = false;
            let mut i = 0;
            while i < list.len() {
                let reply = self.evaluate(&list[i].request);
                if reply == Reply::Wait {
                    i += 1;
                } else {
                    let h = list.remove(i);
                    self.held_group.remove(&h.id);
                    self.released.push((h.id, reply));
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        if !list.is_empty() {
            self.held.insert(group, list);
        }
    }

    /// LAVA's `dataReceived`, for one request.
    fn evaluate(&mut self, req: &Request) -> Reply {
        if matches!(&req.call, Call::Unknown(r) if r.is_empty()) {
            return Reply::Nack; // no "request" key
        }
        let Some((client, group_name)) = self.update_data(req) else {
            return Reply::Nack;
        };
        let Some(group) = self.groups.get_mut(&group_name) else {
            return Reply::Nack;
        };
        match &req.call {
            Call::GroupData => group_data(group),
            Call::ClearGroup => {
                group.complete += 1;
                if group.clients.len() as i64 <= group.complete {
                    self.groups.remove(&group_name);
                }
                Reply::Ack
            }
            Call::Aggregate { bundle, sub_id } => aggregate(group, &client, bundle, sub_id),
            Call::LavaSync {
                message_id,
                message,
            } => lava_sync(group, &client, message_id, message),
            Call::LavaWaitAll {
                message_id,
                waitrole,
            } => lava_wait_all(group, &client, req.role.as_deref(), message_id, waitrole),
            Call::LavaWait { message_id } => {
                match group.messages.get(&client).and_then(|m| m.get(message_id)) {
                    Some(m) => Reply::Message(m.clone()),
                    None => Reply::Wait,
                }
            }
            Call::LavaSend {
                message_id,
                message,
            } => lava_send(group, &client, message_id, message),
            Call::Complete => Reply::Close,
            Call::Unknown(_) => Reply::Nack,
        }
    }

    /// LAVA's `_updateData`: finds (or auto-registers, with `group_size`) the group and
    /// registers the client with its role. `None`: refused (LAVA's server would nack, or
    /// crash on a missing key).
    fn update_data(&mut self, req: &Request) -> Option<(String, String)> {
        let client = req.client_name.clone().filter(|c| !c.is_empty())?;
        let name = req.group_name.clone().filter(|g| !g.is_empty())?;
        if !self.groups.contains_key(&name) {
            let size = req.group_size.filter(|s| *s != 0)?;
            tracing::info!(group = %name, size, "new group");
            self.groups.insert(
                name.clone(),
                Group {
                    count: size,
                    rpc_delay: RPC_DELAY,
                    ..Group::default()
                },
            );
        }
        let group = self.groups.get_mut(&name)?;
        if !group.clients.contains_key(&client) {
            let hostname = req.hostname.clone()?;
            let role = req.role.clone()?;
            group.clients.insert(client.clone(), hostname);
            group.roles.entry(role).or_default().push(client.clone());
        }
        Some((client, name))
    }
}

/// `_setGroupData`: `wait` until `count` clients registered, then client → role.
fn group_data(group: &Group) -> Reply {
    if group.clients.len() as i64 != group.count {
        return Reply::Wait;
    }
    let roles = group
        .roles
        .iter()
        .flat_map(|(role, clients)| clients.iter().map(move |c| (c.clone(), role.clone())))
        .collect();
    Reply::GroupData(roles)
}

/// `_sendMessage`: what `client` received under `id`, or `nack`.
fn send_message(group: &Group, client: &str, id: &str) -> Reply {
    match group.messages.get(client).and_then(|m| m.get(id)) {
        Some(m) => Reply::Message(m.clone()),
        None => Reply::Nack,
    }
}

/// `lavaSync`: registered and `wait` until all `count` clients called it; then each gets
/// the message (the id when none), and the sync is cleared for reuse once all collected.
fn lava_sync(group: &mut Group, client: &str, id: &str, message: &Json) -> Reply {
    let message = if message.is_truthy() {
        message.clone()
    } else {
        Json::str(id)
    };
    let count = group.count;
    let syncs = group.syncs.entry(id.to_string()).or_default();
    let ready = syncs.len() as i64 >= count;
    let received = group.messages.entry(client.to_string()).or_default();
    received.insert(id.to_string(), message);
    if !ready {
        syncs.insert(client.to_string(), 1);
        return Reply::Wait;
    }
    let reply = send_message(group, client, id);
    let syncs = group.syncs.entry(id.to_string()).or_default();
    syncs.insert(client.to_string(), 0);
    if syncs.values().all(|v| *v == 0) {
        syncs.clear();
    }
    reply
}

/// `lavaWaitAll`: without a role, `nack` before anyone sent the id, `wait` until every client
/// did; with `waitrole`, LAVA's loop over the caller's role (answered once the first client
/// of `waitrole` sent it).
fn lava_wait_all(
    group: &Group,
    client: &str,
    own_role: Option<&str>,
    id: &str,
    waitrole: &Option<String>,
) -> Reply {
    if let Some(waitrole) = waitrole {
        // LAVA raises KeyError (and its server dies) on an unknown role: nack instead
        let Some(expected) = group.roles.get(waitrole) else {
            return Reply::Nack;
        };
        let expected = expected.first();
        let Some(own) = own_role.and_then(|r| group.roles.get(r)) else {
            return Reply::Nack;
        };
        for c in own {
            let Some(waits) = group.waits.get(id) else {
                return Reply::Wait;
            };
            if let Some(e) = expected {
                if waits.senders.contains(e) {
                    return send_message(group, client, id);
                }
            }
            if !waits.senders.contains(c) {
                return Reply::Wait;
            }
        }
    } else {
        for c in group.clients.keys() {
            let Some(waits) = group.waits.get(id) else {
                return Reply::Nack;
            };
            if !waits.senders.contains(c) {
                return Reply::Wait;
            }
        }
    }
    // `_sendWaitMessage`
    match group.waits.get(id) {
        Some(w) if w.senders.iter().any(|s| s == client) => Reply::Message(w.data.clone()),
        _ => Reply::Nack,
    }
}

/// `lavaSend`: the message is stored for the sender and broadcast to every registered
/// client under `id` (`{sender: message}`), and recorded for lava_wait_all.
fn lava_send(group: &mut Group, client: &str, id: &str, message: &Json) -> Reply {
    let receivers: Vec<String> = std::iter::once(client.to_string())
        .chain(group.clients.keys().cloned())
        .collect();
    for r in receivers {
        group
            .messages
            .entry(r)
            .or_default()
            .entry(id.to_string())
            .or_default()
            .set(client, message.clone());
    }
    let waits = group.waits.entry(id.to_string()).or_default();
    if !waits.senders.iter().any(|s| s == client) {
        waits.senders.push(client.to_string());
    }
    waits.data.set(client, message.clone());
    Reply::Ack
}

/// `_aggregateBundle` (legacy): sub_id `*.0` waits for every bundle, then gets them all.
fn aggregate(group: &mut Group, client: &str, bundle: &Option<Json>, sub_id: &Json) -> Reply {
    let Some(bundle) = bundle else {
        return Reply::Nack;
    };
    let Some(sub_id) = sub_id.as_str() else {
        return Reply::Nack;
    };
    group.bundles.insert(client.to_string(), bundle.clone());
    if !sub_id.ends_with(".0") {
        return Reply::Ack;
    }
    if (group.bundles.len() as i64) < group.count {
        group.rpc_delay = RPC_DELAY;
        return Reply::Wait;
    }
    if group.rpc_delay > 0 {
        group.rpc_delay -= 1;
        return Reply::Wait;
    }
    group.rpc_delay = RPC_DELAY;
    let bundles = Json::Object(
        group
            .bundles
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    );
    Reply::Message(Json::object([("bundle", bundles)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(client: &str, role: &str, request: &str, extra: &str) -> Request {
        let text = format!(
            r#"{{"port": 3079, "blocksize": 4096, "poll_delay": 1, "host": "localhost",
                "hostname": "h{client}", "client_name": "{client}", "group_name": "g",
                "role": "{role}", "request": "{request}", "group_size": 3{extra}}}"#
        );
        Request::from_json(&Json::parse(text.as_bytes()).unwrap())
    }

    fn msg(r: &Reply) -> String {
        r.to_json().unwrap().dumps()
    }

    #[test]
    fn group_data_waits_for_everyone() {
        let mut c = Coordinator::new();
        assert_eq!(c.handle(&req("1", "server", "group_data", "")), Reply::Wait);
        assert_eq!(c.handle(&req("2", "client", "group_data", "")), Reply::Wait);
        assert_eq!(
            c.handle(&req("3", "server", "group_data", "")),
            Reply::GroupData(vec![
                ("1".into(), "server".into()),
                ("3".into(), "server".into()),
                ("2".into(), "client".into()),
            ])
        );
    }

    #[test]
    fn a_new_group_needs_its_size() {
        let mut c = Coordinator::new();
        let mut r = req("1", "server", "group_data", "");
        r.group_size = None;
        assert_eq!(c.handle(&r), Reply::Nack);
        r.group_size = Some(0);
        assert_eq!(c.handle(&r), Reply::Nack);
        assert!(!c.has_group("g"));
    }

    #[test]
    fn wait_all_nacks_before_any_send_then_waits_for_all() {
        let mut c = Coordinator::new();
        for (n, role) in [("1", "server"), ("2", "client"), ("3", "client")] {
            c.handle(&req(n, role, "group_data", ""));
        }
        let wa = req("2", "client", "lava_wait_all", r#", "messageID": "m""#);
        assert_eq!(c.handle(&wa), Reply::Nack);
        let send = |n: &str| {
            req(
                n,
                "x",
                "lava_send",
                r#", "messageID": "m", "message": {"k": "v"}"#,
            )
        };
        assert_eq!(c.handle(&send("1")), Reply::Ack);
        assert_eq!(c.handle(&wa), Reply::Wait);
        c.handle(&send("2"));
        c.handle(&send("3"));
        assert_eq!(
            msg(&c.handle(&wa)),
            r#"{"response": "ack", "message": {"1": {"k": "v"}, "2": {"k": "v"}, "3": {"k": "v"}}}"#
        );
        // with a role: the first client of that role has sent it
        let wr = req(
            "2",
            "client",
            "lava_wait_all",
            r#", "messageID": "m", "waitrole": "server""#,
        );
        assert!(matches!(c.handle(&wr), Reply::Message(_)));
        let unknown = req(
            "2",
            "client",
            "lava_wait_all",
            r#", "messageID": "m", "waitrole": "nope""#,
        );
        assert_eq!(c.handle(&unknown), Reply::Nack);
    }

    #[test]
    fn sync_is_reusable_after_all_collected() {
        let mut c = Coordinator::new();
        let sync = |n: &str| {
            req(
                n,
                "r",
                "lava_sync",
                r#", "messageID": "s", "message": null"#,
            )
        };
        for round in 0..2 {
            for n in ["1", "2"] {
                assert_eq!(c.handle(&sync(n)), Reply::Wait, "round {round}");
            }
            assert_eq!(c.handle(&sync("3")), Reply::Wait);
            for n in ["1", "2", "3"] {
                assert_eq!(
                    msg(&c.handle(&sync(n))),
                    r#"{"response": "ack", "message": "s"}"#
                );
            }
        }
    }

    #[test]
    fn clear_group_deletes_after_all_cleared() {
        let mut c = Coordinator::new();
        for n in ["1", "2", "3"] {
            c.handle(&req(n, "r", "group_data", ""));
        }
        for n in ["1", "2"] {
            assert_eq!(c.handle(&req(n, "r", "clear_group", "")), Reply::Ack);
            assert!(c.has_group("g"));
        }
        assert_eq!(c.handle(&req("3", "r", "clear_group", "")), Reply::Ack);
        assert!(!c.has_group("g"));
    }

    #[test]
    fn held_requests_are_released_by_the_change_that_satisfies_them() {
        let mut c = Coordinator::new();
        for n in ["1", "2", "3"] {
            c.handle(&req(n, "r", "group_data", ""));
        }
        let wait = req("2", "r", "lava_wait", r#", "messageID": "ip""#);
        assert_eq!(c.hold(7, wait), None);
        assert_eq!(c.held(), 1);
        let sync = |n: &str| req(n, "r", "lava_sync", r#", "messageID": "s""#);
        assert_eq!(c.hold(8, sync("1")), None);
        assert_eq!(c.hold(9, sync("2")), None);
        assert!(c.take_released().is_empty());
        c.handle(&req(
            "1",
            "r",
            "lava_send",
            r#", "messageID": "ip", "message": {"a": "b"}"#,
        ));
        assert_eq!(
            c.take_released(),
            vec![(
                7,
                Reply::Message(Json::parse(br#"{"1": {"a": "b"}}"#).unwrap())
            )]
        );
        // the last arrival is answered at once and releases the others
        assert_eq!(c.hold(10, sync("3")), Some(Reply::Message(Json::str("s"))));
        let ids: Vec<_> = c.take_released().into_iter().map(|(i, _)| i).collect();
        assert_eq!(ids, vec![8, 9]);
        assert_eq!(c.held(), 0);
        // forgetting
        assert_eq!(
            c.hold(11, req("2", "r", "lava_wait", r#", "messageID": "x""#)),
            None
        );
        assert!(c.forget(11));
        assert!(!c.forget(11));
    }

    #[test]
    fn groups_are_independent() {
        let mut c = Coordinator::new();
        let in_group = |g: &str, n: &str, request: &str, extra: &str| {
            let mut r = req(n, "r", request, extra);
            r.group_name = Some(g.into());
            r.group_size = Some(1);
            r
        };
        assert_eq!(
            c.hold(1, in_group("a", "1", "lava_wait", r#", "messageID": "m""#)),
            None
        );
        assert_eq!(
            c.hold(2, in_group("b", "1", "lava_wait", r#", "messageID": "m""#)),
            None
        );
        c.handle(&in_group("b", "1", "lava_send", r#", "messageID": "m""#));
        let released: Vec<_> = c.take_released().into_iter().map(|(i, _)| i).collect();
        assert_eq!(released, vec![2]);
        assert_eq!(c.held(), 1);
        assert!(c.has_group("a") && c.has_group("b"));
    }

    #[test]
    fn missing_keys_are_nacked_not_crashes() {
        let mut c = Coordinator::new();
        let r = Request::from_json(&Json::parse(br#"{"request": "group_data"}"#).unwrap());
        assert_eq!(c.handle(&r), Reply::Nack);
        let r = Request::from_json(
            &Json::parse(br#"{"client_name": "1", "group_name": "g", "group_size": 2}"#).unwrap(),
        );
        assert_eq!(c.handle(&r), Reply::Nack);
        let r = Request::from_json(
            &Json::parse(
                br#"{"client_name": "1", "group_name": "g", "group_size": 2, "request": "x"}"#,
            )
            .unwrap(),
        );
        assert_eq!(c.handle(&r), Reply::Nack);
        assert_eq!(c.handle(&req("1", "r", "bogus", "")), Reply::Nack);
    }
}
