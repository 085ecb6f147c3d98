//! The strategies basalt has, by the name a job gives them: deploy `to:`, boot `method:` and
//! test kind. The pipeline is built from these lists; a name that is not here is outside
//! basalt's scope (the job parser already warns about it).

use super::{boot, deploy, test};
use crate::action::{ActionNode, Builder, PipelineError, Scope};
use crate::job::{Boot, Deploy, Test};

/// Builds the actions of one job block.
pub type Build<B> = fn(&Builder<'_>, &Scope<'_>, &B) -> Result<ActionNode, PipelineError>;

/// A strategy: the name a job uses and how its block is built.
pub struct Strategy<B: 'static> {
    pub name: &'static str,
    pub build: Build<B>,
}

/// `deploy: to:` strategies.
pub static DEPLOY: &[Strategy<Deploy>] = &[
    Strategy {
        name: "tmpfs",
        build: deploy::tmpfs::pipeline,
    },
    Strategy {
        name: "tftp",
        build: deploy::tftp::pipeline,
    },
    Strategy {
        name: "nfs",
        build: deploy::nfs::pipeline,
    },
    Strategy {
        name: "usb",
        build: deploy::storage::pipeline,
    },
    Strategy {
        name: "sata",
        build: deploy::storage::pipeline,
    },
    Strategy {
        name: "overlay",
        build: deploy::overlay::pipeline,
    },
];

/// `boot: method:` strategies.
pub static BOOT: &[Strategy<Boot>] = &[
    Strategy {
        name: "qemu",
        build: boot::qemu::pipeline,
    },
    Strategy {
        name: "qemu-nfs",
        build: boot::qemu::pipeline,
    },
    Strategy {
        name: "u-boot",
        build: boot::uboot::pipeline,
    },
    Strategy {
        name: "minimal",
        build: boot::minimal::pipeline,
    },
    Strategy {
        name: "bootloader",
        build: boot::uboot::bootloader_pipeline,
    },
];

/// Test block kinds: `definitions`, `interactive`, `monitors`.
pub static TEST: &[Strategy<Test>] = &[
    Strategy {
        name: "definitions",
        build: test::shell::pipeline,
    },
    Strategy {
        name: "interactive",
        build: test::interactive::pipeline,
    },
    Strategy {
        name: "monitors",
        build: test::monitor::pipeline,
    },
];

/// The strategy called `name` in `list`.
pub fn find<B>(list: &'static [Strategy<B>], name: &str) -> Option<&'static Strategy<B>> {
    list.iter().find(|s| s.name == name)
}

/// The names of `list`, for messages.
pub fn names<B>(list: &'static [Strategy<B>]) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = list.iter().map(|s| s.name).collect();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{BootMethod, DeployTo};

    /// The job parser's lists of what is in scope are the registry's.
    #[test]
    fn registry_matches_the_parsers_scope() {
        assert_eq!(names(DEPLOY), DeployTo::IN_SCOPE.to_vec());
        assert_eq!(names(BOOT), BootMethod::IN_SCOPE.to_vec());
        assert_eq!(names(TEST), vec!["definitions", "interactive", "monitors"]);
    }
}
