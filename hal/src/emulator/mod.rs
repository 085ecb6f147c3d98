//! Emulators: QEMU started and supervised by the worker, its serial console on its stdio.
//!
//! [`Emulator`] is what a pipeline sees: start with a command line (giving the board's
//! console), stop, and say why a run ended. [`Qemu`] is the QEMU backend over
//! [`QemuProcess`].

mod qemu;

pub use qemu::{EmulatorError, QemuProcess};

use crate::confine::Policy;
use crate::console::ConsoleStream;
use async_trait::async_trait;

/// An emulated board's machine: started per boot, its console the stream `start` returns.
#[async_trait]
pub trait Emulator: Send + Sync {
    /// A short description for logs (`qemu (pid 1234)`).
    fn describe(&self) -> String;

    /// Starts the emulator with `argv` (never through a shell) under `policy`, stopping a
    /// run that is still going; returns its console.
    async fn start(
        &mut self,
        argv: &[String],
        policy: &Policy,
    ) -> Result<Box<dyn ConsoleStream>, EmulatorError>;

    /// Whether a run was started and not stopped.
    fn running(&self) -> bool;

    /// Stops the run, if any, and everything it started.
    async fn stop(&mut self) -> Result<(), EmulatorError>;

    /// Why the run ended, once it has: the exit status and what it printed on stderr.
    fn exit_note(&mut self) -> Option<String>;
}

/// QEMU as an [`Emulator`].
#[derive(Debug, Default)]
pub struct Qemu {
    run: Option<QemuProcess>,
}

impl Qemu {
    /// A QEMU backend with no run yet.
    pub fn new() -> Qemu {
        Qemu::default()
    }
}

#[async_trait]
impl Emulator for Qemu {
    fn describe(&self) -> String {
        match self.run.as_ref().and_then(QemuProcess::pid) {
            Some(pid) => format!("qemu (pid {pid})"),
            None => "qemu".to_string(),
        }
    }

    async fn start(
        &mut self,
        argv: &[String],
        policy: &Policy,
    ) -> Result<Box<dyn ConsoleStream>, EmulatorError> {
        self.stop().await?;
        let (process, stream) = QemuProcess::spawn_with(argv, policy)?;
        self.run = Some(process);
        Ok(stream)
    }

    fn running(&self) -> bool {
        self.run.is_some()
    }

    async fn stop(&mut self) -> Result<(), EmulatorError> {
        match self.run.take() {
            Some(mut q) => q.kill().await,
            None => Ok(()),
        }
    }

    fn exit_note(&mut self) -> Option<String> {
        let q = self.run.as_mut()?;
        let status = q.exit_status()?;
        Some(format!("QEMU exited, {status}: {}", q.stderr().trim()))
    }
}
