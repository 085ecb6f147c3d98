//! `FixtureInventory`: recorded adapter descriptions, a YAML (or JSON) list of [`UsbDevice`]
//! records, for tests and for generating the rules of adapters plugged into another host
//! (`basalt udev generate --from FILE`). `basalt udev list --json` prints such a list.
//!
//! ```yaml
//! - devnode: /dev/ttyUSB0
//!   subsystem: tty
//!   vendor_id: "0403"
//!   product_id: "6001"
//!   serial: ST167569
//!   interface: "00"
//!   port: 1-1.1
//!   driver: ftdi_sio
//! ```
//!
//! Parsed with `serde-saphyr`, as basalt-board's scripts are: scalars stay strings as written
//! (`0403` is not the number 403), unknown keys are errors, and every error has the file's
//! line and column.

use std::path::{Path, PathBuf};

use super::{Inventory, InventoryError, UsbDevice, UsbInventory};

/// The devices described by a file, read when scanned.
#[derive(Clone, Debug)]
pub struct FixtureInventory {
    path: PathBuf,
}

impl FixtureInventory {
    /// The inventory recorded in `path`.
    pub fn new(path: impl Into<PathBuf>) -> FixtureInventory {
        FixtureInventory { path: path.into() }
    }
}

impl UsbInventory for FixtureInventory {
    fn describe(&self) -> String {
        format!("recorded devices {}", self.path.display())
    }

    fn scan(&self) -> Result<Inventory, InventoryError> {
        let text = std::fs::read_to_string(&self.path).map_err(|source| InventoryError::Read {
            path: self.path.display().to_string(),
            source,
        })?;
        parse(&self.path, &text).map(Inventory::new)
    }
}

/// The records of `text` (the contents of `path`), each checked ([`UsbDevice::check`]).
pub fn parse(path: &Path, text: &str) -> Result<Vec<UsbDevice>, InventoryError> {
    let invalid = |line: u64, column: u64, message: String| InventoryError::Invalid {
        path: path.display().to_string(),
        line,
        column,
        message,
    };
    // A file of comments only (or a bare `---`) records no devices.
    if text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---"
    }) {
        return Ok(Vec::new());
    }
    let records: Vec<serde_saphyr::Spanned<UsbDevice>> =
        serde_saphyr::from_str(text).map_err(|e| {
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((0, 0));
            let message = e.without_snippet().to_string();
            // the position is ours to print, in the file:line:column form
            let message = match message.rsplit_once(" at line ") {
                Some((m, _)) => m.to_string(),
                None => message,
            };
            let message = if message.contains("expected sequence") {
                format!("{message}: the file is a list of device records (`- vendor_id: ...`)")
            } else {
                message
            };
            invalid(line, column, message)
        })?;
    records
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.value.check().map(|()| r.value).map_err(|m| {
                invalid(
                    r.referenced.line(),
                    r.referenced.column(),
                    format!("device {}: {m}", i + 1),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(Path::new("a.yaml"), text).unwrap_err().to_string()
    }

    #[test]
    fn records_keep_their_strings() {
        let text = "# two ports\n\
                    - subsystem: tty\n  vendor_id: 0403\n  product_id: 6011\n  serial: 00012\n  \
                    interface: 01\n  port: 1-2\n\
                    - {subsystem: usb, vendor_id: 1d50, product_id: 606f, port: 2-1.3}\n";
        let d = parse(Path::new("a.yaml"), text).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].vendor_id, "0403");
        assert_eq!(d[0].serial.as_deref(), Some("00012"));
        assert_eq!(d[0].interface.as_deref(), Some("01"));
        assert!(!d[1].is_serial());
        assert_eq!(parse(Path::new("a.yaml"), "# none\n---\n").unwrap(), vec![]);
    }

    #[test]
    fn the_json_of_basalt_udev_list_reads_back() {
        let mut d = super::super::ft232r();
        d.vendor = None;
        let json = serde_json::to_string_pretty(&vec![d.clone()]).unwrap();
        assert_eq!(parse(Path::new("a.json"), &json).unwrap(), vec![d]);
    }

    #[test]
    fn bad_files_say_where() {
        let e = err("- subsystem: tty\n  vendor_id: '0403'\n  product_id: '6001'\n  port: 1-1\n  bogus: 1\n");
        assert!(e.starts_with("a.yaml:5:3: unknown field `bogus`"), "{e}");
        let e = err("- subsystem: tty\n  vendor_id: [1\n");
        assert!(e.starts_with("a.yaml:2:"), "{e}");
        let e = err("- subsystem: tty\n  vendor_id: 0403\n  port: 1-1\n");
        assert!(
            e.starts_with("a.yaml:3:3: missing field `product_id`"),
            "{e}"
        );
        let e = err("subsystem: tty\n");
        assert!(
            e.contains("a.yaml:1:1:") && e.contains("list of device records"),
            "{e}"
        );
        // the second record is wrong: its own position
        let e = err(
            "- {subsystem: tty, vendor_id: '0403', product_id: '6001', port: 1-1}\n\
                     - subsystem: tty\n  vendor_id: 0403\n  product_id: 6001\n  port: usb1\n",
        );
        assert_eq!(
            e,
            "a.yaml:2:3: device 2: port 'usb1' is not a USB bus-port path (e.g. '1-1.4')"
        );
    }

    #[test]
    fn an_unreadable_file_is_named() {
        let e = FixtureInventory::new("/nonexistent/adapters.yaml")
            .scan()
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/nonexistent/adapters.yaml: "), "{e}");
    }
}
