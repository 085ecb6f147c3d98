//! basalt's own device-type templates, compiled into the binary so that a worker needs
//! nothing but the binary: looked up after the configured directories.

/// `(file name, template)` of every built-in device type.
pub const DEVICE_TYPES: &[(&str, &str)] = &[
    (
        "base.jinja2",
        include_str!("../../../../config/device-types/base.jinja2"),
    ),
    (
        "qemu.jinja2",
        include_str!("../../../../config/device-types/qemu.jinja2"),
    ),
    (
        "u-boot.jinja2",
        include_str!("../../../../config/device-types/u-boot.jinja2"),
    ),
    (
        "beaglebone-black.jinja2",
        include_str!("../../../../config/device-types/beaglebone-black.jinja2"),
    ),
    (
        "basalt-board.jinja2",
        include_str!("../../../../config/device-types/basalt-board.jinja2"),
    ),
];

/// The demo's device dictionary (a QEMU x86_64 machine without network).
pub const DEMO_DEVICE: &str = include_str!("../../../../config/devices/qemu-amd64.jinja2");

/// The lab's QEMU device dictionary: the demo machine with a virtio card on a user-mode
/// network made `restrict=on`, so that a held board's SSH can be forwarded on 127.0.0.1.
pub const LAB_QEMU_DEVICE: &str = include_str!("../../../../config/devices/qemu-amd64-user.jinja2");

/// The demo job, with `@KERNEL@` and `@INITRD@` to fill in.
pub const DEMO_JOB: &str = include_str!("../../../../config/jobs/demo-qemu.yaml");

/// The demo job for basalt-board, with `@KERNEL@`, `@INITRD@` and `@DTB@` to fill in.
pub const DEMO_BOARD_JOB: &str = include_str!("../../../../config/jobs/demo-board.yaml");

/// A built-in template by file name.
pub fn device_type(name: &str) -> Option<&'static str> {
    DEVICE_TYPES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
}
