//! `FakeInventory`: the devices a test gives it, or the failure it asks for, so that code
//! built on [`UsbInventory`] is a unit test.

use super::{Inventory, InventoryError, UsbDevice, UsbInventory};

/// An inventory that answers what it was given.
#[derive(Clone, Debug, Default)]
pub struct FakeInventory {
    devices: Vec<UsbDevice>,
    failure: Option<String>,
}

impl FakeInventory {
    /// An inventory of `devices`.
    pub fn new(devices: Vec<UsbDevice>) -> FakeInventory {
        FakeInventory {
            devices,
            failure: None,
        }
    }

    /// An inventory whose scans fail with `message`.
    pub fn failing(message: &str) -> FakeInventory {
        FakeInventory {
            devices: Vec::new(),
            failure: Some(message.to_string()),
        }
    }
}

impl UsbInventory for FakeInventory {
    fn describe(&self) -> String {
        "fake inventory".to_string()
    }

    fn scan(&self) -> Result<Inventory, InventoryError> {
        match &self.failure {
            Some(m) => Err(InventoryError::Fake(m.clone())),
            None => Ok(Inventory::new(self.devices.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_what_it_was_given() {
        assert!(FakeInventory::default().scan().unwrap().devices.is_empty());
        let e = FakeInventory::failing("no sysfs").scan().unwrap_err();
        assert_eq!(e.to_string(), "no sysfs");
    }
}
