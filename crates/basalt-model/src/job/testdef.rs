//! LAVA test definitions (`Lava-Test Test Definition 1.0`): metadata, install, params, run,
//! parse. Read from an inline job block, a git checkout or a URL tarball.

use crate::diag::{index, Report};
use crate::reader::{entries, list, str_map, string, Fields};
use crate::yaml::Node;

/// The exact `metadata.format` LAVA requires.
pub const FORMAT: &str = "Lava-Test Test Definition 1.0";

/// A parsed test definition.
#[derive(Clone, Debug, Default)]
pub struct TestDef {
    pub name: String,
    pub description: Option<String>,
    pub version: Option<String>,
    pub os: Vec<String>,
    pub devices: Vec<String>,
    pub environment: Vec<String>,
    pub install: Install,
    /// Default parameters (`params:` then `parameters:`), in order.
    pub params: Vec<(String, Node)>,
    pub run_steps: Vec<String>,
    pub parse: Option<ParseSpec>,
    pub expected: Vec<String>,
}

/// `install:` of a test definition.
#[derive(Clone, Debug, Default)]
pub struct Install {
    pub present: bool,
    pub deps: Vec<String>,
    /// `deps-<distro>` lists, by distro.
    pub distro_deps: Vec<(String, Vec<String>)>,
    pub keys: Vec<String>,
    pub sources: Vec<String>,
    pub steps: Vec<String>,
    pub git_repos: Vec<GitRepo>,
}

/// `install.git-repos` entry, cloned on the worker into the test directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitRepo {
    pub url: String,
    pub branch: Option<String>,
    pub destination: Option<String>,
}

/// `parse:`: a Python regex with named groups and a result fix-up table.
#[derive(Clone, Debug, Default)]
pub struct ParseSpec {
    pub pattern: String,
    pub fixupdict: Vec<(String, String)>,
}

/// Checks an inline definition inside a job (errors go to the job's report).
pub fn check_inline_testdef(r: &mut Report, n: &Node, path: &str) {
    read_testdef(r, n, path);
}

/// Reads a test definition file's text.
pub fn parse_testdef(file: &str, text: &str) -> Result<TestDef, Report> {
    let root = crate::diag::load_document(file, text)?;
    let mut r = Report::new(file);
    match read_testdef(&mut r, &root, "") {
        Some(t) if !r.has_errors() => Ok(t),
        _ => Err(r),
    }
}

/// Reads a test definition tree; `None` (with errors in `r`) if it is unusable.
pub fn read_testdef(r: &mut Report, n: &Node, path: &str) -> Option<TestDef> {
    let mut f = Fields::new(r, n, path)?;
    let mut t = TestDef::default();
    let meta = f.req(r, "metadata");
    if let Some(m) = meta {
        let mpath = f.sub("metadata");
        if let Some(mut mf) = Fields::new(r, m, &mpath) {
            match mf.req_str(r, "format") {
                Some(fmt) if fmt == FORMAT => {}
                Some(fmt) => {
                    let node = mf.opt("format").unwrap_or(m);
                    r.error(
                        node,
                        &mf.sub("format"),
                        format!("unknown format '{fmt}'; expected '{FORMAT}'"),
                    );
                }
                None => {}
            }
            t.name = mf.req_str(r, "name").unwrap_or_default();
            t.description = mf.opt_str(r, "description");
            t.version = mf.opt_str(r, "version");
            t.os = mf.opt_str_list(r, "os").unwrap_or_default();
            t.devices = mf.opt_str_list(r, "devices").unwrap_or_default();
            t.environment = mf.opt_str_list(r, "environment").unwrap_or_default();
            mf.finish_with(r, "metadata", &["maintainer", "scope", "format", "name"]);
        }
    }
    if let Some(i) = f.opt("install") {
        t.install = read_install(r, i, &f.sub("install"));
    }
    for key in ["params", "parameters"] {
        if let Some(p) = f.opt(key) {
            for (k, _, v) in entries(r, p, &f.sub(key)) {
                t.params.push((k, v.clone()));
            }
        }
    }
    if let Some(run) = f.opt("run") {
        let rpath = f.sub("run");
        if let Some(mut rf) = Fields::new(r, run, &rpath) {
            if let Some(steps) = rf.req(r, "steps") {
                t.run_steps = step_list(r, steps, &rf.sub("steps"));
            }
            rf.finish(r, "run");
        }
    }
    if let Some(p) = f.opt("parse") {
        let ppath = f.sub("parse");
        if let Some(mut pf) = Fields::new(r, p, &ppath) {
            let pattern = pf.opt_str(r, "pattern");
            if let (Some(pat), Some(node)) = (&pattern, pf.opt("pattern")) {
                if let Err(e) = crate::pattern::compile_python_regex(pat) {
                    r.error(node, &pf.sub("pattern"), format!("invalid pattern: {e}"));
                }
            }
            let fixupdict = pf
                .opt("fixupdict")
                .map(|x| str_map(r, x, &pf.sub("fixupdict")))
                .unwrap_or_default();
            pf.finish(r, "parse");
            if let Some(pattern) = pattern {
                t.parse = Some(ParseSpec { pattern, fixupdict });
            }
        }
    }
    t.expected = f.opt_str_list(r, "expected").unwrap_or_default();
    f.finish(r, "test definition");
    Some(t)
}

/// Steps are strings; `null` entries are skipped (as LAVA does), numbers become text.
fn step_list(r: &mut Report, n: &Node, path: &str) -> Vec<String> {
    list(r, n, path)
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.is_null())
        .filter_map(|(i, s)| string(r, s, &index(path, i)))
        .collect()
}

fn read_install(r: &mut Report, n: &Node, path: &str) -> Install {
    let mut inst = Install {
        present: true,
        ..Install::default()
    };
    let Some(mut f) = Fields::new(r, n, path) else {
        return inst;
    };
    inst.deps = f
        .opt("deps")
        .map(|d| step_list(r, d, &f.sub("deps")))
        .unwrap_or_default();
    inst.keys = f
        .opt("keys")
        .map(|d| step_list(r, d, &f.sub("keys")))
        .unwrap_or_default();
    inst.sources = f
        .opt("sources")
        .map(|d| step_list(r, d, &f.sub("sources")))
        .unwrap_or_default();
    inst.steps = f
        .opt("steps")
        .map(|d| step_list(r, d, &f.sub("steps")))
        .unwrap_or_default();
    if let Some(g) = f.opt("git-repos") {
        let gpath = f.sub("git-repos");
        for (i, item) in list(r, g, &gpath).iter().enumerate() {
            let ip = index(&gpath, i);
            if let Some(url) = item.as_str() {
                inst.git_repos.push(GitRepo {
                    url: url.to_string(),
                    branch: None,
                    destination: None,
                });
                continue;
            }
            let Some(mut gf) = Fields::new(r, item, &ip) else {
                continue;
            };
            let url = gf.req_str(r, "url");
            let branch = gf.opt_str(r, "branch");
            let destination = gf.opt_str(r, "destination");
            if let (Some(d), Some(node)) = (&destination, gf.opt("destination")) {
                if d.is_empty() || d.contains('/') || d == "." || d == ".." {
                    r.error(
                        node,
                        &gf.sub("destination"),
                        "destination must be a plain directory name inside the test directory",
                    );
                }
            }
            gf.finish(r, "git-repos entry");
            if let Some(url) = url {
                inst.git_repos.push(GitRepo {
                    url,
                    branch,
                    destination,
                });
            }
        }
    }
    let distro: Vec<String> = n
        .as_map()
        .unwrap_or(&[])
        .iter()
        .filter_map(|(k, _)| k.as_str())
        .filter(|k| k.starts_with("deps-"))
        .map(str::to_string)
        .collect();
    for key in &distro {
        if let Some(d) = f.opt(key) {
            let deps = step_list(r, d, &f.sub(key));
            inst.distro_deps
                .push((key["deps-".len()..].to_string(), deps));
        }
    }
    f.finish(r, "install");
    inst
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_corpus_definitions() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/conformance/lava/jobs/testdefs"
        );
        for name in ["params.yaml", "install.yaml"] {
            let path = format!("{dir}/{name}");
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let t = parse_testdef(&path, &text).unwrap_or_else(|r| panic!("{r}"));
            assert!(!t.run_steps.is_empty());
            assert!(t.parse.is_some());
        }
    }

    #[test]
    fn reports_bad_definitions() {
        let err =
            parse_testdef("t.yaml", "metadata:\n  format: nope\nrun:\n  steps: x\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("t.yaml:2:11: metadata.format"), "{text}");
        assert!(
            text.contains("metadata.name: required key not provided"),
            "{text}"
        );
        assert!(text.contains("run.steps: expected a list"), "{text}");
    }
}
