//! A reservation's boot request made into a LAVA job of deploy and boot actions (no test),
//! which the worker runs on the held board as it runs any job's: pure, from the request and
//! the device's rendered configuration.
//!
//! - images on a device with `boot: qemu`: `deploy to: tmpfs` (`-kernel`/`-initrd`/`-dtb`
//!   image arguments, or the disk `image` as `-drive format=raw`) + `boot method: qemu`;
//! - images on a U-Boot device (basalt-board included): `deploy to: tftp` (kernel, ramdisk,
//!   dtb; `nfsrootfs` with `rootfs`) + `boot method: u-boot`, `commands: ramdisk` (or `nfs`);
//! - nothing but prompts: `boot method: minimal` (power on, wait for the prompt);
//! - or LAVA's own `actions` (deploy, boot and command blocks), used as written.
//!
//! The job is then checked as a submission is (LAVA's schema, basalt's parser) and against the
//! device (each deploy `to:` and boot `method:` must be one it lists): a request that cannot
//! run there is refused with the reason.

use basalt_model::device::Device;
use basalt_model::job::ActionBlock;
use basalt_model::yaml::{emit_document, Node, Value as YamlValue};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// The prompt a boot waits for when the request gives none: the busybox shell of basalt's
/// fixtures and demo jobs.
pub const DEFAULT_PROMPT: &str = "/ # ";

/// A boot's timeout when the request gives none.
pub const DEFAULT_TIMEOUT_SECS: u64 = 300;

/// A boot request (docs/reservations.md, "Boot requests"); unknown keys are refused.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramdisk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtb: Option<String>,
    /// A root filesystem: NFS root on U-Boot devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<String>,
    /// A whole disk image (qemu devices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_type: Option<KernelType>,
    /// What the boot waits for (default [`DEFAULT_PROMPT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompts: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    /// LAVA's action blocks, used as written instead of the images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<Value>>,
}

/// A kernel's type for U-Boot (`bootm`/`bootz`/`booti`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelType {
    Image,
    Zimage,
    Uimage,
}

impl KernelType {
    fn name(self) -> &'static str {
        match self {
            KernelType::Image => "image",
            KernelType::Zimage => "zimage",
            KernelType::Uimage => "uimage",
        }
    }
}

impl BootRequest {
    /// The boot's timeout in seconds.
    pub fn timeout_secs(&self) -> u64 {
        self.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS).max(1)
    }
}

/// The held board a boot is for.
#[derive(Clone, Copy, Debug)]
pub struct BootTarget<'a> {
    pub reservation_id: u64,
    pub device_type: &'a str,
    /// The device's architecture (normalised), when its dictionary states it.
    pub arch: Option<&'a str>,
    /// Its rendered configuration.
    pub device: &'a Device,
}

/// Why a boot request cannot run on the device.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BootError {
    /// The request itself is wrong (a URL, a missing image, images and actions both).
    #[error("boot request: {0}")]
    Request(String),
    /// The device cannot boot it that way.
    #[error("boot request on {device}: {why}")]
    Device { device: String, why: String },
    /// The job made of it is not valid (LAVA's verdict).
    #[error("boot request: the job made of it is not valid: {0}")]
    Invalid(String),
}

impl BootRequest {
    /// Replaces every `artifact:NAME` URL of the request (its image fields and any `url:` in
    /// its `actions`) by the artifact's download URL (`resolve`, the master's store). The API
    /// does it at the edge, so that what is stored and sent to the engine has plain URLs.
    pub fn resolve_artifacts(
        &mut self,
        resolve: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), BootError> {
        for (field, value) in [
            ("kernel", &mut self.kernel),
            ("ramdisk", &mut self.ramdisk),
            ("dtb", &mut self.dtb),
            ("rootfs", &mut self.rootfs),
            ("image", &mut self.image),
        ] {
            if let Some(v) = value.as_mut() {
                if v.trim().starts_with("artifact:") {
                    *v = url(field, v, resolve)?;
                }
            }
        }
        if let Some(actions) = self.actions.as_mut() {
            for (i, a) in actions.iter_mut().enumerate() {
                resolve_in(&format!("actions[{i}]"), a, resolve)?;
            }
        }
        Ok(())
    }
}

/// [`BootRequest::resolve_artifacts`] inside one action block: every `url` string value.
fn resolve_in(
    at: &str,
    v: &mut Value,
    resolve: &dyn Fn(&str) -> Option<String>,
) -> Result<(), BootError> {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                let here = format!("{at}.{k}");
                match child {
                    Value::String(s) if k == "url" && s.trim().starts_with("artifact:") => {
                        *s = url(&here, s, resolve)?;
                    }
                    _ => resolve_in(&here, child, resolve)?,
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter_mut().enumerate() {
                resolve_in(&format!("{at}[{i}]"), child, resolve)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Checks a URL of the request and gives it as the job has it: `http(s)://` and `file://`
/// as written, `artifact:NAME` through `resolve` (the master's artifact store).
pub fn url(
    field: &str,
    url: &str,
    resolve: &dyn Fn(&str) -> Option<String>,
) -> Result<String, BootError> {
    let u = url.trim();
    if u.chars().any(|c| c.is_control() || c == ' ') {
        return Err(BootError::Request(format!(
            "'{field}': a URL has no spaces or control characters"
        )));
    }
    if let Some(name) = u.strip_prefix("artifact:") {
        return resolve(name).ok_or_else(|| {
            BootError::Request(format!(
                "'{field}': no artifact named {name:?} in the store"
            ))
        });
    }
    let scheme_ok = ["http://", "https://", "file:///"]
        .iter()
        .any(|s| u.len() > s.len() && u.starts_with(s));
    if !scheme_ok {
        return Err(BootError::Request(format!(
            "'{field}': {u:?} is not an http(s)://, file:/// or artifact:NAME URL"
        )));
    }
    Ok(u.to_string())
}

/// The LAVA job (YAML) that boots `req` on `target`, checked; `resolve` gives an
/// `artifact:NAME`'s URL.
pub fn definition(
    req: &BootRequest,
    target: &BootTarget<'_>,
    resolve: &dyn Fn(&str) -> Option<String>,
) -> Result<String, BootError> {
    let timeout = req.timeout_secs();
    let prompts: Vec<String> = match &req.prompts {
        Some(p) if p.iter().any(|p| !p.is_empty()) => {
            p.iter().filter(|p| !p.is_empty()).cloned().collect()
        }
        Some(_) => return Err(BootError::Request("'prompts' is empty".into())),
        None => vec![DEFAULT_PROMPT.to_string()],
    };
    let u = |field: &str, v: &Option<String>| -> Result<Option<String>, BootError> {
        v.as_deref().map(|v| url(field, v, resolve)).transpose()
    };
    let (kernel, ramdisk, dtb, rootfs, image) = (
        u("kernel", &req.kernel)?,
        u("ramdisk", &req.ramdisk)?,
        u("dtb", &req.dtb)?,
        u("rootfs", &req.rootfs)?,
        u("image", &req.image)?,
    );
    let any_image = kernel.is_some()
        || ramdisk.is_some()
        || dtb.is_some()
        || rootfs.is_some()
        || image.is_some();
    let device = &target.device;
    let on_device = |why: String| BootError::Device {
        device: format!("{} (type {})", device.hostname, target.device_type),
        why,
    };
    let actions: Vec<Value> = if let Some(actions) = &req.actions {
        if any_image {
            return Err(BootError::Request(
                "give images (kernel, ramdisk, ...) or 'actions', not both".into(),
            ));
        }
        if actions.is_empty() {
            return Err(BootError::Request("'actions' is empty".into()));
        }
        actions.clone()
    } else if image.is_some() || (kernel.is_some() && device.has_boot_method("qemu")) {
        if !device.has_boot_method("qemu") {
            return Err(on_device(
                "a disk image boots on qemu devices only: give kernel and ramdisk".into(),
            ));
        }
        qemu_actions(target, &kernel, &ramdisk, &dtb, &image, &prompts, timeout)
    } else if kernel.is_some() {
        if !device.has_boot_method("u-boot") {
            return Err(on_device(
                "it boots with neither qemu nor u-boot: give LAVA 'actions' for it".into(),
            ));
        }
        uboot_actions(req, target, &kernel, &ramdisk, &dtb, &rootfs, &prompts).map_err(on_device)?
    } else if any_image {
        return Err(BootError::Request(
            "a boot needs a 'kernel' or a disk 'image' (or LAVA 'actions')".into(),
        ));
    } else {
        vec![json!({"boot": {"method": "minimal", "prompts": prompts}})]
    };
    let job = json!({
        "device_type": target.device_type,
        "job_name": format!("reservation {}: boot", target.reservation_id),
        "timeouts": {
            "job": {"seconds": timeout},
            "action": {"seconds": timeout},
            "connection": {"seconds": timeout},
        },
        "priority": "medium",
        "visibility": "public",
        "actions": actions,
    });
    let text = emit_document(&node_of(&job));
    check(&text, target)?;
    Ok(text)
}

/// The console a kernel is told to use on `arch`.
fn console(arch: Option<&str>) -> &'static str {
    match arch {
        Some("arm64" | "armv7") => "ttyAMA0",
        _ => "ttyS0",
    }
}

fn qemu_actions(
    target: &BootTarget<'_>,
    kernel: &Option<String>,
    ramdisk: &Option<String>,
    dtb: &Option<String>,
    image: &Option<String>,
    prompts: &[String],
    timeout: u64,
) -> Vec<Value> {
    let mut images = Map::new();
    if let Some(k) = kernel {
        let append = if image.is_some() {
            format!(
                "console={},115200 root=/dev/sda rw panic=-1",
                console(target.arch)
            )
        } else {
            format!("console={},115200 panic=-1", console(target.arch))
        };
        images.insert(
            "kernel".into(),
            json!({"url": k, "image_arg": format!("-kernel {{kernel}} -append \"{append}\"")}),
        );
    }
    if let Some(r) = ramdisk {
        images.insert(
            "initrd".into(),
            json!({"url": r, "image_arg": "-initrd {initrd}", "format": "cpio.newc"}),
        );
    }
    if let Some(d) = dtb {
        images.insert("dtb".into(), json!({"url": d, "image_arg": "-dtb {dtb}"}));
    }
    if let Some(i) = image {
        images.insert(
            "rootfs".into(),
            json!({"url": i, "image_arg": "-drive format=raw,file={rootfs}"}),
        );
    }
    vec![
        json!({"deploy": {"to": "tmpfs", "os": "oe", "images": images}}),
        json!({"boot": {
            "method": "qemu",
            "media": "tmpfs",
            "timeout": {"seconds": timeout},
            "prompts": prompts,
        }}),
    ]
}

fn uboot_actions(
    req: &BootRequest,
    target: &BootTarget<'_>,
    kernel: &Option<String>,
    ramdisk: &Option<String>,
    dtb: &Option<String>,
    rootfs: &Option<String>,
    prompts: &[String],
) -> Result<Vec<Value>, String> {
    if !target.device.has_deploy_method("tftp") {
        return Err("it has no tftp deploy for its U-Boot".into());
    }
    let kernel_type = req.kernel_type.unwrap_or(match target.arch {
        Some("armv7") => KernelType::Zimage,
        _ => KernelType::Image,
    });
    let mut deploy = Map::new();
    deploy.insert("to".into(), json!("tftp"));
    deploy.insert("os".into(), json!("oe"));
    if let Some(k) = kernel {
        deploy.insert(
            "kernel".into(),
            json!({"url": k, "type": kernel_type.name()}),
        );
    }
    let commands = match (ramdisk, rootfs) {
        (Some(r), _) => {
            deploy.insert("ramdisk".into(), json!({"url": r}));
            "ramdisk"
        }
        (None, Some(r)) => {
            deploy.insert("nfsrootfs".into(), json!({"url": r}));
            "nfs"
        }
        (None, None) => {
            return Err("a U-Boot boot needs a 'ramdisk' (or a 'rootfs' for an NFS root)".into())
        }
    };
    if let Some(d) = dtb {
        deploy.insert("dtb".into(), json!({"url": d}));
    }
    Ok(vec![
        json!({"deploy": deploy}),
        json!({"boot": {"method": "u-boot", "commands": commands, "prompts": prompts}}),
    ])
}

/// The job `text` as a submission is checked, then against the device: only deploy, boot and
/// command blocks, each deploy `to:` and boot `method:` one the device lists.
fn check(text: &str, target: &BootTarget<'_>) -> Result<(), BootError> {
    let (job, _) = basalt_model::job::parse_job("boot.yaml", text)
        .map_err(|e| BootError::Invalid(e.to_string()))?;
    let device = target.device;
    let on_device = |why: String| BootError::Device {
        device: format!("{} (type {})", device.hostname, target.device_type),
        why,
    };
    for block in &job.actions {
        match block {
            ActionBlock::Deploy(d) => {
                let to = d.to.name();
                if !device.has_deploy_method(to) {
                    return Err(on_device(format!("it has no deploy to '{to}'")));
                }
            }
            ActionBlock::Boot(b) => {
                let method = b.method.name();
                if !device.has_boot_method(method) {
                    return Err(on_device(format!("it has no boot method '{method}'")));
                }
            }
            ActionBlock::Command(_) => {}
            ActionBlock::Test(_) => {
                return Err(BootError::Request(
                    "a boot has deploy, boot and command actions only: run tests with exec".into(),
                ))
            }
        }
    }
    Ok(())
}

/// A JSON value as a YAML node (for [`emit_document`]).
fn node_of(v: &Value) -> Node {
    Node::new(match v {
        Value::Null => YamlValue::Null,
        Value::Bool(b) => YamlValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => YamlValue::Int(i),
            None => YamlValue::Float(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => YamlValue::Str(s.clone()),
        Value::Array(a) => YamlValue::Seq(a.iter().map(node_of).collect()),
        Value::Object(m) => YamlValue::Map(
            m.iter()
                .map(|(k, v)| (Node::str(k.clone()), node_of(v)))
                .collect(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn rendered(host: &str, dictionary: &str) -> Device {
        let text =
            basalt_model::device::render::render_str(host, dictionary, &[], &BTreeMap::new())
                .unwrap();
        Device::from_yaml(host, &text, host).unwrap()
    }

    fn qemu() -> Device {
        rendered(
            "qemu-01",
            "{% extends 'qemu.jinja2' %}\n{% set arch = 'x86_64' %}\n{% set netdevice = 'none' %}\n",
        )
    }

    fn board() -> Device {
        rendered(
            "board-01",
            "{% extends 'basalt-board.jinja2' %}\n\
             {% set connection_command = 'telnet 127.0.0.1 7101' %}\n\
             {% set power_on_command = 'true' %}\n{% set hard_reset_command = 'true' %}\n\
             {% set power_off_command = 'true' %}\n",
        )
    }

    fn target<'a>(
        device: &'a Device,
        device_type: &'a str,
        arch: Option<&'a str>,
    ) -> BootTarget<'a> {
        BootTarget {
            reservation_id: 41,
            device_type,
            arch,
            device,
        }
    }

    fn none(_: &str) -> Option<String> {
        None
    }

    fn req(j: Value) -> BootRequest {
        serde_json::from_value(j).unwrap()
    }

    #[test]
    fn a_kernel_and_ramdisk_boot_in_qemu_from_tmpfs() {
        let d = qemu();
        let text = definition(
            &req(
                json!({"kernel": "http://files/vmlinux", "ramdisk": "file:///srv/initrd.cpio.gz"}),
            ),
            &target(&d, "qemu", Some("x86_64")),
            &none,
        )
        .unwrap();
        assert!(text.contains("to: tmpfs"), "{text}");
        assert!(text.contains("method: qemu"), "{text}");
        assert!(text.contains("-kernel {kernel}"), "{text}");
        assert!(text.contains("console=ttyS0"), "{text}");
        assert!(text.contains("-initrd {initrd}"), "{text}");
        assert!(text.contains("/ # "), "the default prompt: {text}");
        assert!(!text.contains("test:"), "{text}");
        // and it reads back as a valid job
        basalt_model::job::parse_job("b.yaml", &text).unwrap();
    }

    #[test]
    fn a_disk_image_boots_in_qemu_and_nowhere_else() {
        let d = qemu();
        let text = definition(
            &req(
                json!({"image": "https://ci/disk.img", "timeout_secs": 120, "prompts": ["login:"]}),
            ),
            &target(&d, "qemu", Some("x86_64")),
            &none,
        )
        .unwrap();
        assert!(text.contains("-drive format=raw,file={rootfs}"), "{text}");
        assert!(text.contains("login:"), "{text}");
        assert!(text.contains("seconds: 120"), "{text}");
        let b = board();
        let e = definition(
            &req(json!({"image": "https://ci/disk.img"})),
            &target(&b, "basalt-board", Some("arm64")),
            &none,
        )
        .unwrap_err();
        assert!(matches!(e, BootError::Device { .. }), "{e}");
        assert!(e.to_string().contains("board-01"), "{e}");
    }

    #[test]
    fn a_u_boot_board_boots_over_tftp() {
        let b = board();
        let text = definition(
            &req(json!({"kernel": "http://f/Image", "ramdisk": "http://f/initrd", "dtb": "http://f/board.dtb"})),
            &target(&b, "basalt-board", Some("arm64")),
            &none,
        )
        .unwrap();
        assert!(text.contains("to: tftp"), "{text}");
        assert!(text.contains("method: u-boot"), "{text}");
        assert!(text.contains("commands: ramdisk"), "{text}");
        assert!(text.contains("type: image"), "{text}");
        let nfs = definition(
            &req(json!({"kernel": "http://f/zImage", "rootfs": "http://f/root.tar.xz"})),
            &target(&b, "basalt-board", Some("armv7")),
            &none,
        )
        .unwrap();
        assert!(nfs.contains("nfsrootfs"), "{nfs}");
        assert!(nfs.contains("commands: nfs"), "{nfs}");
        assert!(nfs.contains("type: zimage"), "{nfs}");
        let e = definition(
            &req(json!({"kernel": "http://f/Image"})),
            &target(&b, "basalt-board", Some("arm64")),
            &none,
        )
        .unwrap_err();
        assert!(e.to_string().contains("ramdisk"), "{e}");
    }

    #[test]
    fn no_images_is_a_minimal_boot_and_actions_are_used_as_written() {
        let d = qemu();
        let text = definition(&req(json!({})), &target(&d, "qemu", None), &none).unwrap();
        assert!(text.contains("method: minimal"), "{text}");
        let text = definition(
            &req(json!({"actions": [{"boot": {"method": "minimal", "prompts": ["# "]}}]})),
            &target(&d, "qemu", None),
            &none,
        )
        .unwrap();
        assert!(text.contains("'# '") || text.contains("\"# \""), "{text}");
        // a method the device does not have
        let e = definition(
            &req(json!({"actions": [{"boot": {"method": "u-boot", "commands": "ramdisk", "prompts": ["# "]}}]})),
            &target(&d, "qemu", None),
            &none,
        )
        .unwrap_err();
        assert!(e.to_string().contains("no boot method 'u-boot'"), "{e}");
        // tests are refused; so are images with actions
        let e = definition(
            &req(json!({"actions": [
                {"boot": {"method": "minimal", "prompts": ["# "]}},
                {"test": {"definitions": [{"from": "inline", "name": "t", "path": "t.yaml",
                  "repository": {"metadata": {"format": "Lava-Test Test Definition 1.0", "name": "t"},
                                 "run": {"steps": ["true"]}}}]}}
            ]})),
            &target(&d, "qemu", None),
            &none,
        )
        .unwrap_err();
        assert!(e.to_string().contains("exec"), "{e}");
        let e = definition(
            &req(json!({"kernel": "http://k", "actions": [{"boot": {"method": "minimal"}}]})),
            &target(&d, "qemu", None),
            &none,
        )
        .unwrap_err();
        assert!(e.to_string().contains("not both"), "{e}");
        // LAVA's verdict on what was written
        let e = definition(
            &req(
                json!({"actions": [{"boot": {"method": "minimal", "prompts": ["# "], "timeout": {"weeks": 1}}}]}),
            ),
            &target(&d, "qemu", None),
            &none,
        );
        assert!(e.is_err());
    }

    #[test]
    fn artifact_urls_of_a_request_are_resolved_at_the_edge() {
        let resolve = |name: &str| (name == "k").then(|| "http://m/artifacts/k".to_string());
        let mut req: BootRequest = serde_json::from_value(json!({
            "kernel": "artifact:k",
            "ramdisk": "http://x/r",
            "actions": [{"deploy": {"images": {"kernel": {"url": "artifact:k"}}}}]
        }))
        .unwrap();
        req.resolve_artifacts(&resolve).unwrap();
        assert_eq!(req.kernel.as_deref(), Some("http://m/artifacts/k"));
        assert_eq!(req.ramdisk.as_deref(), Some("http://x/r"));
        let actions = serde_json::to_string(&req.actions).unwrap();
        assert!(actions.contains("http://m/artifacts/k"), "{actions}");
        let mut bad: BootRequest =
            serde_json::from_value(json!({"actions": [{"deploy": {"url": "artifact:nope"}}]}))
                .unwrap();
        let e = bad.resolve_artifacts(&resolve).unwrap_err().to_string();
        assert!(
            e.contains("actions[0].deploy.url") && e.contains("nope"),
            "{e}"
        );
    }

    #[test]
    fn urls_are_checked_and_artifacts_resolved() {
        let resolve = |name: &str| {
            (name == "vmlinux-1").then(|| "http://master/artifacts/vmlinux-1".to_string())
        };
        assert_eq!(
            url("kernel", "artifact:vmlinux-1", &resolve).unwrap(),
            "http://master/artifacts/vmlinux-1"
        );
        let e = url("kernel", "artifact:nope", &resolve).unwrap_err();
        assert!(e.to_string().contains("no artifact named \"nope\""), "{e}");
        for bad in [
            "ftp://x/k",
            "/srv/k",
            "file://relative",
            "http://a b",
            "http://",
        ] {
            assert!(url("kernel", bad, &resolve).is_err(), "{bad}");
        }
        assert!(serde_json::from_value::<BootRequest>(json!({"kernal": "x"})).is_err());
    }
}
