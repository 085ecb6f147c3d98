//! `lava-overlay`: the test overlay (helper scripts, test definitions, run scripts) that a
//! deploy applies to the image, ramdisk or root filesystem.

use crate::job::{TestFrom, TestKind};
use crate::pipeline::build::{Builder, Scope};
use crate::pipeline::TestDefId;
use crate::pipeline::{ActionKind, ActionNode};

/// Builds `lava-overlay` for the block's namespace. It is a leaf when no test in the namespace
/// runs test definitions.
pub(crate) fn overlay(b: &Builder<'_>, s: &Scope<'_>, parent: Option<&ActionNode>) -> ActionNode {
    let mut ov = b.node(s, parent, ActionKind::LavaOverlay);
    if !b.needs_overlay(&s.namespace) {
        return ov;
    }
    let ssh = b
        .device
        .node
        .path(&["actions", "deploy", "methods"])
        .and_then(|m| m.as_map())
        .is_some_and(|m| {
            m.iter()
                .any(|(k, _)| k.as_str().is_some_and(|k| k.contains("ssh")))
        });
    if ssh {
        b.child(s, &mut ov, ActionKind::SshAuthorize);
    }
    b.child(s, &mut ov, ActionKind::MultinodeOverlay);
    let td = b.child(s, &mut ov, ActionKind::TestDefinition);
    for (block, t) in b.tests_in(&s.namespace) {
        let TestKind::Definitions(defs) = &t.kind else {
            continue;
        };
        for (def, d) in defs.iter().enumerate() {
            let id = TestDefId {
                block,
                def,
                idx: b.def_idx(block, def),
            };
            let repo = match d.from {
                TestFrom::Git => ActionKind::GitRepo(id),
                TestFrom::Inline => ActionKind::InlineRepo(id),
                TestFrom::Url => ActionKind::UrlRepo(id),
            };
            for kind in [
                repo,
                ActionKind::TestOverlay(id),
                ActionKind::TestInstallOverlay(id),
                ActionKind::TestRunscriptOverlay(id),
            ] {
                b.child(s, td, kind);
            }
        }
    }
    b.child(s, &mut ov, ActionKind::CompressOverlay);
    ov
}

/// Adds `lava-overlay` (and the device environment when tests need it) to a deploy.
pub(crate) fn add_overlay(b: &Builder<'_>, s: &Scope<'_>, parent: &mut ActionNode) {
    if b.needs_overlay(&s.namespace) {
        let ov = overlay(b, s, Some(parent));
        parent.children.push(ov);
    }
}
