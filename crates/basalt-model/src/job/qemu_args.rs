//! Which QEMU arguments and context values a job may pass (docs/security.md).
//!
//! A job file is untrusted; QEMU runs with the worker's privileges. An option that names a
//! host path (`-D`, `-pidfile`, `-drive file=/dev/sda`), opens a host channel (`-chardev
//! socket`, `-serial file:`, `-monitor`, `-qmp`, `-gdb`) or changes how QEMU runs on the host
//! (`-daemonize`, `-runas`, `-sandbox`, `-L`, `-plugin`) would let a job read or write the
//! host. So a job's `image_arg`, `extra_options`, `serial` and `vga` may only carry the options
//! in [`OPTIONS`], with file values that are the job's own images; the device dictionary,
//! written by the lab admin, is not checked here. The same rules run at validate (with the
//! file and line) and when the command line is built (after `{label}` substitution).

use std::path::Path;

/// How a job names its own files in QEMU arguments.
#[derive(Clone, Copy, Debug)]
pub enum Files<'a> {
    /// In the job file: a `{label}` placeholder of one of its images.
    Placeholders,
    /// On the command line: a path inside the job's directory.
    Inside(&'a Path),
}

/// What the value of an option may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    /// No value.
    Flag,
    /// Any text (guest-side only: `-append`, `-name`).
    Text,
    /// A list of `key=value` properties with no host path in them.
    Props,
    /// One of the job's own files.
    File,
    /// `-drive`: properties; `file=` one of the job's files.
    Drive,
    /// `-device`: a guest device (no host pass-through); file properties are the job's.
    Device,
    /// `-object`: back-ends without host files.
    Object,
    /// `-net`: a guest NIC, or none (host back-ends are the dictionary's).
    Net,
    /// `-chardev`: back-ends that touch nothing on the host.
    Chardev,
    /// `-bios`: a firmware name from QEMU's own directory, or one of the job's files.
    Firmware,
    /// `-serial`: the console, nothing, or a chardev (which a job can only make harmless).
    Serial,
    /// `-audiodev`: only the `none` back-end.
    Audio,
    /// One of a few words.
    OneOf(&'static [&'static str]),
}

/// The options a job may give QEMU, with their rules. Anything else belongs to the device
/// dictionary.
const OPTIONS: &[(&str, Rule)] = &[
    ("kernel", Rule::File),
    ("initrd", Rule::File),
    ("dtb", Rule::File),
    ("append", Rule::Text),
    ("drive", Rule::Drive),
    ("hda", Rule::File),
    ("hdb", Rule::File),
    ("hdc", Rule::File),
    ("hdd", Rule::File),
    ("cdrom", Rule::File),
    ("fda", Rule::File),
    ("fdb", Rule::File),
    ("sd", Rule::File),
    ("pflash", Rule::File),
    ("mtdblock", Rule::File),
    ("bios", Rule::Firmware),
    ("device", Rule::Device),
    ("object", Rule::Object),
    ("net", Rule::Net),
    ("nic", Rule::OneOf(&["none"])),
    ("chardev", Rule::Chardev),
    ("m", Rule::Props),
    ("smp", Rule::Props),
    ("cpu", Rule::Props),
    ("machine", Rule::Props),
    ("M", Rule::Props),
    ("accel", Rule::Props),
    ("boot", Rule::Props),
    ("rtc", Rule::Props),
    ("global", Rule::Props),
    ("numa", Rule::Props),
    ("icount", Rule::Props),
    ("overcommit", Rule::Props),
    ("watchdog-action", Rule::Props),
    ("fw_cfg", Rule::Props),
    ("smbios", Rule::Props),
    ("name", Rule::Text),
    ("uuid", Rule::Text),
    ("k", Rule::Text),
    ("d", Rule::Props),
    ("msg", Rule::Props),
    (
        "vga",
        Rule::OneOf(&["std", "cirrus", "vmware", "qxl", "virtio", "none"]),
    ),
    ("display", Rule::OneOf(&["none"])),
    ("vnc", Rule::OneOf(&["none"])),
    // `mon:stdio` puts QEMU's monitor on the console (LAVA's own Zephyr jobs use it); what
    // the monitor can start runs confined, as QEMU does (docs/security.md).
    ("serial", Rule::Serial),
    ("parallel", Rule::OneOf(&["none"])),
    ("monitor", Rule::OneOf(&["none"])),
    ("audiodev", Rule::Audio),
    ("nographic", Rule::Flag),
    ("no-reboot", Rule::Flag),
    ("no-shutdown", Rule::Flag),
    ("snapshot", Rule::Flag),
    ("enable-kvm", Rule::Flag),
    ("no-kvm", Rule::Flag),
    ("usb", Rule::Flag),
    ("no-hpet", Rule::Flag),
    ("no-acpi", Rule::Flag),
    ("S", Rule::Flag),
];

/// Property keys that name a host file or a host channel, wherever they appear.
const HOST_KEYS: &[&str] = &[
    "file",
    "filename",
    "path",
    "romfile",
    "dumpdtb",
    "firmware",
    "rrfile",
    "splash",
    "logfile",
    "chardev",
    "fsdev",
    "mem-path",
    "script",
    "downscript",
    "helper",
    "sock",
    "fd",
    "fds",
    "vhostfd",
    "socket",
];

/// Guest devices that reach host hardware or host channels.
const HOST_DEVICES: &[&str] = &[
    "vfio-",
    "usb-host",
    "vhost-",
    "ivshmem",
    "virtio-9p",
    "pci-assign",
    "usb-redir",
    "xen-",
    "host-",
    "loader",
];

/// `-object` types without host files.
const OBJECTS: &[&str] = &[
    "rng-builtin",
    "rng-random",
    "iothread",
    "throttle-group",
    "memory-backend-ram",
];

/// `-drive` properties a job may set.
const DRIVE_KEYS: &[&str] = &[
    "file",
    "if",
    "format",
    "media",
    "id",
    "index",
    "cache",
    "snapshot",
    "readonly",
    "bus",
    "unit",
    "aio",
    "discard",
    "werror",
    "rerror",
    "detect-zeroes",
    "copy-on-read",
    "serial",
];

/// Block drivers a job may not name as a drive's format: they expose a host directory
/// (`vvfat`) or read or write host files named inside their options.
const HOST_FORMATS: &[&str] = &["vvfat", "blkdebug", "blkverify", "blklogwrites", "quorum"];

/// Checks option words a job gives QEMU. The error names the option.
pub fn check_args(words: &[String], files: Files<'_>) -> Result<(), String> {
    check_args_at(words, files).map_err(|(_, e)| e)
}

/// Like [`check_args`]; the error also gives the index of the offending word.
pub fn check_args_at(words: &[String], files: Files<'_>) -> Result<(), (usize, String)> {
    let mut i = 0;
    while i < words.len() {
        let at = i;
        let word = &words[i];
        i += 1;
        let Some(opt) = word.strip_prefix("--").or_else(|| word.strip_prefix('-')) else {
            // A word without an option is QEMU's first disk image.
            check_file(word, files).map_err(|e| (at, format!("'{word}': {e}")))?;
            continue;
        };
        let Some((_, rule)) = OPTIONS.iter().find(|(name, _)| *name == opt) else {
            return Err((at, format!(
                "QEMU option '{word}' is not one a job may pass (it would reach the host); options beyond {} belong to the device dictionary",
                allowed_summary()
            )));
        };
        if *rule == Rule::Flag {
            continue;
        }
        let Some(value) = words.get(i) else {
            return Err((at, format!("QEMU option '{word}' needs a value")));
        };
        i += 1;
        check_value(*rule, value, files)
            .map_err(|e| (at, format!("QEMU option '{word} {value}': {e}")))?;
    }
    Ok(())
}

/// Checks what a job's context added to the device's QEMU command line: `with_job` is the
/// command line rendered with the job's context, `without` the same dictionary without it.
/// Every option (with its value) that only the job's render has must pass [`check_args`]; the
/// binary may only change to another `qemu-system-ARCH` (the `arch` variable).
pub fn check_added(without: &[String], with_job: &[String]) -> Result<(), String> {
    let (Some(prog), Some(base_prog)) = (with_job.first(), without.first()) else {
        return Ok(());
    };
    if prog != base_prog {
        let arch_ok = prog.strip_prefix("qemu-system-").is_some_and(|a| {
            !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        if !arch_ok {
            return Err(format!("QEMU's binary became '{prog}'"));
        }
    }
    let mut base = pairs(&without[1..]);
    for pair in pairs(&with_job[1..]) {
        if let Some(i) = base.iter().position(|b| *b == pair) {
            base.swap_remove(i);
            continue;
        }
        check_args(&pair, Files::Placeholders)?;
    }
    Ok(())
}

/// Command-line words grouped as QEMU reads them: an option with its value, or a word alone.
fn pairs(words: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        i += 1;
        let opt = w.strip_prefix("--").or_else(|| w.strip_prefix('-'));
        let takes_value = match opt {
            None => false,
            Some(o) => match OPTIONS.iter().find(|(name, _)| *name == o) {
                Some((_, rule)) => *rule != Rule::Flag,
                // Unknown: take a following non-option word as its value.
                None => words.get(i).is_some_and(|n| !n.starts_with('-')),
            },
        };
        let mut pair = vec![w.clone()];
        if takes_value {
            if let Some(v) = words.get(i) {
                pair.push(v.clone());
                i += 1;
            }
        }
        out.push(pair);
    }
    out
}

/// Checks one option's value, as when a context variable fills it (`machine` → `-machine`).
pub fn check_option(opt: &str, value: &str, files: Files<'_>) -> Result<(), String> {
    let Some((_, rule)) = OPTIONS.iter().find(|(name, _)| *name == opt) else {
        return Err(format!("'-{opt}' is not an option a job may pass"));
    };
    check_value(*rule, value, files)
}

fn allowed_summary() -> String {
    "-kernel, -initrd, -dtb, -append, -drive on a job image, -device, -m, -smp, -cpu, -machine, ..."
        .to_string()
}

fn check_value(rule: Rule, value: &str, files: Files<'_>) -> Result<(), String> {
    match rule {
        Rule::Flag | Rule::Text => Ok(()),
        Rule::File => check_file(value, files),
        Rule::Props => check_props(value),
        Rule::OneOf(words) => {
            if words.contains(&value) {
                Ok(())
            } else {
                Err(format!("a job may only give {}", words.join(", ")))
            }
        }
        // A bare name is looked up in QEMU's own firmware directory.
        Rule::Firmware if !is_placeholder(value) && !value.contains('/') => Ok(()),
        Rule::Firmware => check_file(value, files),
        Rule::Serial => {
            let chardev = value.strip_prefix("chardev:").is_some_and(|id| {
                !id.is_empty()
                    && id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            });
            if chardev || ["none", "null", "stdio", "mon:stdio"].contains(&value) {
                Ok(())
            } else {
                Err("a job's serial port is none, null, stdio, mon:stdio or chardev:ID".into())
            }
        }
        Rule::Audio => {
            if value.split(',').next() == Some("none") {
                check_props(value)
            } else {
                Err("a job's audio back-end can only be 'none'".into())
            }
        }
        Rule::Drive => {
            for (key, v) in props(value) {
                let key = key.unwrap_or("file");
                if !DRIVE_KEYS.contains(&key) {
                    return Err(format!("'{key}=' is not a property a job may give a drive"));
                }
                match key {
                    "file" => check_file(v, files)?,
                    "format" if HOST_FORMATS.contains(&v) => {
                        return Err(format!("format '{v}' reaches host files"))
                    }
                    _ => {}
                }
            }
            Ok(())
        }
        Rule::Device => {
            let driver = value.split(',').next().unwrap_or("");
            let driver = driver.strip_prefix("driver=").unwrap_or(driver);
            if driver.is_empty() || HOST_DEVICES.iter().any(|h| driver.starts_with(h)) {
                return Err(format!(
                    "device '{driver}' reaches host hardware or channels"
                ));
            }
            for (key, v) in props(value).into_iter().skip(1) {
                match key {
                    Some("file" | "romfile" | "filename") => check_file(v, files)?,
                    Some(k) if HOST_KEYS.contains(&k) => {
                        return Err(format!("'{k}=' names a host file or channel"))
                    }
                    _ => {}
                }
            }
            Ok(())
        }
        Rule::Object => {
            let kind = value.split(',').next().unwrap_or("");
            if !OBJECTS.contains(&kind) {
                return Err(format!(
                    "object '{kind}' is not one a job may create (only {})",
                    OBJECTS.join(", ")
                ));
            }
            check_props(value)
        }
        Rule::Net => {
            let kind = value.split(',').next().unwrap_or("");
            match kind {
                "nic" => check_props(value),
                // LAVA's `netdevice` choices: the back-end as the host configures it, with no
                // host options (no `script=`, `helper=`, `hostfwd=`, `smb=`, ...).
                "none" | "tap" | "user"
                    if ["", ",restrict=on", ",restrict=off"].contains(&&value[kind.len()..])
                        && (kind == "user" || value == kind) =>
                {
                    Ok(())
                }
                _ => Err(format!(
                    "network back-end '{value}' belongs to the device dictionary (a job may add a guest 'nic', or choose user, tap or none)"
                )),
            }
        }
        Rule::Chardev => {
            let kind = value.split(',').next().unwrap_or("");
            if !["null", "ringbuf", "stdio"].contains(&kind) {
                return Err(format!(
                    "chardev back-end '{kind}' reaches the host (a job may use null, ringbuf or stdio)"
                ));
            }
            check_props(value)
        }
    }
}

/// `key=value,key=value` (QEMU's `,,` escapes a comma); a leading value has no key.
fn props(value: &str) -> Vec<(Option<&str>, &str)> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = value.as_bytes();
    let mut i = 0;
    while i <= bytes.len() {
        if i == bytes.len() || bytes[i] == b',' {
            if i + 1 < bytes.len() && bytes[i + 1] == b',' {
                i += 2;
                continue;
            }
            let part = &value[start..i];
            out.push(match part.split_once('=') {
                Some((k, v)) => (Some(k), v),
                None => (None, part),
            });
            start = i + 1;
        }
        i += 1;
    }
    out
}

/// Properties without host paths: no `/` in a value (but in a guest-side `name=`), no key
/// that names a host file or channel.
fn check_props(value: &str) -> Result<(), String> {
    for (key, v) in props(value) {
        if let Some(k) = key {
            let base = k.rsplit('.').next().unwrap_or(k);
            if HOST_KEYS.contains(&base) {
                return Err(format!("'{k}=' names a host file or channel"));
            }
        }
        if v.contains('/') && key != Some("name") {
            return Err(format!("'{v}' looks like a host path"));
        }
    }
    Ok(())
}

fn is_placeholder(v: &str) -> bool {
    v.len() > 2
        && v.starts_with('{')
        && v.ends_with('}')
        && v[1..v.len() - 1]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// A file value: the job's own image.
fn check_file(v: &str, files: Files<'_>) -> Result<(), String> {
    match files {
        Files::Placeholders if is_placeholder(v) => Ok(()),
        Files::Placeholders => Err(format!(
            "'{v}' is not one of the job's images: name one as {{label}}"
        )),
        Files::Inside(dir) => {
            let p = Path::new(v);
            let inside = p.is_absolute()
                && p.starts_with(dir)
                && !p
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir));
            if inside {
                Ok(())
            } else {
                Err(format!("'{v}' is outside the job's directory"))
            }
        }
    }
}

/// Checks a job's `context` value for a variable LAVA passes to the device-type template, so
/// that it reaches QEMU (or the rendered device) only as the value it names.
pub fn check_context(name: &str, value: &crate::yaml::Node) -> Result<(), String> {
    use crate::yaml::Value;
    let texts: Vec<String> = match &value.value {
        Value::Seq(items) => items.iter().filter_map(|i| i.scalar_text()).collect(),
        _ => value.scalar_text().into_iter().collect(),
    };
    for t in &texts {
        if let Some(c) = t.chars().find(|c| c.is_control()) {
            return Err(format!(
                "control character {:?} in a context value (it could add lines to the device)",
                c
            ));
        }
    }
    const ONE_VALUE: &[&str] = &[
        "arch",
        "machine",
        "cpu",
        "memory",
        "monitor",
        "netdevice",
        "model",
        "guestfs_interface",
        "guestfs_driveid",
        "guestfs_size",
        "boot_console",
        "boot_root",
        "console_device",
        "lava_test_results_dir",
    ];
    if value.as_seq().is_some() && ONE_VALUE.contains(&name) {
        return Err(format!("'{name}' takes one value, not a list"));
    }
    let one = texts.first().map(String::as_str).unwrap_or("");
    let single_word = || -> Result<(), String> {
        if one
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '\'' | '"' | '\\'))
        {
            Err(format!(
                "'{one}' must be one word (it fills one QEMU option)"
            ))
        } else {
            Ok(())
        }
    };
    match name {
        "arch" if one.is_empty() || !one.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
            return Err(format!("'{one}' is not an architecture name"));
        }
        "machine" => {
            single_word()?;
            check_option("machine", one, Files::Placeholders)?;
        }
        "cpu" => {
            single_word()?;
            check_option("cpu", one, Files::Placeholders)?;
        }
        "memory" => {
            single_word()?;
            check_option("m", one, Files::Placeholders)?;
        }
        "monitor" => check_option("monitor", one, Files::Placeholders)?,
        "netdevice" => {
            let ok = [
                "user",
                "tap",
                "none",
                "user,restrict=on",
                "user,restrict=off",
            ];
            if !ok.contains(&one) {
                return Err(format!(
                    "netdevice '{one}' is not one a job may choose ({}); other back-ends belong to the device dictionary",
                    ok.join(", ")
                ));
            }
        }
        "model" => {
            let m = one.strip_prefix("model=").unwrap_or(one);
            if m.is_empty()
                || !m
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            {
                return Err(format!("'{one}' is not a NIC model"));
            }
        }
        "guestfs_interface" | "guestfs_driveid"
            if !one
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-')) =>
        {
            return Err(format!("'{one}' must be a plain name"));
        }
        "serial" | "vga" | "extra_options" => {
            let mut words = Vec::new();
            for t in &texts {
                words
                    .extend(shell_words::split(t).map_err(|e| format!("cannot split '{t}': {e}"))?);
            }
            check_args(&words, Files::Placeholders)?;
        }
        "lava_test_results_dir" => {
            let p = Path::new(one);
            if !p.is_absolute()
                || p.components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(format!("'{one}' must be an absolute path without '..'"));
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        shell_words::split(s).unwrap()
    }

    #[test]
    fn lava_image_args_pass() {
        for a in [
            "-kernel {kernel}",
            "-initrd {initrd}",
            "-dtb {dtb}",
            "-drive format=raw,file={rootfs}",
            "-drive file={rootfs},if=virtio,format=qcow2 -append 'root=/dev/vda rw'",
            "-cdrom {iso}",
            "-hda {disk}",
            "-device virtio-blk-device,drive=hd0 -drive if=none,id=hd0,file={rootfs}",
            "-smp 2 -m 1G -cpu max -machine virt,gic-version=3",
            "-global virtio-blk-device.scsi=off -device virtio-scsi-device,id=scsi",
            "-bios {uefi}",
            "-bios QEMU_EFI.fd",
            "-object rng-random,id=rng0 -device virtio-rng-pci,rng=rng0",
            "-net nic,model=virtio",
            "-nographic -no-reboot",
            "-drive file={rootfs},format=raw,id=hd0,if=virtio -chardev stdio,signal=off,id=char0 -serial chardev:char0",
            "-drive file={rootfs},if=ide,format=raw -serial null -serial stdio",
            "-kernel {kernel} --append \"console=ttyAMA0 root=/dev/vda rw\"",
        ] {
            check_args(&words(a), Files::Placeholders).unwrap_or_else(|e| panic!("{a}: {e}"));
        }
    }

    #[test]
    fn host_reaching_options_are_refused_by_name() {
        for (a, named) in [
            ("-D /tmp/marker", "-D"),
            ("-pidfile /etc/passwd", "-pidfile"),
            ("-chardev file,id=x,path=/etc/cron.d/x", "file"),
            ("-chardev socket,id=x,path=/tmp/s,server=on", "socket"),
            ("-serial file:/etc/cron.d/evil", "-serial"),
            ("-serial unix:/tmp/s", "-serial"),
            ("-serial tcp:127.0.0.1:4444", "-serial"),
            ("-monitor stdio", "-monitor"),
            ("-qmp unix:/tmp/q,server", "-qmp"),
            ("-netdev user,id=n0", "-netdev"),
            ("-net user,hostfwd=tcp::2222-:22", "hostfwd"),
            ("-net tap,script=/tmp/evil", "script"),
            ("-daemonize", "-daemonize"),
            ("-runas nobody", "-runas"),
            ("-sandbox off", "-sandbox"),
            (
                "-object memory-backend-file,id=m,mem-path=/etc",
                "memory-backend-file",
            ),
            ("-L /tmp", "-L"),
            ("-bios /etc/shadow", "-bios"),
            ("-drive file=/dev/sda,format=raw", "/dev/sda"),
            ("-drive file=fat:rw:/etc,format=vvfat", "fat:rw:/etc"),
            ("-drive file={rootfs},format=vvfat", "vvfat"),
            ("-kernel /boot/vmlinuz", "/boot/vmlinuz"),
            ("-machine virt,dumpdtb=/tmp/x", "dumpdtb"),
            ("-device loader,file=/etc/shadow", "loader"),
            ("-device e1000,romfile=/etc/shadow", "/etc/shadow"),
            ("-device vfio-pci,host=01:00.0", "vfio-pci"),
            ("-icount shift=1,rrfile=/tmp/rr", "rrfile"),
            ("-plugin /tmp/evil.so", "-plugin"),
            ("-gdb tcp::1234", "-gdb"),
            ("/etc/shadow", "/etc/shadow"),
        ] {
            let e =
                check_args(&words(a), Files::Placeholders).expect_err(&format!("{a} was accepted"));
            assert!(e.contains(named), "{a}: {e}");
        }
    }

    #[test]
    fn files_on_the_command_line_stay_in_the_job_directory() {
        let dir = Path::new("/var/lib/basalt/job-1");
        let ok = words("-kernel /var/lib/basalt/job-1/dl/Image -drive file=/var/lib/basalt/job-1/dl/root.img,format=raw");
        check_args(&ok, Files::Inside(dir)).unwrap();
        for bad in [
            "-kernel /var/lib/basalt/job-1/../../../etc/shadow",
            "-drive file=/var/lib/basalt/job-10/x",
            "-initrd relative.cpio",
        ] {
            assert!(
                check_args(&words(bad), Files::Inside(dir)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn context_values_fill_one_option() {
        let v = |s: &str| crate::yaml::Node::str(s);
        assert!(check_context("machine", &v("virt,gic-version=3")).is_ok());
        assert!(check_context("machine", &v("pc -D /tmp/x")).is_err());
        assert!(check_context("cpu", &v("max,pauth-impdef=on")).is_ok());
        assert!(check_context("monitor", &v("none")).is_ok());
        assert!(check_context("monitor", &v("unix:/tmp/m,server")).is_err());
        assert!(check_context("netdevice", &v("tap")).is_ok());
        assert!(check_context("netdevice", &v("tap,script=/tmp/evil")).is_err());
        assert!(check_context("arch", &v("../../bin/sh")).is_err());
        assert!(check_context("serial", &v("-serial file:/etc/cron.d/x")).is_err());
        assert!(check_context("vga", &v("-vga none")).is_ok());
        assert!(check_context("bootloader_prompt", &v("=>\npower_on_command: rm")).is_err());
        let opts = crate::yaml::load("['-smp 1', '-global virtio-blk-device.scsi=off']").unwrap();
        assert!(check_context("extra_options", &opts).is_ok());
        let opts = crate::yaml::load("['-smp 1', '-pidfile /etc/passwd']").unwrap();
        assert!(check_context("extra_options", &opts).is_err());
        let list = crate::yaml::load("[virt, '-D /tmp/x']").unwrap();
        assert!(check_context("machine", &list).is_err());
    }

    #[test]
    fn what_a_context_adds_to_the_command_line_is_checked() {
        let base = words("qemu-system-x86_64 -machine pc -m 512 -monitor none -nographic");
        let ok = words("qemu-system-aarch64 -machine virt,gic-version=3 -m 1024 -monitor none -nographic -smp 2");
        check_added(&base, &ok).unwrap();
        for bad in [
            "qemu-system-x86_64 -machine ['pc', -D /tmp/x] -m 512 -monitor none -nographic",
            "/bin/sh -machine pc -m 512 -monitor none -nographic",
            "qemu-system-x86_64 -machine pc -m 512 -monitor unix:/tmp/m,server -nographic",
        ] {
            assert!(check_added(&base, &words(bad)).is_err(), "{bad}");
        }
    }
}
