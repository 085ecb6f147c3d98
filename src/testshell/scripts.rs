//! The helper scripts installed in `/lava-<job>/bin` on the device. They are basalt's own
//! POSIX sh implementations of LAVA's helpers, printing the same signals, so test definitions
//! written for LAVA run unchanged. The dispatcher prepends `#!<lava_test_sh_cmd>`.

/// `(file name, body)` of every helper script.
pub const SCRIPTS: &[(&str, &str)] = &[
    ("lava-test-case", include_str!("scripts/lava-test-case")),
    ("lava-test-set", include_str!("scripts/lava-test-set")),
    ("lava-test-raise", include_str!("scripts/lava-test-raise")),
    (
        "lava-test-reference",
        include_str!("scripts/lava-test-reference"),
    ),
    ("lava-test-event", include_str!("scripts/lava-test-event")),
    (
        "lava-background-process-start",
        include_str!("scripts/lava-background-process-start"),
    ),
    (
        "lava-background-process-stop",
        include_str!("scripts/lava-background-process-stop"),
    ),
    ("lava-test-shell", include_str!("scripts/lava-test-shell")),
    ("lava-test-runner", include_str!("scripts/lava-test-runner")),
    (
        "lava-install-packages",
        include_str!("scripts/lava-install-packages"),
    ),
    ("lava-add-keys", include_str!("scripts/lava-add-keys")),
    ("lava-add-sources", include_str!("scripts/lava-add-sources")),
];

/// `(file name, body)` of the MultiNode helpers (LAVA's `multi_node/`), installed for a
/// MultiNode sub-job only; the overlay writes each one's variables above its body.
pub const MULTINODE_SCRIPTS: &[(&str, &str)] = &[
    (
        "lava-multi-node.lib",
        include_str!("scripts/lava-multi-node.lib"),
    ),
    ("lava-send", include_str!("scripts/lava-send")),
    ("lava-wait", include_str!("scripts/lava-wait")),
    ("lava-wait-all", include_str!("scripts/lava-wait-all")),
    ("lava-sync", include_str!("scripts/lava-sync")),
    ("lava-group", include_str!("scripts/lava-group")),
    ("lava-role", include_str!("scripts/lava-role")),
    ("lava-self", include_str!("scripts/lava-self")),
];
