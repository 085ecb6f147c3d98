//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// LAVA's conformance corpus (`shared/conformance/lava`), loaded in place, never copied.
/// `BASALT_LAVA_CORPUS` overrides the search.
pub fn corpus() -> PathBuf {
    if let Ok(p) = std::env::var("BASALT_LAVA_CORPUS") {
        return PathBuf::from(p);
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        manifest.join("../shared/conformance/lava"),
        manifest.join("../../shared/conformance/lava"),
        PathBuf::from("/work/shared/conformance/lava"),
    ];
    for c in candidates {
        if c.join("README.md").is_file() {
            return c;
        }
    }
    panic!("LAVA conformance corpus not found: set BASALT_LAVA_CORPUS to shared/conformance/lava");
}

/// The `.yaml` files of a corpus folder, sorted.
pub fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(corpus().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    v.sort();
    v
}
