//! LAVA's own device-type templates render with basalt's engine exactly as with Jinja2: each
//! dictionary of the corpus, rendered with the context LAVA used, equals the rendered file.

mod common;

use basalt::device::render::render_dictionary;
use basalt::yaml::{load, Node, Value};
use common::corpus;
use std::collections::BTreeMap;

fn ctx(pairs: &[(&str, Node)]) -> BTreeMap<String, Node> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

#[test]
fn corpus_dictionaries_render_as_lava_renders_them() {
    let amd64 = || {
        ctx(&[
            ("arch", Node::str("amd64")),
            ("no_kvm", Node::new(Value::Bool(true))),
        ])
    };
    let cases: Vec<(&str, BTreeMap<String, Node>)> = vec![
        ("qemu01", amd64()),
        ("kvm01", amd64()),
        (
            "kvm02",
            ctx(&[
                ("arch", Node::str("arm64")),
                ("netdevice", Node::str("tap")),
                (
                    "extra_options",
                    Node::new(Value::Seq(vec![
                        Node::str("-smp"),
                        Node::new(Value::Int(1)),
                    ])),
                ),
            ]),
        ),
        ("bbb-01", BTreeMap::new()),
        ("bbb-02", BTreeMap::new()),
        ("bbb-03", BTreeMap::new()),
        ("cubie1", BTreeMap::new()),
        ("juno-uboot-01", BTreeMap::new()),
        ("juno-01", ctx(&[("bootloader_prompt", Node::str("juno#"))])),
        ("mustang1", BTreeMap::new()),
        ("x15-01", BTreeMap::new()),
        ("zcu102", BTreeMap::new()),
    ];
    let dir = corpus().join("devices");
    let types = vec![dir.join("device-types")];
    let mut failures = Vec::new();
    for (name, context) in &cases {
        let dict = dir.join("dictionaries").join(format!("{name}.jinja2"));
        let rendered = match render_dictionary(&dict, &types, context) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let ours = load(&rendered)
            .unwrap_or_else(|e| panic!("{name}: our output is not YAML: {e}\n{rendered}"));
        let expected_text =
            std::fs::read_to_string(dir.join("rendered").join(format!("{name}.yaml"))).unwrap();
        let expected = load(&expected_text).unwrap();
        if !ours.data_eq(&expected) {
            failures.push(format!("{name}: differs\n{}", diff(&ours, &expected, "")));
        }
    }
    assert_eq!(cases.len(), 12);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The first differing paths, for a readable failure.
fn diff(a: &Node, b: &Node, path: &str) -> String {
    match (&a.value, &b.value) {
        (Value::Map(x), Value::Map(_)) => {
            let mut out = String::new();
            for (k, v) in x {
                let key = k.scalar_text().unwrap_or_default();
                match b.get(&key) {
                    Some(w) if v.data_eq(w) => {}
                    Some(w) => out.push_str(&diff(v, w, &format!("{path}.{key}"))),
                    None => out.push_str(&format!("  {path}.{key}: only in ours\n")),
                }
            }
            for (k, _) in b.as_map().unwrap_or(&[]) {
                let key = k.scalar_text().unwrap_or_default();
                if a.get(&key).is_none() {
                    out.push_str(&format!("  {path}.{key}: missing in ours\n"));
                }
            }
            out
        }
        _ => format!("  {path}: ours {:?} expected {:?}\n", a.value, b.value),
    }
}
