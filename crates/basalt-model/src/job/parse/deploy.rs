//! `deploy:` blocks and their images (LAVA's `url()` shapes).

use super::*;

/// Every deploy `to:` LAVA knows; those outside [`DeployTo::IN_SCOPE`] are warnings.
pub(super) const LAVA_DEPLOY_TO: &[&str] = &[
    "avh",
    "docker",
    "download",
    "downloads",
    "fastboot",
    "flasher",
    "fvp",
    "image",
    "iso-installer",
    "lxc",
    "mps",
    "musca",
    "nbd",
    "nfs",
    "overlay",
    "qdl",
    "qemu-nfs",
    "recovery",
    "sata",
    "sd",
    "ssh",
    "tftp",
    "tmpfs",
    "u-boot-ums",
    "usb",
    "usbg-ms",
    "uuu",
    "vemsd",
];

/// Image keys of the tftp/nfs strategies, in the order LAVA downloads them.
pub const TFTP_IMAGE_KEYS: &[&str] = &[
    "ramdisk",
    "kernel",
    "dtb",
    "nfsrootfs",
    "modules",
    "preseed",
    "tee",
];

/// Which of LAVA's `url()` shapes an image has: the keys beyond `url`, `compression`,
/// checksums, `archive`, `headers` and `use_cache` that LAVA checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ImageKind {
    Plain,
    /// tmpfs / nfs images: `image_arg`.
    Tmpfs,
    /// tftp kernel: `type`.
    Kernel,
    /// tftp ramdisk: `install_modules`, `install_overlay`, `header`.
    Ramdisk,
    /// tftp nfsrootfs: `install_modules`, `install_overlay`, `prefix`.
    Nfsrootfs,
    /// usb / sata `image`: `root_partition`.
    Media,
}

pub(super) fn read_image(
    r: &mut Report,
    n: &Node,
    path: &str,
    kind: ImageKind,
) -> Option<ImageRef> {
    let mut f = Fields::strict(r, n, path)?;
    let mut img = ImageRef {
        mark: n.mark,
        ..ImageRef::default()
    };
    img.url = f.req_str(r, "url").unwrap_or_default();
    if let Some(c) = f.opt_nullable("compression").filter(|c| !c.is_null()) {
        if let Some(s) = text(r, c, &f.sub("compression"), true) {
            img.compression = Compression::from_name(&s);
            if img.compression.is_none() {
                one_of(
                    r,
                    c,
                    &f.sub("compression"),
                    "compression",
                    &s,
                    &Compression::NAMES,
                );
            }
        }
    }
    if let Some(a) = f.opt("archive") {
        img.archive = enum_str(r, a, &f.sub("archive"), &["tar"]);
    }
    img.md5sum = f.opt_str(r, "md5sum");
    img.sha256sum = f.opt_str(r, "sha256sum");
    img.sha512sum = f.opt_str(r, "sha512sum");
    f.opt_bool(r, "use_cache");
    if let Some(h) = f.opt("headers") {
        if expect_map(r, h, &f.sub("headers")) {
            img.headers = lenient(r, |r| str_map(r, h, &f.sub("headers")));
        }
    }
    let checked = |k: ImageKind| k == kind;
    let lenient_str = |f: &mut Fields<'_>, r: &mut Report, key: &str, lava: bool| {
        if lava {
            f.opt_str(r, key)
        } else {
            let path = f.sub(key);
            f.opt(key).and_then(|n| lenient(r, |r| string(r, n, &path)))
        }
    };
    img.image_arg = lenient_str(&mut f, r, "image_arg", checked(ImageKind::Tmpfs));
    if let (Some(arg), Some(node)) = (&img.image_arg, f.opt("image_arg")) {
        // A job's QEMU arguments may not reach the host (docs/security.md).
        let checked = shell_words::split(arg)
            .map_err(|e| format!("cannot split '{arg}': {e}"))
            .and_then(|w| super::qemu_args::check_args(&w, super::qemu_args::Files::Placeholders));
        if let Err(e) = checked {
            r.error(node, &f.sub("image_arg"), e);
        }
    }
    img.format = lenient_str(&mut f, r, "format", false);
    if let Some(t) = f.opt("type") {
        let tpath = f.sub("type");
        let read = |r: &mut Report| {
            let s = text(r, t, &tpath, true)?;
            Some(match s.as_str() {
                "image" => KernelType::Image,
                "uimage" => KernelType::UImage,
                "zimage" => KernelType::ZImage,
                _ => {
                    one_of(
                        r,
                        t,
                        &tpath,
                        "kernel type",
                        &s,
                        &["image", "uimage", "zimage"],
                    );
                    return None;
                }
            })
        };
        img.kernel_type = if checked(ImageKind::Kernel) {
            read(r)
        } else {
            lenient(r, read)
        };
    }
    let ramdisk = checked(ImageKind::Ramdisk);
    let rootfs = ramdisk || checked(ImageKind::Nfsrootfs);
    if let Some(h) = f.opt("header") {
        let hpath = f.sub("header");
        img.header = if ramdisk {
            enum_str(r, h, &hpath, &["u-boot"])
        } else {
            lenient(r, |r| string(r, h, &hpath))
        };
    }
    for (key, slot) in [
        ("install_modules", &mut img.install_modules),
        ("install_overlay", &mut img.install_overlay),
    ] {
        if rootfs {
            *slot = f.opt_bool(r, key);
        } else if let Some(v) = f.opt(key) {
            let p = f.sub(key);
            *slot = lenient(r, |r| crate::reader::boolean(r, v, &p));
        }
    }
    img.prefix = lenient_str(&mut f, r, "prefix", checked(ImageKind::Nfsrootfs));
    img.overlays = f.opt("overlays").cloned();
    if let Some(p) = f.opt("partition") {
        let pp = f.sub("partition");
        img.partition = lenient(r, |r| integer(r, p, &pp, 0, 1024));
    }
    if let Some(p) = f.opt("root_partition") {
        let pp = f.sub("root_partition");
        img.root_partition = if checked(ImageKind::Media) {
            integer(r, p, &pp, 0, i64::MAX)
        } else {
            lenient(r, |r| integer(r, p, &pp, 0, 1024))
        };
    }
    f.finish_with(
        r,
        "image",
        &[
            "sparse",
            "overlay_backend",
            "apply-overlay",
            "boot_partition",
        ],
    );
    Some(img)
}

/// `{tool, options, prompt}` of a usb/sata deploy's `download:` and `writer:`.
pub(super) fn check_tool(r: &mut Report, n: &Node, path: &str) {
    if let Some(mut f) = Fields::strict(r, n, path) {
        for key in ["tool", "options", "prompt"] {
            f.req_str(r, key);
        }
        f.finish(r, path.rsplit('.').next().unwrap_or(path));
    }
}

pub(super) fn read_deploy(r: &mut Report, n: &Node, path: &str) -> Option<Deploy> {
    let mut f = Fields::strict(r, n, path)?;
    let common = read_common(r, &mut f);
    let to_node = f.req(r, "to");
    let to_name = to_node.and_then(|t| text(r, t, &f.sub("to"), true));
    let to = match to_name.as_deref() {
        Some("tmpfs") => DeployTo::Tmpfs,
        Some("tftp") => DeployTo::Tftp,
        Some("nfs") => DeployTo::Nfs,
        Some("usb") => DeployTo::Usb,
        Some("sata") => DeployTo::Sata,
        Some("overlay") => DeployTo::Overlay,
        Some(other) => {
            if let Some(t) = to_node {
                other_strategy(
                    r,
                    t,
                    &f.sub("to"),
                    ("deploy target", &format!("deploy to '{other}'")),
                    other,
                    LAVA_DEPLOY_TO,
                    &DeployTo::IN_SCOPE,
                );
            }
            DeployTo::Other(other.to_string())
        }
        None => DeployTo::Other(String::new()),
    };
    // LAVA takes any string: generators leave placeholders when a variable is unset.
    let os = f.opt_str(r, "os");
    let authorize = f
        .opt("authorize")
        .and_then(|a| enum_str(r, a, &f.sub("authorize"), &["ssh"]));
    if let Some(b) = f.opt("overlay_backend") {
        enum_str(
            r,
            b,
            &f.sub("overlay_backend"),
            &["auto", "e2fsprogs", "guestfs"],
        );
    }
    let mut images = Vec::new();
    let mut persistent_nfs = None;
    let mut media_device = None;
    let mut download_tool = None;
    let mut writer = None;
    let mut monitor = false;
    let mut read_images = |r: &mut Report, imgs: &Node, ipath: &str, kind: ImageKind| {
        let all = entries(r, imgs, ipath);
        if all.is_empty() && imgs.as_map().is_some() {
            r.error(imgs, ipath, "'images' is empty");
        }
        for (label, _, v) in all {
            if let Some(img) = read_image(r, v, &join(ipath, &label), kind) {
                images.push((label, img));
            }
        }
    };
    match &to {
        DeployTo::Tmpfs => {
            if let Some(imgs) = f.req(r, "images") {
                read_images(r, imgs, &f.sub("images"), ImageKind::Tmpfs);
            }
            if let Some(t) = f.opt("type") {
                monitor = enum_str(r, t, &f.sub("type"), &["monitor"]).is_some();
            }
            if let Some(u) = f.opt("uefi") {
                if let Some(img) = read_image(r, u, &f.sub("uefi"), ImageKind::Plain) {
                    images.push(("uefi".to_string(), img));
                }
            }
        }
        DeployTo::Nfs => {
            // LAVA's nfs schema: either nfsrootfs/modules, or images (either passes).
            if let Some(imgs) = f.opt("images") {
                let ipath = f.sub("images");
                lenient(r, |r| read_images(r, imgs, &ipath, ImageKind::Tmpfs));
            }
        }
        DeployTo::Usb | DeployTo::Sata => {
            if let Some(imgs) = f.opt("images") {
                let ipath = f.sub("images");
                if imgs.as_map().is_some() && imgs.get("image").is_none() {
                    r.error(imgs, &join(&ipath, "image"), "required key not provided");
                }
                read_images(r, imgs, &ipath, ImageKind::Plain);
            }
        }
        DeployTo::Overlay => {
            if let Some(imgs) = f.opt("images") {
                let ipath = f.sub("images");
                lenient(r, |r| read_images(r, imgs, &ipath, ImageKind::Tmpfs));
            }
        }
        _ => {}
    }
    match &to {
        DeployTo::Tftp | DeployTo::Nfs => {
            for key in TFTP_IMAGE_KEYS {
                let Some(v) = f.opt(key) else {
                    continue;
                };
                let kind = match (*key, &to) {
                    ("kernel", DeployTo::Tftp) => ImageKind::Kernel,
                    ("ramdisk", DeployTo::Tftp) => ImageKind::Ramdisk,
                    ("nfsrootfs", DeployTo::Tftp) => ImageKind::Nfsrootfs,
                    _ => ImageKind::Plain,
                };
                let lava_checks = to == DeployTo::Tftp || ["nfsrootfs", "modules"].contains(key);
                let kpath = f.sub(key);
                let img = if lava_checks {
                    read_image(r, v, &kpath, kind)
                } else {
                    lenient(r, |r| read_image(r, v, &kpath, kind))
                };
                if let Some(img) = img {
                    images.push((key.to_string(), img));
                }
            }
            if to == DeployTo::Tftp {
                if let Some(d) = f.opt("dtbo") {
                    let dpath = f.sub("dtbo");
                    // LAVA stages overlay i under `dtbo<i>/` and applies them in order
                    for (i, item) in list(r, d, &dpath).iter().enumerate() {
                        if let Some(img) = read_image(r, item, &index(&dpath, i), ImageKind::Plain)
                        {
                            images.push((format!("dtbo{i}"), img));
                        }
                    }
                }
                if let Some(x) = f.opt("extra_files") {
                    let xpath = f.sub("extra_files");
                    for (k, _, v) in entries(r, x, &xpath) {
                        read_image(r, v, &join(&xpath, &k), ImageKind::Plain);
                    }
                }
            }
            if let Some(p) = f.opt("persistent_nfs") {
                let ppath = f.sub("persistent_nfs");
                if let Some(mut pf) = Fields::strict(r, p, &ppath) {
                    pf.req_str(r, "address");
                    pf.opt_bool(r, "install_overlay");
                    pf.finish(r, "persistent_nfs");
                }
                if f.has("nfsrootfs") {
                    r.error(p, &ppath, "'persistent_nfs' and 'nfsrootfs' are exclusive");
                }
                persistent_nfs = Some(p.clone());
            }
            if to == DeployTo::Tftp
                && !f.has("kernel")
                && !f.has("ramdisk")
                && !f.has("nfsrootfs")
                && !f.has("persistent_nfs")
            {
                r.warn(
                    n,
                    path,
                    "a tftp deploy without kernel, ramdisk or nfsrootfs deploys nothing",
                );
            }
        }
        DeployTo::Usb | DeployTo::Sata => {
            media_device = f.req_str(r, "device");
            if let Some(i) = f.opt("image") {
                if f.has("images") {
                    r.error(i, &f.sub("image"), "'image' and 'images' are exclusive");
                }
                if let Some(img) = read_image(r, i, &f.sub("image"), ImageKind::Media) {
                    images.push(("image".to_string(), img));
                }
            }
            if images.is_empty() {
                r.warn(
                    n,
                    path,
                    "no 'image' or 'images': the media is used as it is",
                );
            }
            download_tool = f.opt("download").cloned();
            if let Some(d) = &download_tool {
                check_tool(r, d, &f.sub("download"));
            }
            writer = f.opt("writer").cloned();
            if let Some(w) = &writer {
                check_tool(r, w, &f.sub("writer"));
            }
            if let Some(t) = f.opt("tool") {
                if let Some(mut tf) = Fields::strict(r, t, &f.sub("tool")) {
                    if tf.req(r, "prompts").is_some() {
                        tf.opt_list_of_str(r, "prompts");
                    }
                    tf.finish(r, "tool");
                }
            }
            f.opt_bool(r, "uniquify");
        }
        _ => {}
    }
    let scope_keys: &[&str] = &[
        "dtbo",
        "extra_files",
        "tool",
        "uniquify",
        "nfs_url",
        "type",
        "images",
        "uefi",
        "kernel",
        "ramdisk",
        "dtb",
        "nfsrootfs",
        "modules",
        "preseed",
        "tee",
        "persistent_nfs",
        "image",
        "device",
        "download",
        "writer",
    ];
    if matches!(to, DeployTo::Other(_)) {
        // Keys of strategies basalt does not implement are not ours to judge.
        let all: Vec<&str> = n
            .as_map()
            .unwrap_or(&[])
            .iter()
            .filter_map(|(k, _)| k.as_str())
            .collect();
        f.finish_with(r, "deploy", &all);
    } else {
        f.finish_with(r, &format!("deploy to {}", to.name()), scope_keys);
    }
    Some(Deploy {
        common,
        to,
        os,
        images,
        authorize,
        persistent_nfs,
        media_device,
        download_tool,
        writer,
        monitor,
        node: n.clone(),
    })
}
