//! The crate's layering (the map in `src/lib.rs`): a module uses only modules of its own
//! layer or below (the model, `basalt-model`, is below them all); and the crates depend one
//! way: the model and the HAL know no dispatcher, the master links no HAL, the worker no
//! dispatcher library and no master. Read from the sources: every `crate::<module>` path outside comments and
//! unit tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The layers of `src/lib.rs`, bottom first.
const LAYERS: &[&[&str]] = &[
    &["error"],
    &["host"],
    &["device", "overlay", "testshell"],
    &["log", "protocols"],
    &["action"],
    &["actions"],
    &["pipeline", "run", "client"],
    &["lab", "admin", "hold"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules `text` names as `crate::NAME`.
fn uses(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        // `$crate::` in macros names the crate too
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.push(name);
        }
        rest = after;
    }
    out
}

#[test]
fn no_module_uses_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut seen = BTreeMap::new();
    let mut wrong = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "main" || top == "lib" || top == "bin" || top == "cli" {
            // the binaries (and `cli/`, the `basalt` binary's modules) and the crate root sit
            // on top of everything
            continue;
        }
        let Some(mine) = layer_of(&top) else {
            wrong.push(format!(
                "{}: module '{top}' is in no layer of src/lib.rs's map",
                rel.display()
            ));
            continue;
        };
        *seen.entry(top.clone()).or_insert(0) += 1;
        // code only: doc comments may point anywhere, and a file's unit tests (its
        // `#[cfg(test)]` module, last) may use the whole crate
        let full = std::fs::read_to_string(f).unwrap();
        let code = full.split("#[cfg(test)]").next().unwrap_or_default();
        let text: String = code
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for used in uses(&text) {
            match layer_of(&used) {
                Some(l) if l > mine => wrong.push(format!(
                    "{}: '{top}' (layer {mine}) uses crate::{used} (layer {l})",
                    rel.display()
                )),
                _ => {}
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // every layer's modules exist: the map is not stale
    for m in LAYERS.iter().flat_map(|l| l.iter()) {
        assert!(seen.contains_key(*m), "src/{m} is gone: update the map");
    }
}

#[test]
fn the_crate_map_lists_every_module() {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    for m in LAYERS.iter().flat_map(|l| l.iter()) {
        assert!(
            lib.contains(&format!("`{m}`")),
            "src/lib.rs's map does not name `{m}`"
        );
        assert!(lib.contains(&format!("pub mod {m};")), "no `pub mod {m};`");
    }
}

/// The dependencies of a crate's `[dependencies]` (not its dev-dependencies): (name, its path
/// for a path dependency).
fn deps(manifest: &str) -> Vec<(String, Option<String>)> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(manifest)).unwrap();
    let mut deps = Vec::new();
    let mut in_deps = false;
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            in_deps = l == "[dependencies]";
            continue;
        }
        if in_deps && !l.starts_with('#') {
            if let Some((name, _)) = l.split_once('=') {
                let path = l
                    .split("path = \"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .map(String::from);
                deps.push((name.trim().to_string(), path));
            }
        }
    }
    deps
}

/// The path dependencies of a crate's `[dependencies]`.
fn path_deps(manifest: &str) -> Vec<String> {
    deps(manifest)
        .into_iter()
        .filter_map(|(n, path)| path.map(|_| n))
        .collect()
}

#[test]
fn the_worker_links_no_http_server_and_no_database() {
    // the worker and the crates it links, followed through their path dependencies
    const BANNED: &[&str] = &[
        "axum",
        "hyper",
        "rusqlite",
        "postgres",
        "tokio-postgres",
        "sqlx",
    ];
    let mut todo = vec![PathBuf::from("crates/basalt-worker")];
    let mut seen = Vec::new();
    while let Some(dir) = todo.pop() {
        let m = dir.join("Cargo.toml");
        for (name, path) in deps(&m.to_string_lossy()) {
            assert!(
                !BANNED.contains(&name.as_str()),
                "{} depends on {name}",
                m.display()
            );
            if let Some(p) = path.filter(|_| !seen.contains(&name)) {
                todo.push(dir.join(p));
                seen.push(name);
            }
        }
    }
    assert!(seen.iter().any(|n| n == "basalt-link"), "{seen:?}");
}

#[test]
fn the_worker_links_no_libudev() {
    // the HAL's USB inventory (libudev) is a feature the `basalt` CLI enables; the worker's
    // HAL, built alone (`cargo build -p basalt-worker`), has none of it
    let hal = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("hal/Cargo.toml"))
        .unwrap();
    let udev = hal.lines().find(|l| l.starts_with("udev ")).unwrap();
    assert!(udev.contains("optional = true"), "{udev}");
    assert!(!hal
        .lines()
        .any(|l| l.starts_with("default") && l.contains("usb-inventory")));
    let worker = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/basalt-worker/Cargo.toml"),
    )
    .unwrap();
    let hal_dep = worker
        .lines()
        .find(|l| l.starts_with("basalt-hal "))
        .unwrap();
    assert!(!hal_dep.contains("usb-inventory"), "{hal_dep}");
    assert!(deps("crates/basalt-worker/Cargo.toml")
        .iter()
        .all(|(n, _)| n != "udev"));
    let cli =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    assert!(cli
        .lines()
        .any(|l| l.starts_with("basalt-hal ") && l.contains("usb-inventory")));
}

#[test]
fn the_crates_depend_one_way() {
    let forbidden: &[(&str, &[&str])] = &[
        ("crates/basalt-model/Cargo.toml", &["basalt", "basalt-hal"]),
        ("hal/Cargo.toml", &["basalt", "basalt-model"]),
        (
            "crates/basalt-proto/Cargo.toml",
            &["basalt", "basalt-hal", "basalt-model"],
        ),
        (
            "crates/basalt-link/Cargo.toml",
            &["basalt", "basalt-hal", "basalt-model"],
        ),
        ("crates/basalt-master/Cargo.toml", &["basalt", "basalt-hal"]),
        (
            "crates/basalt-worker/Cargo.toml",
            &["basalt", "basalt-master"],
        ),
    ];
    for (manifest, banned) in forbidden {
        let deps = path_deps(manifest);
        for b in *banned {
            assert!(!deps.iter().any(|d| d == b), "{manifest} depends on {b}");
        }
    }
    assert!(path_deps("Cargo.toml").iter().any(|d| d == "basalt-model"));
}
