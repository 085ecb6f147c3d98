//! Errors of a running job, classified as LAVA classifies them: they decide the job's
//! `error_type` and whether the device's health is in question.
//!
//! An [`ActionError`] keeps the error it came from ([`std::error::Error::source`]), so a HAL
//! error's chain survives up to the job's result, and the executor marks it with the action
//! that failed ([`ActionError::at`]).
//!
//! Each error also has basalt's [`FailureCause`] ([`ActionError::cause`]): set where the
//! action knows it (a kernel panic, a bootloader's error), otherwise derived from LAVA's error
//! type and, for a timeout, from the stage of the action that ran out of time.

use std::fmt;
use std::sync::Arc;

pub use basalt_proto::FailureCause;

/// LAVA's `error_type` values that basalt produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    /// The lab failed: console, power, network, disk. The device's health is in question.
    Infrastructure,
    /// The job asked for something impossible: bad URL, bad checksum, missing file.
    Job,
    /// The test failed in a way that stops the job (`lava-test-raise`, bad signals).
    Test,
    /// An action ran out of time.
    Timeout,
    /// A bug in basalt.
    Bug,
    /// The job was canceled.
    Canceled,
}

impl ErrorType {
    /// The name LAVA shows in `error_type`.
    pub fn lava_name(self) -> &'static str {
        match self {
            ErrorType::Infrastructure => "Infrastructure",
            ErrorType::Job => "Job",
            ErrorType::Test => "Test",
            ErrorType::Timeout => "LAVATimeout",
            ErrorType::Bug => "Bug",
            ErrorType::Canceled => "Canceled",
        }
    }

    /// The exception class name LAVA logs.
    pub fn class_name(self) -> &'static str {
        match self {
            ErrorType::Infrastructure => "InfrastructureError",
            ErrorType::Job => "JobError",
            ErrorType::Test => "TestError",
            ErrorType::Timeout => "LAVATimeoutError",
            ErrorType::Bug => "LAVABug",
            ErrorType::Canceled => "JobCanceled",
        }
    }
}

/// Where an error happened: the action's level (`1.2.3`) and LAVA name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedAction {
    pub level: String,
    pub name: &'static str,
}

/// An action failed: LAVA's error type, the action (once the executor has seen it), a message
/// and the error it came from.
#[derive(Clone, Debug)]
pub struct ActionError {
    pub kind: ErrorType,
    pub message: String,
    /// The innermost action that failed; `None` until the error leaves an action.
    pub action: Option<FailedAction>,
    /// The error this one wraps (a console, power, I/O or emulator error).
    pub source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
    /// The cause, when the action that failed knew it; see [`ActionError::cause`].
    pub known_cause: Option<FailureCause>,
}

impl ActionError {
    /// An error of `kind` with no source.
    pub fn new(kind: ErrorType, message: impl Into<String>) -> ActionError {
        ActionError {
            kind,
            message: message.into(),
            action: None,
            source: None,
            known_cause: None,
        }
    }

    /// Says what caused this error, overriding what [`ActionError::cause`] would derive.
    pub fn caused_by(mut self, cause: FailureCause) -> ActionError {
        self.known_cause = Some(cause);
        self
    }

    /// basalt's cause of this error: the one the action gave, or else by LAVA's error type —
    /// a timeout by the stage of the action that ran out of time.
    pub fn cause(&self) -> FailureCause {
        if let Some(c) = self.known_cause {
            return c;
        }
        match self.kind {
            ErrorType::Infrastructure | ErrorType::Bug => FailureCause::Infrastructure,
            ErrorType::Job => FailureCause::Job,
            ErrorType::Test => FailureCause::Test,
            ErrorType::Canceled => FailureCause::Canceled,
            ErrorType::Timeout => self
                .action
                .as_ref()
                .map(|a| stage_of(a.name))
                .unwrap_or(FailureCause::Infrastructure),
        }
    }

    pub fn infra(message: impl Into<String>) -> ActionError {
        ActionError::new(ErrorType::Infrastructure, message)
    }

    pub fn job(message: impl Into<String>) -> ActionError {
        ActionError::new(ErrorType::Job, message)
    }

    pub fn test(message: impl Into<String>) -> ActionError {
        ActionError::new(ErrorType::Test, message)
    }

    pub fn timeout(message: impl Into<String>) -> ActionError {
        ActionError::new(ErrorType::Timeout, message)
    }

    pub fn bug(message: impl Into<String>) -> ActionError {
        ActionError::new(ErrorType::Bug, message)
    }

    pub fn canceled(message: impl Into<String>) -> ActionError {
        ActionError::new(ErrorType::Canceled, message)
    }

    /// Keeps `source` as the error this one came from.
    pub fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> ActionError {
        self.source = Some(Arc::new(source));
        self
    }

    /// An infrastructure error `what: source`, keeping the source.
    pub fn infra_from(
        what: impl fmt::Display,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> ActionError {
        ActionError::infra(format!("{what}: {source}")).with_source(source)
    }

    /// Marks the error with the action it left, unless an inner action already did.
    pub fn at(mut self, level: &str, name: &'static str) -> ActionError {
        if self.action.is_none() {
            self.action = Some(FailedAction {
                level: level.to_string(),
                name,
            });
        }
        self
    }

    /// The chain of source messages, outermost first (for the log).
    pub fn chain(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut next: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(self);
        while let Some(e) = next {
            out.push(e.to_string());
            next = e.source();
        }
        out
    }
}

impl fmt::Display for ActionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.class_name(), self.message)
    }
}

impl std::error::Error for ActionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<basalt_hal::console::ConsoleError> for ActionError {
    fn from(e: basalt_hal::console::ConsoleError) -> ActionError {
        ActionError::infra(e.to_string()).with_source(e)
    }
}

impl From<basalt_hal::power::PowerError> for ActionError {
    fn from(e: basalt_hal::power::PowerError) -> ActionError {
        ActionError::infra(e.to_string()).with_source(e)
    }
}

impl From<basalt_hal::console::expect::ExpectError> for ActionError {
    fn from(e: basalt_hal::console::expect::ExpectError) -> ActionError {
        ActionError::expect("console", e)
    }
}

impl ActionError {
    /// A failed wait on the console, saying what was awaited: a timeout is the action's
    /// timeout, anything else (the connection dropped) the lab's problem.
    pub fn expect(what: &str, e: basalt_hal::console::expect::ExpectError) -> ActionError {
        let kind = if e.is_timeout() {
            ErrorType::Timeout
        } else {
            ErrorType::Infrastructure
        };
        ActionError::new(kind, format!("{what}: {e}")).with_source(e)
    }
}

/// Who is at fault when the action `name` runs out of time: waiting for the bootloader, for
/// the kernel and its login, or for a test; anything else (power, deploy, downloads, the
/// lab's own commands) is the lab's.
pub fn stage_of(name: &str) -> FailureCause {
    match name {
        "bootloader-interrupt"
        | "bootloader-commands"
        | "bootloader-retry"
        | "boot-bootloader"
        | "boot-bootloader-retry"
        | "uboot-action"
        | "uboot-commands"
        | "uboot-retry"
        | "uboot-from-media"
        | "u-boot-interrupt" => FailureCause::Bootloader,
        "auto-login-action"
        | "login-action"
        | "expect-shell-connection"
        | "minimal-boot"
        | "boot-image-retry"
        | "kernel-start-message" => FailureCause::Kernel,
        n if n.starts_with("lava-test-") || n == "multinode-test" => FailureCause::Test,
        _ => FailureCause::Infrastructure,
    }
}

/// Wraps I/O errors on the worker's own files: an infrastructure problem.
pub fn io_err(what: &str, e: std::io::Error) -> ActionError {
    ActionError::infra_from(what, e)
}
