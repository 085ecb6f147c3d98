//! `multinode-test` (LAVA's `actions/test/multinode.py`): `lava-test-shell` that also answers
//! the MultiNode API calls of the helpers (`<LAVA_MULTI_NODE> <LAVA_SEND ...>`, `SYNC`, `WAIT`,
//! `WAIT_ALL`) through the group's coordinator, on the console (lava-formats.md §4.6).

use crate::action::{action, ActionError, ActionNode, Ctx};
use crate::protocols::multinode::{console_reply, ApiCall, CoordinatorError, Message};
use crate::yaml::Node;
use std::time::Duration;

/// What the helpers print for an API call.
pub(crate) const API_PATTERN: &str = r"<LAVA_MULTI_NODE> <LAVA_(\S+) ([^>]+)>";

action! {
    /// `multinode-test`: the test runner of the block's stage, with the MultiNode API.
    pub struct MultinodeTest = "multinode-test", "run test definitions with MultiNode synchronisation";
    run(ctx, node) { super::shell::run(ctx, node, true).await }
}

/// The call `<LAVA_<name> <params>>` asks for; `None` for anything else (debug lines).
fn parse_call(name: &str, params: &str) -> Option<ApiCall> {
    let mut words = params.split_whitespace();
    let id = words.next()?.to_string();
    Some(match name {
        "SEND" => ApiCall::Send {
            id,
            message: words
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Message>(),
        },
        "WAIT" => ApiCall::Wait { id },
        "WAIT_ALL" => ApiCall::WaitAll {
            id,
            role: words.next().map(str::to_string),
        },
        "SYNC" => ApiCall::Sync { id },
        _ => return None,
    })
}

/// Makes the call the helper asked for (bounded by the protocol's and the test's timeouts),
/// answers it on the console and records `multinode-<api>-<messageid>` in `definition`. A nack
/// or a timeout answers nack and fails the case; a timeout also ends the test (LAVA's poll
/// timeout is an error of the job).
pub(super) async fn api_call(
    ctx: &mut Ctx,
    node: &ActionNode,
    name: &str,
    params: &str,
    definition: Option<&str>,
) -> Result<(), ActionError> {
    let Some(call) = parse_call(name, params) else {
        ctx.log
            .debug(format!("MultiNode: ignoring <LAVA_{name} {params}>"));
        return Ok(());
    };
    let Some(mn) = &ctx.multinode else {
        return Err(ActionError::bug("multinode-test without a coordinator"));
    };
    let timeout = mn.facts.timeout.min(Duration::from_secs(node.timeout));
    let reply = mn.call(&ctx.log, &call, timeout).await;
    let delay = Duration::from_millis(ctx.device.character_delays.test_ms);
    if let Some(text) = console_reply(&call, &reply) {
        ctx.session()?.send_line(&text, delay).await?;
        ctx.session()?.send_line("", delay).await?;
    }
    let case = format!(
        "multinode-{}-{}",
        name.to_lowercase(),
        call.id().to_lowercase()
    );
    ctx.log.result(vec![
        ("definition", Node::str(definition.unwrap_or("lava"))),
        ("case", Node::str(case)),
        (
            "result",
            Node::str(if reply.is_ok() { "pass" } else { "fail" }),
        ),
    ]);
    match reply {
        Err(CoordinatorError::Timeout) => Err(ActionError::timeout(format!(
            "MultiNode {} '{}' timed out after {} s",
            call.request(),
            call.id(),
            timeout.as_secs()
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_calls_are_read_as_lava_prints_them() {
        assert_eq!(
            parse_call("SEND", "ipv4 ipaddr=10.0.0.1 junk"),
            Some(ApiCall::Send {
                id: "ipv4".into(),
                message: [("ipaddr".to_string(), "10.0.0.1".to_string())].into()
            })
        );
        assert_eq!(
            parse_call("WAIT_ALL", "done server"),
            Some(ApiCall::WaitAll {
                id: "done".into(),
                role: Some("server".into())
            })
        );
        assert_eq!(parse_call("SYNC_DEBUG", "x"), None);
        assert_eq!(parse_call("WAIT", ""), None);
    }
}
