//! What a worker can do, announced in its Hello, and the check the master makes with it.
//!
//! A capability is a name. The ones basalt's worker knows are constants here; a lab may
//! announce and require names of its own (a rack with a special probe), which travel unchanged.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

/// One named capability of a worker, e.g. `qemu` or `u-boot`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Capability(Cow<'static, str>);

/// The capabilities a worker offers or a device or job requires; sorted, no duplicates.
pub type Capabilities = BTreeSet<Capability>;

impl Capability {
    /// Boots QEMU (`boot: method: qemu`, `qemu-nfs`).
    pub const QEMU: Capability = Capability::known("qemu");
    /// Serves TFTP to boards (`deploy: to: tftp`).
    pub const TFTP: Capability = Capability::known("tftp");
    /// Exports NFS roots (`nfsrootfs`, `deploy: to: nfs`).
    pub const NFS: Capability = Capability::known("nfs");
    /// Drives U-Boot over a console (`boot: method: u-boot`).
    pub const U_BOOT: Capability = Capability::known("u-boot");
    /// Writes images to USB secondary media (`deploy: to: usb`).
    pub const USB: Capability = Capability::known("usb");
    /// Writes images to SATA secondary media (`deploy: to: sata`).
    pub const SATA: Capability = Capability::known("sata");
    /// Reaches the MultiNode coordinator (`protocols: lava-multinode`).
    pub const MULTINODE: Capability = Capability::known("multinode");
    /// Switches power through pdudaemon.
    pub const PDUDAEMON: Capability = Capability::known("pdudaemon");
    /// Holds boards for reservations (`Start.lease`, `hold` messages; protocol 1.3).
    pub const RESERVATIONS: Capability = Capability::known("reservations");

    /// Every capability basalt's worker knows, in name order.
    pub const KNOWN: &'static [Capability] = &[
        Capability::MULTINODE,
        Capability::NFS,
        Capability::PDUDAEMON,
        Capability::QEMU,
        Capability::RESERVATIONS,
        Capability::SATA,
        Capability::TFTP,
        Capability::U_BOOT,
        Capability::USB,
    ];

    const fn known(name: &'static str) -> Capability {
        Capability(Cow::Borrowed(name))
    }

    /// A capability of any name (a lab's own, or one read from config).
    pub fn new(name: impl Into<String>) -> Capability {
        Capability(Cow::Owned(name.into()))
    }

    /// Its name, as it goes on the wire.
    pub fn name(&self) -> &str {
        &self.0
    }

    /// Whether it is one of [`Capability::KNOWN`].
    pub fn is_known(&self) -> bool {
        Capability::KNOWN.contains(self)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A worker lacks capabilities that were required of it; names them all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("worker `{worker}` lacks {}: {}", noun(.missing.len()), list(.missing))]
pub struct MissingCapabilities {
    pub worker: String,
    pub missing: Vec<Capability>,
}

fn noun(n: usize) -> &'static str {
    if n == 1 {
        "a required capability"
    } else {
        "required capabilities"
    }
}

fn list(missing: &[Capability]) -> String {
    let names: Vec<String> = missing.iter().map(|c| format!("`{c}`")).collect();
    names.join(", ")
}

/// The capabilities in `required` that `offered` lacks, in name order (empty: none lack).
pub fn missing_capabilities(required: &Capabilities, offered: &Capabilities) -> Vec<Capability> {
    required.difference(offered).cloned().collect()
}

/// `Ok` when `worker` offers every capability in `required`, else an error naming the missing.
pub fn require_capabilities(
    worker: &str,
    required: &Capabilities,
    offered: &Capabilities,
) -> Result<(), MissingCapabilities> {
    let missing = missing_capabilities(required, offered);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(MissingCapabilities {
            worker: worker.to_owned(),
            missing,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> Capabilities {
        names.iter().map(|n| Capability::new(*n)).collect()
    }

    #[test]
    fn the_missing_capabilities_are_named() {
        let offered = set(&["qemu", "tftp"]);
        assert!(missing_capabilities(&set(&[]), &offered).is_empty());
        assert!(missing_capabilities(&set(&["tftp", "qemu"]), &offered).is_empty());
        assert_eq!(
            missing_capabilities(&set(&["u-boot", "tftp", "multinode"]), &offered),
            vec![Capability::MULTINODE, Capability::U_BOOT]
        );

        assert_eq!(
            require_capabilities("rack-1", &set(&["qemu"]), &offered),
            Ok(())
        );
        let one = require_capabilities("rack-1", &set(&["u-boot"]), &offered).unwrap_err();
        assert_eq!(
            one.to_string(),
            "worker `rack-1` lacks a required capability: `u-boot`"
        );
        let two = require_capabilities("rack-1", &set(&["u-boot", "lab-probe"]), &offered);
        assert_eq!(
            two.unwrap_err().to_string(),
            "worker `rack-1` lacks required capabilities: `lab-probe`, `u-boot`"
        );
    }

    #[test]
    fn known_constants_equal_the_same_name_read_from_the_wire() {
        let read: Capability = serde_json::from_str("\"u-boot\"").unwrap();
        assert_eq!(read, Capability::U_BOOT);
        assert!(read.is_known());
        assert!(!Capability::new("lab-probe").is_known());
        let mut sorted = Capability::KNOWN.to_vec();
        sorted.sort();
        assert_eq!(sorted, Capability::KNOWN, "KNOWN is kept in name order");
        assert_eq!(
            serde_json::to_string(&set(&["tftp", "qemu", "tftp"])).unwrap(),
            r#"["qemu","tftp"]"#
        );
    }
}
