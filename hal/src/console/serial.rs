//! Local serial ports (a USB-serial adapter on the worker), opened with tokio-serial.
//!
//! The port is opened 8N1 at the configured speed, without flow control unless asked, in
//! exclusive mode (a second opener gets `EBUSY`). An unplugged adapter shows up as `EIO` or end
//! of file, which the [`Session`](super::Session) reports as
//! [`ConsoleError::Closed`]; [`Console::connect`] works again once the device node is back.
//! tokio-serial is built without its `libudev` feature, so no libudev is needed.

use std::path::PathBuf;

use async_trait::async_trait;
use tokio_serial::{DataBits, FlowControl, Parity, SerialPortBuilderExt, StopBits};

use super::{Console, ConsoleError, ConsoleStream};

/// A console on a local serial device such as `/dev/ttyUSB0` or `/dev/serial/by-id/...`.
#[derive(Debug, Clone)]
pub struct SerialConsole {
    path: PathBuf,
    baud: u32,
    hardware_flow: bool,
}

impl SerialConsole {
    /// A console on `path` at `baud` bits per second, 8N1, no flow control.
    pub fn new(path: impl Into<PathBuf>, baud: u32) -> SerialConsole {
        SerialConsole {
            path: path.into(),
            baud,
            hardware_flow: false,
        }
    }

    /// Uses RTS/CTS hardware flow control.
    pub fn with_hardware_flow_control(mut self, on: bool) -> SerialConsole {
        self.hardware_flow = on;
        self
    }

    /// The device path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The speed in bits per second.
    pub fn baud(&self) -> u32 {
        self.baud
    }
}

#[async_trait]
impl Console for SerialConsole {
    fn describe(&self) -> String {
        format!("serial {} {}n81", self.path.display(), self.baud)
    }

    async fn connect(&self) -> Result<Box<dyn ConsoleStream>, ConsoleError> {
        let path = self.path.to_string_lossy().into_owned();
        let flow = if self.hardware_flow {
            FlowControl::Hardware
        } else {
            FlowControl::None
        };
        let stream = tokio_serial::new(path, self.baud)
            .data_bits(DataBits::Eight)
            .parity(Parity::None)
            .stop_bits(StopBits::One)
            .flow_control(flow)
            .open_native_async()
            .map_err(|e| ConsoleError::Connect {
                what: self.describe(),
                source: std::io::Error::from(e),
            })?;
        Ok(Box::new(stream))
    }
}
