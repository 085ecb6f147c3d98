//! Builds the action tree of a job on a device from the strategies of [`crate::actions`], and
//! checks it as `validate --device` does.

use crate::action::build::namespace_of;
use crate::action::{ActionNode, Builder, Check, Pipeline, PipelineError, Scope, Section};
use crate::actions::{self, registry};
use crate::device::Device;
use crate::job::{ActionBlock, Boot, BootMethod, Deploy, Job, Test, TestKind};

/// Builds the pipeline of `job` on `device`. Errors name the block that cannot run there.
pub fn build_pipeline(job: &Job, device: &Device) -> Result<Pipeline, Vec<PipelineError>> {
    let b = Builder::new(job, device);
    let mut actions = Vec::new();
    let mut errors = Vec::new();
    for (i, block) in job.actions.iter().enumerate() {
        let common = block.common();
        let section = match block {
            ActionBlock::Deploy(_) => Section::Deploy,
            ActionBlock::Boot(_) => Section::Boot,
            ActionBlock::Test(_) => Section::Test,
            ActionBlock::Command(_) => Section::Command,
        };
        let s = Scope {
            common: Some(common),
            index: Some(i),
            section,
            namespace: namespace_of(common),
        };
        let built = match block {
            ActionBlock::Deploy(d) => deploy(&b, &s, d),
            ActionBlock::Boot(boot) => self::boot(&b, &s, boot),
            ActionBlock::Test(t) => test(&b, &s, t),
            ActionBlock::Command(c) => actions::command::pipeline(&b, &s, c),
        };
        match built {
            Ok(node) => actions.push(node),
            Err(e) => errors.push(e),
        }
    }
    let s = Scope {
        common: None,
        index: None,
        section: Section::Finalize,
        namespace: "common".to_string(),
    };
    actions.push(actions::finalize::pipeline(&b, &s));
    if !errors.is_empty() {
        return Err(errors);
    }
    for (i, a) in actions.iter_mut().enumerate() {
        a.number((i + 1).to_string());
    }
    Ok(Pipeline { actions })
}

/// A deploy block, by its `to:`.
fn deploy(b: &Builder<'_>, s: &Scope<'_>, d: &Deploy) -> Result<ActionNode, PipelineError> {
    match registry::find(registry::DEPLOY, d.to.name()) {
        Some(strategy) => (strategy.build)(b, s, d),
        None => Err(s.error(
            b,
            format!(
                "deploy to '{}' is outside basalt's scope (it handles {})",
                d.to.name(),
                registry::names(registry::DEPLOY).join(", ")
            ),
        )),
    }
}

/// A boot block, by its `method:`, once the device is known to offer the method.
fn boot(b: &Builder<'_>, s: &Scope<'_>, boot: &Boot) -> Result<ActionNode, PipelineError> {
    let name = match &boot.method {
        BootMethod::Bootloader => boot.bootloader.as_deref().unwrap_or("bootloader"),
        m => m.name(),
    };
    let strategy = registry::find(registry::BOOT, boot.method.name());
    if strategy.is_some() && !b.device.has_boot_method(name) {
        return Err(s.error(b, format!(
            "device '{}' ({}) cannot boot with method '{name}': its actions.boot.methods has no '{name}'",
            b.device.hostname, b.device.device_type
        )));
    }
    match strategy {
        Some(strategy) => (strategy.build)(b, s, boot),
        None => Err(s.error(
            b,
            format!(
                "boot method '{}' is outside basalt's scope (it handles {})",
                boot.method.name(),
                registry::names(registry::BOOT).join(", ")
            ),
        )),
    }
}

/// A test block, by its kind (definitions, interactive, monitors).
fn test(b: &Builder<'_>, s: &Scope<'_>, t: &Test) -> Result<ActionNode, PipelineError> {
    let kind = match &t.kind {
        TestKind::Definitions(_) => "definitions",
        TestKind::Interactive(_) => "interactive",
        TestKind::Monitors(_) => "monitors",
        TestKind::Other(kind) => kind.as_str(),
    };
    match registry::find(registry::TEST, kind) {
        Some(strategy) => (strategy.build)(b, s, t),
        None => Err(s.error(
            b,
            format!("'{kind}' test blocks are outside basalt's scope"),
        )),
    }
}

/// What LAVA's dispatcher refuses before it runs (its submission does not): a test
/// definition named `lava`, or two with one name in a test block (per namespace and role).
fn check_test_names(job: &Job) -> Vec<PipelineError> {
    let mut errors = Vec::new();
    for block in &job.actions {
        let ActionBlock::Test(t) = block else {
            continue;
        };
        let TestKind::Definitions(defs) = &t.kind else {
            continue;
        };
        let c = &t.common;
        let mut seen: Vec<(&str, &str)> = Vec::new();
        for (k, d) in defs.iter().enumerate() {
            let err = |message: String| PipelineError {
                mark: d.mark,
                path: format!("actions[{}].test.definitions[{k}].name", c.index),
                message,
            };
            if d.name == "lava" {
                errors.push(err(
                    "'lava' is reserved for the dispatcher's own results".to_string()
                ));
            }
            let roles: Vec<&str> = if c.role.is_empty() {
                vec![""]
            } else {
                c.role.iter().map(String::as_str).collect()
            };
            for role in roles {
                if seen.contains(&(role, d.name.as_str())) {
                    errors.push(err(format!(
                        "test definition names need to be unique: '{}' is used twice",
                        d.name
                    )));
                } else {
                    seen.push((role, d.name.as_str()));
                }
            }
        }
    }
    errors
}

/// The checks `validate --device` makes before anything runs, as LAVA's validate pass does:
/// the job's test definition names, then every action's own check ([`Action::validate`]:
/// user commands, U-Boot command lists, QEMU's command line, the console), which also
/// refuses the actions basalt cannot run yet, naming them. One error per block and message.
/// (`describe` shows a pipeline without these checks.)
///
/// [`Action::validate`]: crate::action::Action::validate
pub fn validate(job: &Job, device: &Device, pipeline: &Pipeline) -> Vec<PipelineError> {
    let mut errors = check_test_names(job);
    for node in pipeline.walk() {
        let check = Check { job, device, node };
        let Err(message) = node.action.validate(&check) else {
            continue;
        };
        let (mark, path) = match node.block.and_then(|b| job.actions.get(b)) {
            Some(block) => (
                block.common().mark,
                format!("actions[{}].{}", block.common().index, block.kind()),
            ),
            None => (Default::default(), node.name().to_string()),
        };
        if !errors
            .iter()
            .any(|e| e.path == path && e.message == message)
        {
            errors.push(PipelineError {
                mark,
                path,
                message,
            });
        }
    }
    errors
}
