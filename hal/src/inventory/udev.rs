//! `UdevInventory`: the host's USB serial ports and other USB devices, through libudev (the
//! `udev` crate).
//!
//! Every `tty` device with a USB interface above it is a serial port; every other USB device
//! (root hubs left out) is listed as such. What is known of each comes from udev's database
//! where udevd has run (`ID_PATH`, `ID_USB_INTERFACE_NUM`, `ID_USB_DRIVER`, the names), and
//! from the sysfs attributes of the USB interface and device where it has not (containers,
//! hosts without udevd): `idVendor`, `idProduct`, `serial`, `manufacturer`, `product`,
//! `bInterfaceNumber`, the bound driver, and the sysfs path, from which `ID_PATH` is
//! computed as udev's `path_id` builtin does. The ids and the serial number are always read
//! from sysfs, since that is what a rule's `ATTRS{idVendor}`, `ATTRS{serial}` match (udev's
//! `ID_SERIAL_SHORT` is a sanitised copy: blanks become `_`). Names missing from both come
//! from udev's hardware database (`hwdb.bin`) when the host has one.
//!
//! No rusb: the sysfs `manufacturer`, `product` and `serial` files are the kernel's copies of
//! the device's string descriptors, read when it was enumerated. A device without them has no
//! such descriptor, and asking it again over USB would only need the device opened (root,
//! and a disturbance to a console in use) for the same answer.
//!
//! libudev always reads the real `/sys` (it has no other root), so the tests give the part
//! that turns what udev and sysfs said into a record, [`Sighting`], maps of properties and
//! attributes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::{Inventory, InventoryError, UsbDevice, UsbInventory, TTY, USB};

/// The host's devices, through libudev.
#[derive(Clone, Debug, Default)]
pub struct UdevInventory {}

impl UdevInventory {
    /// The inventory of this host.
    pub fn new() -> UdevInventory {
        UdevInventory {}
    }
}

/// Whether udevd keeps a database on this host (it does wherever it runs).
fn has_udev_database() -> bool {
    Path::new("/run/udev/data").is_dir()
}

impl UsbInventory for UdevInventory {
    fn describe(&self) -> String {
        if has_udev_database() {
            "udev".to_string()
        } else {
            "udev (sysfs attributes only: no udev database in /run/udev, udevd has not run)"
                .to_string()
        }
    }

    fn scan(&self) -> Result<Inventory, InventoryError> {
        let names = Names::open();
        let mut devices = Vec::new();
        let mut skipped = Vec::new();
        for tty in enumerate(TTY)? {
            let Some(interface) = parent(&tty, "usb_interface")? else {
                continue; // not a USB serial port (ttyS0, a pty, a console)
            };
            let Some(usb) = parent(&interface, "usb_device")? else {
                continue;
            };
            let mut seen = Sighting::read(&tty, &usb);
            seen.interface_attrs = attributes(&interface, &["bInterfaceNumber"]);
            seen.interface_driver = interface.driver().map(lossy);
            seen.chain = chain(&interface);
            match seen.serial_port(&names).and_then(checked) {
                Ok(d) => devices.push(d),
                Err(why) => skipped.push(format!("{}: {why}", tty.syspath().display())),
            }
        }
        let serial_ports: BTreeSet<String> = devices.iter().map(|d| d.port.clone()).collect();
        for usb in enumerate(USB)? {
            if usb.devtype().is_none_or(|t| t != "usb_device") {
                continue;
            }
            let port = lossy(usb.sysname());
            if port.starts_with("usb") || serial_ports.contains(&port) {
                continue; // a root hub, or an adapter listed by its serial ports
            }
            let mut seen = Sighting::read(&usb, &usb);
            seen.chain = chain(&usb);
            seen.interface_drivers = interface_drivers(&usb)?;
            match seen.other_device(&names).and_then(checked) {
                Ok(d) => devices.push(d),
                Err(why) => skipped.push(format!("{}: {why}", usb.syspath().display())),
            }
        }
        let mut inventory = Inventory::new(devices);
        inventory.skipped = skipped;
        Ok(inventory)
    }
}

/// `d`, when it is a valid record ([`UsbDevice::check`]: sysfs gave well-formed ids).
fn checked(d: UsbDevice) -> Result<UsbDevice, String> {
    d.check().map(|()| d)
}

fn udev_error(what: &str) -> impl FnOnce(std::io::Error) -> InventoryError + '_ {
    move |source| InventoryError::Udev {
        what: what.to_string(),
        source,
    }
}

fn lossy(s: &std::ffi::OsStr) -> String {
    s.to_string_lossy().into_owned()
}

/// The devices of `subsystem`.
fn enumerate(subsystem: &str) -> Result<Vec<udev::Device>, InventoryError> {
    let what = format!("listing the {subsystem} devices with libudev");
    let mut e = udev::Enumerator::new().map_err(udev_error(&what))?;
    e.match_subsystem(subsystem).map_err(udev_error(&what))?;
    Ok(e.scan_devices().map_err(udev_error(&what))?.collect())
}

/// The nearest `usb` device of `devtype` above `dev`.
fn parent(dev: &udev::Device, devtype: &str) -> Result<Option<udev::Device>, InventoryError> {
    dev.parent_with_subsystem_devtype(USB, devtype)
        .map_err(udev_error("reading a device's parents with libudev"))
}

/// The values of the sysfs attributes `names` of `dev` that it has.
fn attributes(dev: &udev::Device, names: &[&str]) -> BTreeMap<String, String> {
    names
        .iter()
        .filter_map(|n| {
            let v = dev.attribute_value(n)?;
            Some((n.to_string(), lossy(v).trim_end().to_string()))
        })
        .collect()
}

/// `dev` and the devices above it: (subsystem, sysname), nearest first.
fn chain(dev: &udev::Device) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut cur = Some(dev.clone());
    while let Some(d) = cur {
        out.push((
            d.subsystem().map(lossy).unwrap_or_default(),
            lossy(d.sysname()),
        ));
        cur = d.parent();
    }
    out
}

/// The drivers bound to the interfaces of the USB device `usb`, sorted, without repeats.
fn interface_drivers(usb: &udev::Device) -> Result<Vec<String>, InventoryError> {
    let what = "listing a USB device's interfaces with libudev";
    let mut e = udev::Enumerator::new().map_err(udev_error(what))?;
    e.match_parent(usb).map_err(udev_error(what))?;
    e.match_subsystem(USB).map_err(udev_error(what))?;
    let drivers: BTreeSet<String> = e
        .scan_devices()
        .map_err(udev_error(what))?
        .filter(|d| d.devtype().is_some_and(|t| t == "usb_interface"))
        .filter_map(|d| d.driver().map(lossy))
        .collect();
    Ok(drivers.into_iter().collect())
}

/// Vendor and product names from udev's hardware database, when the host has one.
struct Names {
    hwdb: Option<udev::Hwdb>,
}

impl Names {
    fn open() -> Names {
        Names {
            hwdb: udev::Hwdb::new().ok(),
        }
    }

    /// The database's `key` (`ID_VENDOR_FROM_DATABASE`, `ID_MODEL_FROM_DATABASE`) for a
    /// USB vendor and product.
    fn lookup(&self, vendor_id: &str, product_id: &str, key: &str) -> Option<String> {
        let hwdb = self.hwdb.as_ref()?;
        let modalias = format!(
            "usb:v{}p{}",
            vendor_id.to_ascii_uppercase(),
            product_id.to_ascii_uppercase()
        );
        hwdb.query_one(modalias.as_str(), key).map(lossy)
    }

    #[cfg(test)]
    fn none() -> Names {
        Names { hwdb: None }
    }
}

/// What udev and sysfs said about one serial port (or other USB device): the raw material of
/// a [`UsbDevice`], kept apart from libudev so that turning it into a record is testable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sighting {
    /// The device node (`/dev/ttyUSB0`).
    devnode: Option<String>,
    /// udev's properties of the device: from the uevent file always (`DEVNAME`, ...), from
    /// udev's database where udevd has run (`ID_PATH`, `ID_USB_INTERFACE_NUM`, ...).
    props: BTreeMap<String, String>,
    /// The sysfs attributes of the USB device (`idVendor`, `serial`, ...).
    device_attrs: BTreeMap<String, String>,
    /// The sysfs attributes of the USB interface (`bInterfaceNumber`).
    interface_attrs: BTreeMap<String, String>,
    /// The USB device's sysfs name: `1-1.4`.
    port: String,
    /// The driver bound to the serial port's interface.
    interface_driver: Option<String>,
    /// The drivers bound to another device's interfaces.
    interface_drivers: Vec<String>,
    /// The interface (for a serial port) or device, and every device above it:
    /// (subsystem, sysname), nearest first.
    chain: Vec<(String, String)>,
}

/// The USB device attributes a record is built from.
const DEVICE_ATTRS: &[&str] = &["idVendor", "idProduct", "serial", "manufacturer", "product"];

impl Sighting {
    /// What udev says of `dev` (a tty, or a USB device) whose USB device is `usb`.
    fn read(dev: &udev::Device, usb: &udev::Device) -> Sighting {
        Sighting {
            devnode: dev.devnode().map(|p| p.display().to_string()),
            props: dev
                .properties()
                .map(|p| (lossy(p.name()), lossy(p.value())))
                .collect(),
            device_attrs: attributes(usb, DEVICE_ATTRS),
            port: lossy(usb.sysname()),
            ..Sighting::default()
        }
    }

    fn prop(&self, name: &str) -> Option<String> {
        self.props.get(name).filter(|v| !v.is_empty()).cloned()
    }

    fn attr(&self, name: &str) -> Option<String> {
        self.device_attrs
            .get(name)
            .filter(|v| !v.is_empty())
            .cloned()
    }

    /// The record of a serial port.
    fn serial_port(&self, names: &Names) -> Result<UsbDevice, String> {
        let mut d = self.common(names)?;
        d.subsystem = TTY.to_string();
        d.interface = self
            .prop("ID_USB_INTERFACE_NUM")
            .or_else(|| self.interface_attrs.get("bInterfaceNumber").cloned())
            .map(|i| i.to_ascii_lowercase());
        d.driver = self
            .prop("ID_USB_DRIVER")
            .or_else(|| self.interface_driver.clone());
        Ok(d)
    }

    /// The record of a USB device that has no serial port.
    fn other_device(&self, names: &Names) -> Result<UsbDevice, String> {
        let mut d = self.common(names)?;
        d.subsystem = USB.to_string();
        d.driver = (!self.interface_drivers.is_empty()).then(|| self.interface_drivers.join(","));
        Ok(d)
    }

    fn common(&self, names: &Names) -> Result<UsbDevice, String> {
        let id = |attr: &str, prop: &str| {
            self.attr(attr)
                .or_else(|| self.prop(prop))
                .map(|v| v.to_ascii_lowercase())
                .ok_or_else(|| format!("its USB device {} has no {attr}", self.port))
        };
        let vendor_id = id("idVendor", "ID_VENDOR_ID")?;
        let product_id = id("idProduct", "ID_MODEL_ID")?;
        let name = |attr: &str, enc: &str, db: &str| {
            self.attr(attr)
                .or_else(|| self.prop(enc).map(|v| decode_udev_enc(&v)))
                .or_else(|| self.prop(db))
                .or_else(|| names.lookup(&vendor_id, &product_id, db))
        };
        let d = UsbDevice {
            devnode: self.devnode.clone(),
            subsystem: String::new(),
            vendor: name("manufacturer", "ID_VENDOR_ENC", "ID_VENDOR_FROM_DATABASE"),
            product: name("product", "ID_MODEL_ENC", "ID_MODEL_FROM_DATABASE"),
            serial: self.attr("serial").or_else(|| self.prop("ID_SERIAL_SHORT")),
            interface: None,
            port: self.port.clone(),
            id_path: self.prop("ID_PATH").or_else(|| path_id(&self.chain)),
            driver: None,
            vendor_id,
            product_id,
        };
        Ok(d)
    }
}

/// udev's `ID_*_ENC` encoding decoded: `\x20` is a blank.
fn decode_udev_enc(v: &str) -> String {
    let mut out = Vec::with_capacity(v.len());
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') {
            if let Some(x) = v
                .get(i + 2..i + 4)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(x);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).trim().to_string()
}

/// `ID_PATH` as udev's `path_id` builtin makes it for a USB device or interface, from the
/// device and those above it (nearest first): `usb-0:PORT` for the first USB one, then one
/// part per run of PCI or platform devices (`pci-0000:00:14.0`,
/// `platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.2:1.0` on a Raspberry Pi 4). `None`
/// where `path_id` would give none (no PCI or platform device above).
fn path_id(chain: &[(String, String)]) -> Option<String> {
    let mut parts = Vec::new();
    let mut supported = false;
    let mut i = 0;
    while i < chain.len() {
        let (subsystem, name) = &chain[i];
        match subsystem.as_str() {
            "usb" | "pci" | "platform" => {
                if subsystem == "usb" {
                    // a root hub (`usb1`) has no port
                    if let Some((_, port)) = name.split_once('-') {
                        parts.push(format!("usb-0:{port}"));
                    }
                } else {
                    parts.push(format!("{subsystem}-{name}"));
                    supported = true;
                }
                // the rest of the run of this subsystem adds nothing
                while chain.get(i + 1).is_some_and(|(s, _)| s == subsystem) {
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    parts.reverse();
    (supported && !parts.is_empty()).then(|| parts.join("-"))
}

#[cfg(test)]
mod tests {
    use super::super::ft232r;
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn chain(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(s, n)| (s.to_string(), n.to_string()))
            .collect()
    }

    /// An FT232R on port 4 of the hub on port 1 of the xHCI controller at 0000:00:14.0.
    fn ft232r_chain() -> Vec<(String, String)> {
        chain(&[
            ("usb", "1-1.4:1.0"),
            ("usb", "1-1.4"),
            ("usb", "1-1"),
            ("usb", "usb1"),
            ("pci", "0000:00:14.0"),
            ("", "pci0000:00"),
        ])
    }

    /// What sysfs alone says of it (no udev database).
    fn sysfs_only() -> Sighting {
        Sighting {
            devnode: Some("/dev/ttyUSB0".into()),
            props: map(&[
                ("DEVNAME", "/dev/ttyUSB0"),
                ("MAJOR", "188"),
                ("SUBSYSTEM", "tty"),
            ]),
            device_attrs: map(&[
                ("idVendor", "0403"),
                ("idProduct", "6001"),
                ("serial", "ST167569"),
                ("manufacturer", "FTDI"),
                ("product", "FT232R USB UART"),
            ]),
            interface_attrs: map(&[("bInterfaceNumber", "00")]),
            port: "1-1.4".into(),
            interface_driver: Some("ftdi_sio".into()),
            interface_drivers: vec![],
            chain: ft232r_chain(),
        }
    }

    #[test]
    fn a_serial_port_from_sysfs_alone() {
        assert_eq!(sysfs_only().serial_port(&Names::none()), Ok(ft232r()));
    }

    #[test]
    fn the_udev_database_is_preferred_where_udevd_ran() {
        let mut s = sysfs_only();
        s.props.extend(map(&[
            ("ID_PATH", "pci-0000:00:14.0-usb-0:1.4:1.0-udev"),
            ("ID_USB_INTERFACE_NUM", "00"),
            ("ID_USB_DRIVER", "ftdi_sio"),
            ("ID_SERIAL_SHORT", "sanitised_serial"),
        ]));
        let d = s.serial_port(&Names::none()).unwrap();
        assert_eq!(
            d.id_path.as_deref(),
            Some("pci-0000:00:14.0-usb-0:1.4:1.0-udev")
        );
        // the serial number stays sysfs's: what ATTRS{serial} matches
        assert_eq!(d.serial.as_deref(), Some("ST167569"));
    }

    #[test]
    fn missing_attributes_fall_back_to_the_database() {
        let mut s = sysfs_only();
        s.device_attrs = map(&[("idVendor", "1A86"), ("idProduct", "7523")]);
        s.interface_attrs.clear();
        s.interface_driver = None;
        s.chain = chain(&[("usb", "3-2:1.0"), ("usb", "3-2"), ("usb", "usb3")]);
        s.props.extend(map(&[
            ("ID_VENDOR_ENC", "QinHeng\\x20Electronics"),
            ("ID_MODEL_FROM_DATABASE", "CH340 serial converter"),
            ("ID_USB_INTERFACE_NUM", "00"),
            ("ID_USB_DRIVER", "ch341"),
        ]));
        let d = s.serial_port(&Names::none()).unwrap();
        assert_eq!(d.usb_id(), "1a86:7523");
        assert_eq!(d.vendor.as_deref(), Some("QinHeng Electronics"));
        assert_eq!(d.product.as_deref(), Some("CH340 serial converter"));
        assert_eq!(d.serial, None);
        assert_eq!(d.interface.as_deref(), Some("00"));
        assert_eq!(d.driver.as_deref(), Some("ch341"));
        // no PCI or platform device above the root hub: path_id gives nothing either
        assert_eq!(d.id_path, None);
    }

    #[test]
    fn a_device_without_ids_is_refused_with_why() {
        let mut s = sysfs_only();
        s.device_attrs.remove("idProduct");
        assert_eq!(
            s.serial_port(&Names::none()),
            Err("its USB device 1-1.4 has no idProduct".to_string())
        );
    }

    #[test]
    fn another_device_lists_its_interfaces_drivers() {
        let mut s = sysfs_only();
        s.devnode = Some("/dev/bus/usb/001/005".into());
        s.interface_drivers = vec!["btusb".into(), "usbhid".into()];
        s.chain.remove(0);
        let d = s.other_device(&Names::none()).unwrap();
        assert_eq!(d.subsystem, USB);
        assert_eq!(d.interface, None);
        assert_eq!(d.driver.as_deref(), Some("btusb,usbhid"));
        assert_eq!(d.id_path.as_deref(), Some("pci-0000:00:14.0-usb-0:1.4"));
    }

    #[test]
    fn path_id_as_udev_makes_it() {
        assert_eq!(
            path_id(&ft232r_chain()).as_deref(),
            Some("pci-0000:00:14.0-usb-0:1.4:1.0")
        );
        // a Raspberry Pi 4: the VL805 on PCIe behind the SoC's platform bridge
        let rpi4 = chain(&[
            ("usb", "1-1.2:1.0"),
            ("usb", "1-1.2"),
            ("usb", "1-1"),
            ("usb", "usb1"),
            ("pci", "0000:01:00.0"),
            ("pci", "0000:00:00.0"),
            ("", "pci0000:00"),
            ("platform", "fd500000.pcie"),
            ("platform", "soc"),
        ]);
        assert_eq!(
            path_id(&rpi4).as_deref(),
            Some("platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.2:1.0")
        );
        // dwc2 on a SoC: platform only
        let dwc2 = chain(&[
            ("usb", "1-1:1.1"),
            ("usb", "1-1"),
            ("usb", "usb1"),
            ("platform", "3f980000.usb"),
            ("platform", "soc"),
        ]);
        assert_eq!(
            path_id(&dwc2).as_deref(),
            Some("platform-3f980000.usb-usb-0:1:1.1")
        );
        assert_eq!(path_id(&[]), None);
    }

    #[test]
    fn enc_values_are_decoded() {
        assert_eq!(
            decode_udev_enc("FT232R\\x20USB\\x20UART"),
            "FT232R USB UART"
        );
        assert_eq!(decode_udev_enc("a\\xZZb\\x"), "a\\xZZb\\x");
    }

    #[test]
    fn this_hosts_inventory_reads() {
        // the real libudev on this machine's /sys: it may have no USB at all (a container),
        // but every record it gives must be valid
        let inv = UdevInventory::new()
            .scan()
            .expect("libudev lists this host's devices");
        for d in &inv.devices {
            assert_eq!(d.check(), Ok(()), "{d:?}");
        }
        eprintln!(
            "{}: {} devices, {} skipped",
            UdevInventory::new().describe(),
            inv.devices.len(),
            inv.skipped.len()
        );
    }
}
