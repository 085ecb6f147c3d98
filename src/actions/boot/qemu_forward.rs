//! The SSH port forward of a held QEMU board: `hostfwd=tcp:127.0.0.1:PORT-:22` on the
//! device's user-mode network back-end (docs/reservations.md, `## SSH`).
//!
//! It is the dispatcher's option (`basalt run --ssh-forward PORT`, `basalt hold`), never the
//! job's: jobs still may not name `hostfwd` ([`crate::job::qemu_args`]), so the forward is
//! added to the finished command line, after the job's arguments were checked. It only ever
//! binds 127.0.0.1. QEMU keeps explicit forwards with `restrict=on` (the guest still reaches
//! nothing, the host reaches its port 22). A confined QEMU without the network
//! ([`crate::action::Ctx::qemu_policy`]) runs in a network namespace of its own, where a
//! forward would be out of the host's reach: with a forward it keeps the host's network, and
//! its guest is made `restrict=on` ([`Restrict::Force`]), so that the guest still reaches
//! nothing but the forward gives the host its port 22.

/// Why no forward could be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// The device has no network card (`netdevice none`, `no_network`).
    #[error("the device has no network card ({0}): no SSH port can be forwarded to it")]
    NoNetwork(String),
    /// The device's network is not QEMU's user networking (tap, bridge, socket, ...): the
    /// guest is on a network of its own and is reached at its own address.
    #[error("the device's network back-end is '{0}', not QEMU user networking: no port is forwarded (SSH goes to the guest's own address)")]
    NotUser(String),
    /// Port 0 is not a port.
    #[error("SSH forward port 0 is not a port")]
    PortZero,
}

/// Whether the user-mode back-end that gets the forward is made `restrict=on`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restrict {
    /// As the device set it.
    Keep,
    /// `restrict=on`, whatever the device said (it had no network before).
    Force,
}

/// The `hostfwd` rule for `port`: host 127.0.0.1 only, guest port 22.
pub fn hostfwd(port: u16) -> String {
    format!("hostfwd=tcp:127.0.0.1:{port}-:22")
}

/// The QEMU options that take a network back-end, and whether the back-end type is the first
/// word of their value.
const NET_OPTIONS: &[&str] = &["-netdev", "--netdev", "-nic", "--nic", "-net", "--net"];

/// Adds the forward of 127.0.0.1:`port` to the guest's port 22 to `argv` (QEMU's command line,
/// the binary first): to the first user-mode back-end (`-netdev user`, `-nic user`, `-net
/// user`); with none but a legacy `-net nic`, a `-net user,restrict=on` for it; with no
/// network option at all (QEMU's default card), a `-nic user,restrict=on` instead of it.
pub fn add_ssh_forward(
    argv: &mut Vec<String>,
    port: u16,
    restrict: Restrict,
) -> Result<(), ForwardError> {
    if port == 0 {
        return Err(ForwardError::PortZero);
    }
    let rule = hostfwd(port);
    let mut legacy_nic = false;
    let mut other: Option<String> = None;
    let mut none: Option<String> = None;
    let mut i = 1;
    while i + 1 < argv.len() {
        let opt = argv[i].as_str();
        if !NET_OPTIONS.contains(&opt) {
            i += 1;
            continue;
        }
        let value = argv[i + 1].clone();
        let kind = value.split(',').next().unwrap_or("").to_string();
        match kind.as_str() {
            "user" => {
                let value = match restrict {
                    Restrict::Keep => value,
                    Restrict::Force => restricted(&value),
                };
                argv[i + 1] = format!("{value},{rule}");
                return Ok(());
            }
            "nic" if opt.trim_start_matches('-') == "net" => legacy_nic = true,
            "none" => none = Some(format!("{opt} {value}")),
            _ => {
                other.get_or_insert(kind);
            }
        }
        i += 2;
    }
    if argv
        .iter()
        .any(|a| a == "-nodefaults" || a == "--nodefaults")
        && !legacy_nic
        && other.is_none()
    {
        // no card of QEMU's own either
        return Err(ForwardError::NoNetwork("-nodefaults".into()));
    }
    if let Some(n) = none {
        return Err(ForwardError::NoNetwork(n));
    }
    if let Some(kind) = other {
        return Err(ForwardError::NotUser(kind));
    }
    if legacy_nic {
        argv.push("-net".into());
    } else {
        argv.push("-nic".into());
    }
    argv.push(format!("user,restrict=on,{rule}"));
    Ok(())
}

/// A user back-end's options with `restrict=on` (any other `restrict=` value removed).
fn restricted(value: &str) -> String {
    let mut parts: Vec<&str> = value
        .split(',')
        .filter(|p| !p.starts_with("restrict="))
        .collect();
    parts.push("restrict=on");
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        shell_words::split(s).unwrap()
    }

    #[test]
    fn the_qemu_device_types_user_network_gets_the_forward() {
        // what config/device-types/qemu.jinja2 renders for netdevice user
        let mut a = argv(
            "qemu-system-x86_64 -nographic -net nic,model=virtio,macaddr=52:54:00:12:34:58 -net user,restrict=on -m 512",
        );
        add_ssh_forward(&mut a, 7101, Restrict::Keep).unwrap();
        assert_eq!(
            a,
            argv("qemu-system-x86_64 -nographic -net nic,model=virtio,macaddr=52:54:00:12:34:58 -net user,restrict=on,hostfwd=tcp:127.0.0.1:7101-:22 -m 512")
        );
    }

    #[test]
    fn netdev_and_nic_back_ends() {
        let mut a = argv("q -netdev user,id=n0 -device virtio-net-pci,netdev=n0");
        add_ssh_forward(&mut a, 2222, Restrict::Keep).unwrap();
        assert_eq!(a[2], "user,id=n0,hostfwd=tcp:127.0.0.1:2222-:22");
        let mut a = argv("q -nic user,model=e1000");
        add_ssh_forward(&mut a, 2222, Restrict::Keep).unwrap();
        assert_eq!(a[2], "user,model=e1000,hostfwd=tcp:127.0.0.1:2222-:22");
        // only the first user back-end: two forwards of one port would clash
        let mut a = argv("q -net user -net user");
        add_ssh_forward(&mut a, 2222, Restrict::Keep).unwrap();
        assert_eq!(a[2], "user,hostfwd=tcp:127.0.0.1:2222-:22");
        assert_eq!(a[4], "user");
    }

    #[test]
    fn a_card_without_back_end_or_no_option_gets_a_restricted_user_back_end() {
        let mut a = argv("q -net nic,model=virtio");
        add_ssh_forward(&mut a, 7000, Restrict::Keep).unwrap();
        assert_eq!(
            &a[3..],
            ["-net", "user,restrict=on,hostfwd=tcp:127.0.0.1:7000-:22"]
        );
        let mut a = argv("q -m 512");
        add_ssh_forward(&mut a, 7000, Restrict::Keep).unwrap();
        assert_eq!(
            &a[3..],
            ["-nic", "user,restrict=on,hostfwd=tcp:127.0.0.1:7000-:22"]
        );
    }

    #[test]
    fn no_network_or_another_back_end_is_refused() {
        for (cmd, want) in [
            ("q -nic none", ForwardError::NoNetwork("-nic none".into())),
            ("q -net none", ForwardError::NoNetwork("-net none".into())),
            (
                "q -nodefaults",
                ForwardError::NoNetwork("-nodefaults".into()),
            ),
            (
                "q -net nic -net tap,ifname=tap0",
                ForwardError::NotUser("tap".into()),
            ),
            (
                "q -netdev bridge,id=b,br=br0",
                ForwardError::NotUser("bridge".into()),
            ),
        ] {
            let mut a = argv(cmd);
            let before = a.clone();
            assert_eq!(
                add_ssh_forward(&mut a, 7000, Restrict::Keep),
                Err(want),
                "{cmd}"
            );
            assert_eq!(a, before, "{cmd}: unchanged");
        }
        assert_eq!(
            add_ssh_forward(&mut argv("q"), 0, Restrict::Keep),
            Err(ForwardError::PortZero)
        );
    }

    #[test]
    fn a_forced_restriction_replaces_the_devices() {
        for (net, want) in [
            ("user", "user,restrict=on"),
            ("user,restrict=off", "user,restrict=on"),
            ("user,restrict=on,id=n", "user,id=n,restrict=on"),
        ] {
            let mut a = vec!["q".to_string(), "-net".into(), net.into()];
            add_ssh_forward(&mut a, 7000, Restrict::Force).unwrap();
            assert_eq!(
                a[2],
                format!("{want},hostfwd=tcp:127.0.0.1:7000-:22"),
                "{net}"
            );
        }
        let mut a = vec!["q".to_string()];
        add_ssh_forward(&mut a, 7000, Restrict::Force).unwrap();
        assert_eq!(a[2], "user,restrict=on,hostfwd=tcp:127.0.0.1:7000-:22");
    }

    #[test]
    fn the_forward_binds_loopback_only() {
        assert_eq!(hostfwd(1), "hostfwd=tcp:127.0.0.1:1-:22");
    }
}
