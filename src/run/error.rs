//! Errors of a running job, classified as LAVA classifies them: they decide the job's
//! `error_type` and whether the device's health is in question.

use std::fmt;

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

/// An action failed.
#[derive(Clone, Debug)]
pub struct ActionError {
    pub kind: ErrorType,
    pub message: String,
}

impl ActionError {
    pub fn infra(message: impl Into<String>) -> ActionError {
        ActionError {
            kind: ErrorType::Infrastructure,
            message: message.into(),
        }
    }

    pub fn job(message: impl Into<String>) -> ActionError {
        ActionError {
            kind: ErrorType::Job,
            message: message.into(),
        }
    }

    pub fn test(message: impl Into<String>) -> ActionError {
        ActionError {
            kind: ErrorType::Test,
            message: message.into(),
        }
    }

    pub fn timeout(message: impl Into<String>) -> ActionError {
        ActionError {
            kind: ErrorType::Timeout,
            message: message.into(),
        }
    }

    pub fn bug(message: impl Into<String>) -> ActionError {
        ActionError {
            kind: ErrorType::Bug,
            message: message.into(),
        }
    }
}

impl fmt::Display for ActionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.class_name(), self.message)
    }
}

impl std::error::Error for ActionError {}

impl From<basalt_hal::console::ConsoleError> for ActionError {
    fn from(e: basalt_hal::console::ConsoleError) -> ActionError {
        ActionError::infra(e.to_string())
    }
}

impl From<basalt_hal::power::PowerError> for ActionError {
    fn from(e: basalt_hal::power::PowerError) -> ActionError {
        ActionError::infra(e.to_string())
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
        if e.is_timeout() {
            ActionError::timeout(format!("{what}: {e}"))
        } else {
            ActionError::infra(format!("{what}: {e}"))
        }
    }
}

/// Wraps I/O errors on the worker's own files: an infrastructure problem.
pub fn io_err(what: &str, e: std::io::Error) -> ActionError {
    ActionError::infra(format!("{what}: {e}"))
}
