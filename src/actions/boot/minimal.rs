//! `minimal-boot`: a device that is already on (or is reset by its power commands) and only
//! needs its console connected and a login.

use super::login::{login_tail, reset_device};
use crate::action::context::open_session;
use crate::action::{action, retry, Action, ActionError, ActionNode, Builder, Check, Ctx};
use crate::action::{PipelineError, Scope};
use crate::job::Boot;

pub(crate) fn pipeline(
    b: &Builder<'_>,
    s: &Scope<'_>,
    boot: &Boot,
) -> Result<ActionNode, PipelineError> {
    let mut node = b.node(
        s,
        None,
        retry("minimal-boot", "connect to a device that is already on"),
    );
    b.child(s, &mut node, ConnectDevice);
    if !b.device.commands.pre_power.is_empty() {
        b.child(s, &mut node, DeviceCommand::PrePower);
    }
    if !b.device.commands.pre_os.is_empty() {
        b.child(s, &mut node, DeviceCommand::PreOs);
    }
    if boot.reset.unwrap_or(true) {
        reset_device(b, s, &mut node);
    }
    login_tail(b, s, boot, &mut node);
    Ok(node)
}

/// `connect-device`: open the device's console with its `connection_command`.
#[derive(Debug)]
pub struct ConnectDevice;

#[async_trait::async_trait]
impl Action for ConnectDevice {
    fn name(&self) -> &'static str {
        "connect-device"
    }
    fn description(&self) -> &'static str {
        "connect to the device's console"
    }
    fn validate(&self, c: &Check<'_>) -> Result<(), String> {
        if c.device.commands.connect.is_none() {
            return Err(format!(
                "device '{}' has no connection command for its console",
                c.device.hostname
            ));
        }
        Ok(())
    }
    async fn run(&self, ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
        run_connect(ctx, node).await
    }
}

async fn run_connect(ctx: &mut Ctx, _node: &ActionNode) -> Result<(), ActionError> {
    if ctx.session.as_ref().is_some_and(|s| !s.is_closed()) {
        return Ok(());
    }
    // A console that dropped (a retry after a failed boot) is opened again.
    ctx.session = None;
    let console = ctx.board.console.as_deref().ok_or_else(|| {
        ActionError::job(format!(
            "device '{}' has no connection command",
            ctx.device.hostname
        ))
    })?;
    // a telnet console (ser2net) is up when `connect` returns, so nothing the board prints
    // right after a power cycle is lost; a command console runs confined (the board was
    // opened with the job's policy)
    let stream = console.connect().await?;
    let what = console.describe();
    ctx.log.info(format!("connected to the console: {what}"));
    ctx.session = Some(open_session(&ctx.log, stream, &what));
    Ok(())
}

action! {
    /// `pdu-reboot`: power-cycle the device with its hard reset command.
    pub struct PduReboot = "pdu-reboot", "power-cycle the device with its hard reset command";
    run(ctx, _node) {
        ctx.power()?.reset().await?;
        ctx.log.info("device reset");
        Ok(())
    }
}

/// `pre-power-command` / `pre-os-command`: the device's commands run on the worker.
#[derive(Debug)]
pub enum DeviceCommand {
    PrePower,
    PreOs,
}

#[async_trait::async_trait]
impl Action for DeviceCommand {
    fn name(&self) -> &'static str {
        match self {
            DeviceCommand::PrePower => "pre-power-command",
            DeviceCommand::PreOs => "pre-os-command",
        }
    }
    fn description(&self) -> &'static str {
        match self {
            DeviceCommand::PrePower => "run the device's pre-power command",
            DeviceCommand::PreOs => "run the device's pre-OS command",
        }
    }
    async fn run(&self, ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
        let cmds = match self {
            DeviceCommand::PrePower => ctx.device.commands.pre_power.clone(),
            DeviceCommand::PreOs => ctx.device.commands.pre_os.clone(),
        };
        for cmd in cmds {
            basalt_hal::power::command::run_shell(
                &cmd,
                std::time::Duration::from_secs(node.timeout),
            )
            .await
            .map_err(|e| ActionError::infra(format!("{cmd}: {e}")).with_source(e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::run::testing::{fixture, run_tree};
    use basalt_hal::console::fake::{FakeConsole, Step};
    use basalt_hal::power::fake::FakePower;

    const JOB: &str = "
device_type: beaglebone-black
job_name: minimal over fakes
timeouts: {job: {minutes: 2}, action: {seconds: 20}}
priority: medium
visibility: public
secrets: {PW: s3cret}
actions:
- boot:
    method: minimal
    auto_login:
      login_prompt: 'login:'
      username: root
      password_prompt: 'Password:'
      password: s3cret
      login_commands: ['stty -echo']
    prompts: ['/ # ']
";

    /// `minimal-boot` over fakes: connect, reset through the power backend, log in with the
    /// password, then finalize switches the board off; the password reaches no log record.
    #[tokio::test]
    async fn minimal_boot_resets_logs_in_and_finalize_powers_off() {
        let mut f = fixture("bbb-01", JOB, vec!["s3cret".into()]);
        let (tx, mut rx) = crate::log::channel();
        f.ctx
            .log
            .add_sink(Box::new(crate::log::ChannelSink::new(tx)));
        let console = FakeConsole::new(vec![
            Step::print("\r\n[    1.000000] Linux version 6.1.0\r\nbuildroot login: "),
            Step::wait_for("root\n"),
            Step::print("Password: "),
            Step::wait_for("s3cret\n"),
            Step::wait_for("stty -echo\n"),
            Step::print("\r\n/ # "),
        ]);
        let power = FakePower::new();
        f.ctx.board.console = Some(Box::new(console.clone()));
        f.ctx.board.power = Some(Box::new(power.clone()));
        let (boot, finalize) = (&f.pipeline.actions[0], &f.pipeline.actions[1]);
        assert_eq!((boot.name(), finalize.name()), ("minimal-boot", "finalize"));
        let ran = run_tree(&mut f.ctx, boot)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            ran,
            [
                "minimal-boot",
                "connect-device",
                "reset-device",
                "pdu-reboot",
                "auto-login-action",
                "login-action"
            ]
        );
        run_tree(&mut f.ctx, finalize)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(power.calls(), vec!["reset", "off"]);
        assert!(console.received().contains("root\ns3cret\nstty -echo\n"));
        drop(f.ctx);
        let mut lines = 0;
        while let Ok(record) = rx.try_recv() {
            lines += 1;
            assert!(!record.line.contains("s3cret"), "{}", record.line);
        }
        assert!(lines > 5, "{lines} records");
    }

    /// A board whose console drops during the login: an infrastructure error, marked with
    /// the action that saw it, keeping the console error.
    #[tokio::test]
    async fn a_console_that_drops_is_an_infrastructure_error_of_the_login() {
        let mut f = fixture("bbb-01", JOB, Vec::new());
        f.ctx.board.console = Some(Box::new(FakeConsole::new(vec![
            Step::print("buildroot login: "),
            Step::Close,
        ])));
        f.ctx.board.power = Some(Box::new(FakePower::new()));
        let boot = &f.pipeline.actions[0];
        let e = run_tree(&mut f.ctx, boot).await.unwrap_err();
        assert_eq!(e.kind, crate::error::ErrorType::Infrastructure, "{e}");
        let at = e.action.as_ref().map(|a| (a.level.as_str(), a.name));
        assert_eq!(at, Some(("1.3.1", "login-action")), "{e}");
        assert!(std::error::Error::source(&e).is_some(), "{e}");
    }
}
