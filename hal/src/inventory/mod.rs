//! The USB inventory: which USB serial adapters and other USB devices a host has, described
//! well enough to give each a stable name (udev rules) or to check that it is plugged in.
//!
//! | module | [`UsbInventory`] | what |
//! | --- | --- | --- |
//! | [`udev`] (feature `usb-inventory`) | [`UdevInventory`] | libudev enumeration, udev's database where udevd runs, sysfs attributes where it does not |
//! | [`fixture`] (feature `usb-inventory`) | [`FixtureInventory`] | recorded descriptions: a YAML list of [`UsbDevice`] records |
//! | [`fake`] | [`FakeInventory`] | in-process, for unit tests: a list given by the test, fails on request |

use serde::{Deserialize, Serialize};

pub mod fake;
#[cfg(feature = "usb-inventory")]
pub mod fixture;
#[cfg(feature = "usb-inventory")]
pub mod udev;

pub use fake::FakeInventory;
#[cfg(feature = "usb-inventory")]
pub use fixture::FixtureInventory;
#[cfg(feature = "usb-inventory")]
pub use udev::UdevInventory;

/// `subsystem` of a serial port (`/dev/ttyUSB0`, `/dev/ttyACM0`).
pub const TTY: &str = "tty";
/// `subsystem` of a USB device that has no serial port.
pub const USB: &str = "usb";

/// One USB serial port (one per interface of a multi-port adapter) or one other USB device.
///
/// Serialised as the fixture format: `basalt udev list --json` prints a list of these, and
/// [`FixtureInventory`] reads such a list back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsbDevice {
    /// The device node: `/dev/ttyUSB0` for a serial port, `/dev/bus/usb/001/004` for another
    /// device; absent when the kernel made none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devnode: Option<String>,
    /// [`TTY`] for a serial port, [`USB`] for any other USB device.
    pub subsystem: String,
    /// The USB vendor id, four lowercase hexadecimal digits (sysfs `idVendor`): `0403`.
    pub vendor_id: String,
    /// The USB product id, four lowercase hexadecimal digits (sysfs `idProduct`): `6001`.
    pub product_id: String,
    /// The vendor's name: the device's manufacturer string, else udev's hardware database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// The product's name: the device's product string, else udev's hardware database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// The serial number string, exactly as sysfs `serial` has it (what `ATTRS{serial}`
    /// matches); absent when the device has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// The USB interface the serial port belongs to (`bInterfaceNumber`, two hexadecimal
    /// digits: `00`, `01`, ...); absent for a device without a serial port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// The USB device's bus-port path, its sysfs name: `1-1.4` (bus 1, port 1, then port 4
    /// of the hub there).
    pub port: String,
    /// udev's `ID_PATH` of the serial port (`pci-0000:00:14.0-usb-0:1.4:1.0`): from udev's
    /// database, else computed as udev's `path_id` would from the sysfs path; absent when
    /// neither knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_path: Option<String>,
    /// The kernel driver: of the serial port's interface (`ftdi_sio`, `cp210x`, `ch341`,
    /// `pl2303`, `cdc_acm`), or the drivers of another device's interfaces, comma-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
}

impl UsbDevice {
    /// Whether this is a serial port (a USB serial adapter's, or one port of a multi-port one).
    pub fn is_serial(&self) -> bool {
        self.subsystem == TTY
    }

    /// `vendor:product`, as `lsusb` prints it: `0403:6001`.
    pub fn usb_id(&self) -> String {
        format!("{}:{}", self.vendor_id, self.product_id)
    }

    /// What is wrong with this record, if anything: ids, interface, port and devnode must have
    /// the forms the fields document (a record read from a file is checked with it).
    pub fn check(&self) -> Result<(), String> {
        if self.subsystem != TTY && self.subsystem != USB {
            return Err(format!(
                "subsystem '{}' is neither '{TTY}' nor '{USB}'",
                self.subsystem
            ));
        }
        for (key, v) in [
            ("vendor_id", &self.vendor_id),
            ("product_id", &self.product_id),
        ] {
            if !is_hex(v, 4) {
                return Err(format!(
                    "{key} '{v}' is not four lowercase hexadecimal digits (e.g. '0403')"
                ));
            }
        }
        if let Some(i) = &self.interface {
            if !is_hex(i, 2) {
                return Err(format!(
                    "interface '{i}' is not two lowercase hexadecimal digits (e.g. '00')"
                ));
            }
        }
        if !is_port(&self.port) {
            return Err(format!(
                "port '{}' is not a USB bus-port path (e.g. '1-1.4')",
                self.port
            ));
        }
        if let Some(d) = &self.devnode {
            if !d.starts_with("/dev/") {
                return Err(format!("devnode '{d}' is not below /dev"));
            }
        }
        if self.serial.as_deref() == Some("") {
            return Err("serial is empty (leave it out for a device without one)".to_string());
        }
        Ok(())
    }
}

/// `s` is `n` lowercase hexadecimal digits.
fn is_hex(s: &str, n: usize) -> bool {
    s.len() == n
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `s` is a USB device's sysfs name: `BUS-PORT[.PORT]...` (`1-1.4`).
fn is_port(s: &str) -> bool {
    let Some((bus, ports)) = s.split_once('-') else {
        return false;
    };
    let number = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    number(bus) && ports.split('.').all(number)
}

/// What a scan found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inventory {
    /// The devices, serial ports first, each group in devnode then port order.
    pub devices: Vec<UsbDevice>,
    /// Devices seen but left out, each with why (e.g. a tty whose USB ids cannot be read).
    pub skipped: Vec<String>,
}

impl Inventory {
    /// An inventory of `devices`, put in the documented order.
    pub fn new(mut devices: Vec<UsbDevice>) -> Inventory {
        devices.sort_by(|a, b| {
            (!a.is_serial(), &a.devnode, &a.port, &a.interface).cmp(&(
                !b.is_serial(),
                &b.devnode,
                &b.port,
                &b.interface,
            ))
        });
        Inventory {
            devices,
            skipped: Vec::new(),
        }
    }

    /// The serial ports.
    pub fn serial_ports(&self) -> impl Iterator<Item = &UsbDevice> {
        self.devices.iter().filter(|d| d.is_serial())
    }
}

/// Why the inventory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// libudev failed (no `/sys`, out of memory, ...).
    #[error("{what}: {source}")]
    Udev {
        /// What was being done.
        what: String,
        /// libudev's error.
        source: std::io::Error,
    },
    /// A fixture file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A fixture file is not a valid list of records.
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// 1-based line (0 when unknown).
        line: u64,
        /// 1-based column (0 when unknown).
        column: u64,
        /// What is wrong.
        message: String,
    },
    /// A failure a test asked the fake for.
    #[error("{0}")]
    Fake(String),
}

/// Lists the USB devices of a host.
pub trait UsbInventory {
    /// A short description for messages: `udev (sysfs attributes: no udev database)`,
    /// `fixture adapters.yaml`.
    fn describe(&self) -> String;
    /// Every USB serial port and every other USB device (root hubs left out).
    fn scan(&self) -> Result<Inventory, InventoryError>;
}

/// An FTDI FT232R cable on port 4 of the hub on port 1 of the xHCI controller at
/// 0000:00:14.0, as the backends' tests expect it.
#[cfg(test)]
pub(crate) fn ft232r() -> UsbDevice {
    UsbDevice {
        devnode: Some("/dev/ttyUSB0".into()),
        subsystem: TTY.into(),
        vendor_id: "0403".into(),
        product_id: "6001".into(),
        vendor: Some("FTDI".into()),
        product: Some("FT232R USB UART".into()),
        serial: Some("ST167569".into()),
        interface: Some("00".into()),
        port: "1-1.4".into(),
        id_path: Some("pci-0000:00:14.0-usb-0:1.4:1.0".into()),
        driver: Some("ftdi_sio".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_checked() {
        assert_eq!(ft232r().check(), Ok(()));
        let bad = |f: fn(&mut UsbDevice)| {
            let mut d = ft232r();
            f(&mut d);
            d.check().unwrap_err()
        };
        assert!(bad(|d| d.vendor_id = "403".into()).contains("vendor_id '403'"));
        assert!(bad(|d| d.product_id = "60G1".into()).contains("product_id"));
        assert!(bad(|d| d.product_id = "600A".into()).contains("lowercase"));
        assert!(bad(|d| d.interface = Some("0".into())).contains("interface '0'"));
        assert!(bad(|d| d.port = "usb1".into()).contains("port 'usb1'"));
        assert!(bad(|d| d.port = "1-1..4".into()).contains("port"));
        assert!(bad(|d| d.devnode = Some("ttyUSB0".into())).contains("devnode"));
        assert!(bad(|d| d.subsystem = "block".into()).contains("subsystem 'block'"));
        assert!(bad(|d| d.serial = Some(String::new())).contains("serial is empty"));
    }

    #[test]
    fn serial_ports_come_first() {
        let mut other = ft232r();
        other.subsystem = USB.into();
        other.devnode = Some("/dev/bus/usb/001/002".into());
        let mut second = ft232r();
        second.devnode = Some("/dev/ttyUSB1".into());
        let inv = Inventory::new(vec![other.clone(), second.clone(), ft232r()]);
        assert_eq!(inv.devices, vec![ft232r(), second, other]);
        assert_eq!(inv.serial_ports().count(), 2);
        assert_eq!(ft232r().usb_id(), "0403:6001");
    }
}
