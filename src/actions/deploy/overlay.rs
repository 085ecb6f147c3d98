//! `lava-overlay`: the test overlay (helper scripts, test definitions, run scripts) that a
//! deploy applies to the image, ramdisk or root filesystem.

use super::require;
use crate::action::{group, Action, ActionNode, Builder, Nothing, PipelineError, Scope, TestDefId};
use crate::job::{Deploy, TestFrom, TestKind};

/// `to: overlay`: only the test overlay, for a device whose image is already in place.
pub(crate) fn pipeline(
    b: &Builder<'_>,
    s: &Scope<'_>,
    d: &Deploy,
) -> Result<ActionNode, PipelineError> {
    require(b, s, d, "overlay")?;
    Ok(overlay(b, s, None))
}

/// Builds `lava-overlay` for the block's namespace. It is a leaf when no test in the namespace
/// runs test definitions.
pub(crate) fn overlay(b: &Builder<'_>, s: &Scope<'_>, parent: Option<&ActionNode>) -> ActionNode {
    let mut ov = b.node(s, parent, LavaOverlay);
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
        b.child(
            s,
            &mut ov,
            Nothing {
                name: "ssh-authorize",
                description: "add the worker's SSH key to the overlay",
            },
        );
    }
    b.child(s, &mut ov, MultinodeOverlay);
    let td = b.child(
        s,
        &mut ov,
        group(
            "test-definition",
            "fetch test definitions and write their scripts",
        ),
    );
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
            b.child(s, td, Repo { from: d.from, id });
            for step in [
                DefinitionStep::Overlay,
                DefinitionStep::Install,
                DefinitionStep::Runscript,
            ] {
                b.child(s, td, Definition { step, id });
            }
        }
    }
    b.child(s, &mut ov, CompressOverlay);
    ov
}

/// Adds `lava-overlay` (and the device environment when tests need it) to a deploy.
pub(crate) fn add_overlay(b: &Builder<'_>, s: &Scope<'_>, parent: &mut ActionNode) {
    if b.needs_overlay(&s.namespace) {
        let ov = overlay(b, s, Some(parent));
        parent.children.push(ov);
    }
}

/// `lava-overlay`: the base of the overlay; its children add the test definitions.
#[derive(Debug)]
pub struct LavaOverlay;

#[async_trait::async_trait]
impl Action for LavaOverlay {
    fn name(&self) -> &'static str {
        "lava-overlay"
    }
    fn description(&self) -> &'static str {
        "build the test overlay: helper scripts and test definitions"
    }
    async fn run(&self, ctx: &mut Ctx, _node: &ActionNode) -> Result<(), ActionError> {
        run_lava_overlay(ctx)
    }
}

/// `lava-multinode-overlay`: a MultiNode sub-job's helpers (`lava-send`, `lava-wait`, ...) in
/// `bin/`, with the group, this job's role and id written into them; nothing for other jobs.
#[derive(Debug)]
pub struct MultinodeOverlay;

#[async_trait::async_trait]
impl Action for MultinodeOverlay {
    fn name(&self) -> &'static str {
        "lava-multinode-overlay"
    }
    fn description(&self) -> &'static str {
        "add the MultiNode helper scripts to the overlay"
    }
    async fn run(&self, ctx: &mut Ctx, _node: &ActionNode) -> Result<(), ActionError> {
        run_multinode_overlay(ctx)
    }
}

fn run_multinode_overlay(ctx: &mut Ctx) -> Result<(), ActionError> {
    let Some(mn) = &ctx.multinode else {
        return Ok(());
    };
    let bin = base_dir(ctx)?.join("bin");
    let q = crate::overlay::single_quoted;
    let group = q(&mn.facts.group_text());
    let shebang = format!("#!{}\n\n", ctx.sh_cmd());
    let common = format!(
        "LAVA_TEST_BIN={}\nLAVA_MULTI_NODE_CACHE={}\nLAVA_MULTI_NODE_DEBUG='yes'\n",
        q(&format!("{}/bin", ctx.results_dir())),
        q("/tmp/lava_multi_node_cache.txt")
    );
    for (name, body) in crate::testshell::scripts::MULTINODE_SCRIPTS {
        let vars = match *name {
            "lava-group" => format!("LAVA_GROUP={group}\n"),
            "lava-role" => format!("TARGET_ROLE={}\nLAVA_GROUP={group}\n", q(&mn.facts.role)),
            "lava-self" => format!("LAVA_HOSTNAME={}\n", q(&ctx.job_id)),
            _ => common.clone(),
        };
        write_file(&bin.join(name), &format!("{shebang}{vars}{body}"), 0o755)?;
    }
    ctx.log.debug(format!(
        "MultiNode helpers added to the overlay: role {}, group {}",
        mn.facts.role, mn.facts.group
    ));
    Ok(())
}

/// `git-repo-action` / `inline-repo-action` / `url-repo-action`: one definition's files.
#[derive(Debug)]
pub struct Repo {
    pub from: TestFrom,
    pub id: TestDefId,
}

#[async_trait::async_trait]
impl Action for Repo {
    fn name(&self) -> &'static str {
        match self.from {
            TestFrom::Git => "git-repo-action",
            TestFrom::Inline => "inline-repo-action",
            TestFrom::Url => "url-repo-action",
        }
    }
    fn description(&self) -> &'static str {
        match self.from {
            TestFrom::Git => "clone a test definition repository",
            TestFrom::Inline => "write an inline test definition",
            TestFrom::Url => "download and unpack a test definition tarball",
        }
    }
    async fn run(&self, ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
        run_repo(ctx, node, self.id).await
    }
}

/// What a [`Definition`] step writes.
#[derive(Clone, Copy, Debug)]
pub enum DefinitionStep {
    /// `test-overlay`: metadata and uuid.
    Overlay,
    /// `test-install-overlay`: the install script.
    Install,
    /// `test-runscript-overlay`: the run script.
    Runscript,
}

/// The steps after a definition's files are in place.
#[derive(Debug)]
pub struct Definition {
    pub step: DefinitionStep,
    pub id: TestDefId,
}

#[async_trait::async_trait]
impl Action for Definition {
    fn name(&self) -> &'static str {
        match self.step {
            DefinitionStep::Overlay => "test-overlay",
            DefinitionStep::Install => "test-install-overlay",
            DefinitionStep::Runscript => "test-runscript-overlay",
        }
    }
    fn description(&self) -> &'static str {
        match self.step {
            DefinitionStep::Overlay => "write the test definition's metadata and uuid",
            DefinitionStep::Install => "write the test definition's install script",
            DefinitionStep::Runscript => "write the test definition's run script",
        }
    }
    async fn run(&self, ctx: &mut Ctx, _node: &ActionNode) -> Result<(), ActionError> {
        match self.step {
            DefinitionStep::Overlay => run_test_overlay(ctx, self.id).await,
            DefinitionStep::Install => run_install_overlay(ctx, self.id),
            DefinitionStep::Runscript => run_runscript_overlay(ctx, self.id),
        }
    }
}

/// `compress-overlay`: the overlay as a tarball.
#[derive(Debug)]
pub struct CompressOverlay;

#[async_trait::async_trait]
impl Action for CompressOverlay {
    fn name(&self) -> &'static str {
        "compress-overlay"
    }
    fn description(&self) -> &'static str {
        "pack the overlay as a tarball"
    }
    async fn run(&self, ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
        run_compress_overlay(ctx, node).await
    }
}

// ---- running -------------------------------------------------------------------------------

use crate::action::{ActionError, Ctx, TestRun};
use crate::error::io_err;
use crate::job::testdef::read_testdef;
use crate::job::{ActionBlock, Job, TestDefRef};
use crate::overlay::tree::{check_repository, read_beneath, TreeError};
use crate::overlay::{
    environment_file, flatten_env, install_sh, params_preamble, run_sh, RunScript,
};

/// The largest test definition file read (a YAML file of a few KiB, usually).
const MAX_TESTDEF_BYTES: u64 = 16 << 20;
use crate::yaml::{emit_document, Node, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// A path from a job, checked to stay below the directory it is joined to.
pub fn safe_rel_path(p: &str) -> Result<PathBuf, ActionError> {
    let path = Path::new(p);
    if p.is_empty()
        || path.is_absolute()
        || path
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(ActionError::job(format!(
            "path '{p}' must be relative and stay inside its directory"
        )));
    }
    Ok(path.to_path_buf())
}

/// The overlay directory that mirrors `lava_test_results_dir` on the device.
fn base_dir(ctx: &Ctx) -> Result<PathBuf, ActionError> {
    let root = ctx
        .overlay_root
        .clone()
        .ok_or_else(|| ActionError::bug("the overlay was not created before its contents"))?;
    let rd = ctx.results_dir();
    let rel = rd.trim_start_matches('/');
    safe_rel_path(rel).map_err(|_| {
        ActionError::job(format!(
            "lava_test_results_dir '{rd}' must be an absolute path without '..'"
        ))
    })?;
    Ok(root.join(rel))
}

/// Writes a file of the overlay. A test repository may hold an entry of the same name (a
/// repository's own `run.sh`, or a symlink): it is replaced, never written through.
fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), ActionError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let show = || path.display().to_string();
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_err(&parent.display().to_string(), e))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            return Err(ActionError::job(format!(
                "{}: the test repository has a directory where basalt writes this file",
                show()
            )))
        }
        Ok(_) => std::fs::remove_file(path).map_err(|e| io_err(&show(), e))?,
        Err(_) => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| io_err(&show(), e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| io_err(&show(), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| io_err(&show(), e))
}

/// `lava-overlay`: the base of the overlay: helper scripts, `environment`, `secrets`.
fn run_lava_overlay(ctx: &mut Ctx) -> Result<(), ActionError> {
    let root = ctx.workdir.join("overlay");
    ctx.overlay_root = Some(root);
    let base = base_dir(ctx)?;
    for sub in ["bin", "tests", "results"] {
        std::fs::create_dir_all(base.join(sub)).map_err(|e| io_err("overlay", e))?;
    }
    let shebang = format!("#!{}\n\n", ctx.sh_cmd());
    for (name, body) in crate::testshell::scripts::SCRIPTS {
        write_file(
            &base.join("bin").join(name),
            &format!("{shebang}{body}"),
            0o755,
        )?;
    }
    let mut vars = Vec::new();
    if let Some(env) = ctx.device.node.get("environment") {
        flatten_env("", env, &mut vars);
    }
    for (key, prefix) in [
        ("device_info", "LAVA_DEVICE_INFO"),
        ("static_info", "LAVA_STATIC_INFO"),
        ("storage_info", "LAVA_STORAGE_INFO"),
    ] {
        if let Some(info) = ctx.device.node.get(key) {
            flatten_env(prefix, info, &mut vars);
        }
    }
    if let Some(env) = &ctx.job.environment {
        flatten_env("", env, &mut vars);
    }
    vars.push(("LAVA_JOB_ID".into(), ctx.job_id.clone()));
    vars.push(("LAVA_JOB_TAGS".into(), ctx.job.tags.join(",")));
    vars.push(("LAVA_DEVICE_HOSTNAME".into(), ctx.device.hostname.clone()));
    vars.push(("LAVA_DEVICE_TYPE".into(), ctx.device.device_type.clone()));
    write_file(&base.join("environment"), &environment_file(&vars), 0o644)?;
    let secrets: String = ctx
        .job
        .secrets
        .iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    write_file(&base.join("secrets"), &secrets, 0o600)?;
    ctx.log
        .debug(format!("overlay created in {}", base.display()));
    Ok(())
}

fn definition(job: &Job, id: TestDefId) -> Result<&TestDefRef, ActionError> {
    match job.actions.get(id.block) {
        Some(ActionBlock::Test(t)) => match &t.kind {
            TestKind::Definitions(defs) => defs
                .get(id.def)
                .ok_or_else(|| ActionError::bug("definition index out of range")),
            _ => Err(ActionError::bug("test block without definitions")),
        },
        _ => Err(ActionError::bug("definition of a non-test block")),
    }
}

/// The test stage of a test block: its index among the namespace's test blocks that run
/// definitions.
fn stage_of(job: &Job, block: usize) -> usize {
    let ns = |b: &ActionBlock| b.common().namespace.clone();
    let Some(me) = job.actions.get(block) else {
        return 0;
    };
    job.actions[..block]
        .iter()
        .filter(|a| {
            matches!(a, ActionBlock::Test(t) if matches!(t.kind, TestKind::Definitions(_)))
                && ns(a) == ns(me)
        })
        .count()
}

fn run_entry(ctx: &Ctx, id: TestDefId) -> Result<&TestRun, ActionError> {
    ctx.test_runs
        .get(&(id.block, id.def))
        .ok_or_else(|| ActionError::bug("test definition used before it was fetched"))
}

/// The worker directory of a definition and its path on the device.
fn def_dirs(ctx: &Ctx, run: &TestRun) -> Result<(PathBuf, String), ActionError> {
    let base = base_dir(ctx)?;
    let rel = format!("{}/tests/{}", run.stage, run.id);
    Ok((base.join(&rel), format!("{}/{rel}", ctx.results_dir())))
}

/// `git-repo-action` / `inline-repo-action` / `url-repo-action`: put the definition's files
/// into the overlay.
async fn run_repo(ctx: &mut Ctx, node: &ActionNode, id: TestDefId) -> Result<(), ActionError> {
    let def = definition(&ctx.job, id)?.clone();
    let test_id = format!("{}_{}", id.idx, def.name);
    let run = TestRun {
        id: test_id.clone(),
        uuid: format!("{}_{}", ctx.job_id, node.level),
        stage: stage_of(&ctx.job, id.block),
        repository: def.repository.clone().unwrap_or_else(|| "inline".into()),
        path: def.path.clone(),
        revision: def.revision.clone(),
        commit_id: None,
        testdef: None,
    };
    let (dir, _) = def_dirs(ctx, &run)?;
    std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir.display().to_string(), e))?;
    let rel = safe_rel_path(&def.path)?;
    let mut run = run;
    match def.from {
        TestFrom::Inline => {
            let inline = def
                .inline
                .as_ref()
                .ok_or_else(|| ActionError::job("inline definition without content"))?;
            write_file(&dir.join(&rel), &emit_document(inline), 0o644)?;
        }
        TestFrom::Git => {
            let url = def.repository.clone().unwrap_or_default();
            // git needs the network (https), and writes only its destination
            let policy = ctx.policy(&[&dir], true, &[]);
            run.commit_id = Some(
                crate::actions::deploy::git::clone(
                    &ctx.log,
                    &policy,
                    &url,
                    def.branch.as_deref(),
                    def.revision.as_deref(),
                    def.history.unwrap_or(false),
                    &dir,
                    &ctx.limits.file_roots,
                )
                .await?,
            );
            let (d, budget, history) = (
                dir.clone(),
                ctx.budget.clone(),
                def.history.unwrap_or(false),
            );
            ctx.tasks
                .run(move |cancel| -> Result<(), TreeError> {
                    if !history {
                        let _ = std::fs::remove_dir_all(d.join(".git"));
                    }
                    let bytes = check_repository(&d, cancel)?;
                    budget.charge(bytes).map_err(TreeError::Exceeded)
                })
                .await?
                .map_err(|e| e.into_action(&format!("test repository {url}")))?;
        }
        TestFrom::Url => {
            let url = def.repository.clone().unwrap_or_default();
            crate::actions::deploy::download::fetch_tarball(ctx, &url, def.compression, &dir)
                .await?;
            let d = dir.clone();
            ctx.tasks
                .run(move |cancel| check_repository(&d, cancel))
                .await?
                .map_err(|e| e.into_action(&format!("test repository {url}")))?;
        }
    }
    ctx.log.info(format!(
        "{}: {} {} -> {}",
        node.name(),
        run.repository,
        def.path,
        test_id
    ));
    ctx.test_runs.insert((id.block, id.def), run);
    Ok(())
}

/// `test-overlay`: read the definition, write `testdef.yaml`, `uuid`, `testdef_metadata`.
async fn run_test_overlay(ctx: &mut Ctx, id: TestDefId) -> Result<(), ActionError> {
    let run = run_entry(ctx, id)?.clone();
    let (dir, _) = def_dirs(ctx, &run)?;
    let rel = safe_rel_path(&run.path)?;
    // Opened below the repository's directory without leaving it (no symlink or '..' out).
    let bytes = ctx
        .tasks
        .run(move |_| read_beneath(&dir, &rel, MAX_TESTDEF_BYTES))
        .await?;
    let text = bytes
        .map_err(|e| e.to_string())
        .and_then(|b| String::from_utf8(b).map_err(|_| "not UTF-8 text".to_string()))
        .map_err(|e| {
            ActionError::job(format!(
                "test definition {} in {}: {e}",
                run.path, run.repository
            ))
        })?;
    let (dir, _) = def_dirs(ctx, &run)?;
    let root =
        crate::yaml::load(&text).map_err(|e| ActionError::job(format!("{}:{e}", run.path)))?;
    let mut report = crate::diag::Report::new(&run.path);
    let testdef = read_testdef(&mut report, &root, "");
    let testdef = match testdef {
        Some(t) if !report.has_errors() => t,
        _ => {
            return Err(ActionError::job(format!(
                "invalid test definition:\n{report}"
            )))
        }
    };
    for w in report.warnings() {
        ctx.log.warning(report.line(w));
    }
    write_file(&dir.join("testdef.yaml"), &emit_document(&root), 0o644)?;
    write_file(&dir.join("uuid"), &run.uuid, 0o644)?;
    let def = definition(&ctx.job, id)?;
    let os = deploy_os(&ctx.job);
    let mut meta = vec![
        (Node::str("os"), Node::str(os.unwrap_or_default())),
        (
            Node::str("devices"),
            Node::new(Value::Seq(
                testdef
                    .devices
                    .iter()
                    .map(|d| Node::str(d.clone()))
                    .collect(),
            )),
        ),
        (
            Node::str("environment"),
            Node::new(Value::Seq(
                testdef
                    .environment
                    .iter()
                    .map(|d| Node::str(d.clone()))
                    .collect(),
            )),
        ),
        (
            Node::str("branch_vcs"),
            Node::str(match def.from {
                TestFrom::Git => "git",
                TestFrom::Inline => "inline",
                TestFrom::Url => "url",
            }),
        ),
        (Node::str("project_name"), Node::str(testdef.name.clone())),
    ];
    if let Some(c) = &run.commit_id {
        meta.push((Node::str("commit_id"), Node::str(c.clone())));
    }
    write_file(
        &dir.join("testdef_metadata"),
        &emit_document(&Node::new(Value::Map(meta))),
        0o644,
    )?;
    if let Some(entry) = ctx.test_runs.get_mut(&(id.block, id.def)) {
        entry.testdef = Some(testdef);
    }
    Ok(())
}

fn deploy_os(job: &Job) -> Option<String> {
    job.actions.iter().find_map(|a| match a {
        ActionBlock::Deploy(d) => d.os.clone(),
        _ => None,
    })
}

fn testdef_of(run: &TestRun) -> Result<&crate::job::testdef::TestDef, ActionError> {
    run.testdef
        .as_ref()
        .ok_or_else(|| ActionError::bug("test definition not read yet"))
}

/// `test-install-overlay`: write `install.sh` when the definition has `install:`.
fn run_install_overlay(ctx: &mut Ctx, id: TestDefId) -> Result<(), ActionError> {
    let run = run_entry(ctx, id)?.clone();
    let testdef = testdef_of(&run)?;
    let (dir, device_dir) = def_dirs(ctx, &run)?;
    let def = definition(&ctx.job, id)?;
    let preamble = params_preamble(testdef, &def.parameters).map_err(ActionError::test)?;
    if let Some(script) = install_sh(
        testdef,
        &preamble,
        &device_dir,
        &def.skip_install,
        deploy_os(&ctx.job).as_deref(),
    ) {
        write_file(&dir.join("install.sh"), &script, 0o755)?;
    }
    Ok(())
}

/// `test-runscript-overlay`: write `run.sh` and list the definition in its stage's
/// `lava-test-runner.conf`.
fn run_runscript_overlay(ctx: &mut Ctx, id: TestDefId) -> Result<(), ActionError> {
    let run = run_entry(ctx, id)?.clone();
    let testdef = testdef_of(&run)?;
    let (dir, device_dir) = def_dirs(ctx, &run)?;
    let def = definition(&ctx.job, id)?;
    let preamble = params_preamble(testdef, &def.parameters).map_err(ActionError::test)?;
    let rs = RunScript {
        test_id: &run.id,
        dir: &device_dir,
        char_delay_secs: ctx.device.character_delays.test_ms as f64 / 1000.0,
        kmsg: def.lava_signal.as_deref() == Some("kmsg"),
    };
    write_file(&dir.join("run.sh"), &run_sh(testdef, &preamble, &rs), 0o755)?;
    let conf = base_dir(ctx)?
        .join(run.stage.to_string())
        .join("lava-test-runner.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap_or_default();
    text.push_str(&device_dir);
    text.push('\n');
    write_file(&conf, &text, 0o644)
}

/// `compress-overlay`: `overlay-<level>.tar.gz` with members `lava-<job>/...`, for
/// deployments that transfer the overlay as a tarball.
async fn run_compress_overlay(ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
    let root = ctx
        .overlay_root
        .clone()
        .ok_or_else(|| ActionError::bug("no overlay to compress"))?;
    let path = ctx.workdir.join(format!("overlay-{}.tar.gz", node.level));
    let rel = ctx.results_dir().trim_start_matches('/').to_string();
    let p = path.clone();
    ctx.tasks
        .run(move |cancel| {
            let file = std::fs::File::create(&p).map_err(|e| TreeError::io(p.display(), e))?;
            crate::overlay::tarball::write(&root, &rel, std::io::BufWriter::new(file), cancel)
        })
        .await?
        .map_err(|e| e.into_action("overlay tarball"))?;
    ctx.log.debug(format!("overlay tarball {}", path.display()));
    ctx.overlay_tarball = Some(path);
    Ok(())
}
