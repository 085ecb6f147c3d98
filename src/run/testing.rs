//! Helpers for unit tests of actions: a job's pipeline on a device of `config/devices`, its
//! context (no board: the test gives it fakes), and a walk of a subtree as the executor does
//! it (own work, then children; no timeouts, no retries).

use crate::action::context::Place;
use crate::action::{ActionError, ActionNode, Ctx, Pipeline};
use crate::device::Device;
use crate::log::{JobLog, Verbosity};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// A job ready to run on a project device.
pub(crate) struct Fixture {
    pub ctx: Ctx,
    pub pipeline: Pipeline,
    /// The job's directories, removed with the fixture.
    _tmp: tempfile::TempDir,
}

/// `job` (YAML) on `config/devices/<device>.jinja2`, its log in memory with `secrets`.
pub(crate) fn fixture(device: &str, job: &str, secrets: Vec<String>) -> Fixture {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    fixture_at(
        &config.join(format!("devices/{device}.jinja2")),
        job,
        secrets,
    )
}

/// `job` on the device dictionary `dict` (rendered with `config/device-types`).
pub(crate) fn fixture_at(dict: &Path, job: &str, secrets: Vec<String>) -> Fixture {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let device = Device::load(dict, &[config.join("device-types")], &BTreeMap::new())
        .unwrap_or_else(|e| panic!("{e}"));
    let (job, _) = crate::job::parse_job("test.yaml", job).unwrap_or_else(|e| panic!("{e}"));
    let pipeline =
        crate::pipeline::build_pipeline(&job, &device).unwrap_or_else(|e| panic!("{e:?}"));
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let place = Place {
        job_id: "7".into(),
        output_dir: tmp.path().join("out"),
        workdir: tmp.path().join("work"),
        tftp_root: tmp.path().join("tftp"),
        server_ip: "192.0.2.1".into(),
        limits: crate::host::limits::Limits::default(),
        confinement: None,
        deadline: Instant::now() + Duration::from_secs(120),
    };
    let log = JobLog::create(None, Verbosity::Quiet, secrets).unwrap_or_else(|e| panic!("{e}"));
    Fixture {
        ctx: Ctx::new(job, device, log, place),
        pipeline,
        _tmp: tmp,
    }
}

/// Runs `node` and its children as the executor does; returns the names of the actions run.
pub(crate) async fn run_tree(
    ctx: &mut Ctx,
    node: &ActionNode,
) -> Result<Vec<&'static str>, ActionError> {
    let mut ran = Vec::new();
    walk(ctx, node, &mut ran).await?;
    Ok(ran)
}

fn walk<'a>(
    ctx: &'a mut Ctx,
    node: &'a ActionNode,
    ran: &'a mut Vec<&'static str>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ActionError>> + 'a>> {
    Box::pin(async move {
        ran.push(node.name());
        node.action
            .run(ctx, node)
            .await
            .map_err(|e| e.at(&node.level, node.name()))?;
        for child in &node.children {
            walk(ctx, child, ran).await?;
        }
        Ok(())
    })
}
