//! `FakePower`: records every call, and fails the ones a test asks it to, so that an action's
//! power handling is a unit test.

use super::{Power, PowerError};
use async_trait::async_trait;
use std::sync::{Arc, Mutex};

/// A power switch that remembers what it was asked.
#[derive(Clone, Debug, Default)]
pub struct FakePower {
    calls: Arc<Mutex<Vec<&'static str>>>,
    failing: Arc<Mutex<Vec<&'static str>>>,
}

impl FakePower {
    /// A switch on which every operation succeeds.
    pub fn new() -> FakePower {
        FakePower::default()
    }

    /// Makes the next `op` (`on`, `off` or `reset`) fail.
    pub fn fail_next(&self, op: &'static str) {
        if let Ok(mut f) = self.failing.lock() {
            f.push(op);
        }
    }

    /// The operations called so far, in order.
    pub fn calls(&self) -> Vec<&'static str> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn call(&self, op: &'static str) -> Result<(), PowerError> {
        if let Ok(mut c) = self.calls.lock() {
            c.push(op);
        }
        let fail = self.failing.lock().ok().and_then(|mut f| {
            let i = f.iter().position(|x| *x == op)?;
            Some(f.remove(i))
        });
        match fail {
            Some(op) => Err(PowerError::Failed {
                op,
                what: self.describe(),
                message: "failure asked for by the test".to_string(),
            }),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Power for FakePower {
    fn describe(&self) -> String {
        "fake power".to_string()
    }

    async fn on(&self) -> Result<(), PowerError> {
        self.call("on")
    }

    async fn off(&self) -> Result<(), PowerError> {
        self.call("off")
    }

    async fn reset(&self) -> Result<(), PowerError> {
        self.call("reset")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_are_recorded_and_failures_injected() {
        let p = FakePower::new();
        p.fail_next("reset");
        p.on().await.unwrap();
        assert!(p.reset().await.is_err());
        p.reset().await.unwrap();
        p.off().await.unwrap();
        assert_eq!(p.calls(), ["on", "reset", "reset", "off"]);
    }
}
