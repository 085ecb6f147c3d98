#!/usr/bin/python3
"""Boot a fixture kernel + initramfs in QEMU (TCG, no network) and check its shell.

Usage: hw-tests/boot-check.py [--fixtures DIR] [--timeout S] [--log FILE] [amd64|arm64]

Waits for the initramfs banner and the '/ # ' prompt, runs `uname -a`, checks a
few applets and /tmp, interrupts a `sleep` with ^C, then kills QEMU by its PID
(also on timeout, error or SIGTERM/SIGINT/SIGHUP).
Prints the time from QEMU's start to the prompt. Exit status 0 when all is seen.
Needs python3-pexpect (Debian's /usr/bin/python3) and qemu-system-x86/-arm.
"""
import argparse
import os
import signal
import sys
import time

import pexpect

PROMPT = r'/ # '
BANNER = r'basalt-initramfs: [^\r\n]*'

ARCHES = {
    'amd64': dict(
        qemu=['qemu-system-x86_64', '-accel', 'tcg'],
        kernel='amd64/vmlinux',
        initrd='amd64/initramfs.cpio.gz',
        append='console=ttyS0,115200 quiet panic=-1',
        machine='x86_64',
    ),
    'arm64': dict(
        qemu=['qemu-system-aarch64', '-M', 'virt', '-cpu', 'cortex-a57'],
        kernel='arm64/Image',
        initrd='arm64/initramfs.cpio.gz',
        append='console=ttyAMA0,115200 quiet panic=-1',
        machine='aarch64',
    ),
}


class Terminated(Exception):
    pass


def on_signal(signum, _frame):
    raise Terminated('signal %d' % signum)


def stop_qemu(child):
    """Kill QEMU by its PID: SIGTERM, then SIGKILL after 3 s; reap it."""
    if child is None or child.pid is None:
        return
    try:
        os.kill(child.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(child.pid, os.WNOHANG)
        except ChildProcessError:
            break
        if pid:
            break
        time.sleep(0.05)
    else:
        try:
            os.kill(child.pid, signal.SIGKILL)
            os.waitpid(child.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    try:
        child.close(force=True)
    except Exception:  # already reaped above
        pass


def main():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('arch', nargs='?', default='amd64', choices=sorted(ARCHES))
    ap.add_argument('--fixtures', default=os.environ.get('BASALT_FIXTURES')
                    or os.path.join(repo, 'target', 'fixtures'))
    ap.add_argument('--timeout', type=float, default=120.0,
                    help='deadline for the whole check, seconds (default 120)')
    ap.add_argument('--log', help='console log file (default FIXTURES/logs/boot-ARCH.log)')
    args = ap.parse_args()

    a = ARCHES[args.arch]
    kernel = os.path.join(args.fixtures, a['kernel'])
    initrd = os.path.join(args.fixtures, a['initrd'])
    for f in (kernel, initrd):
        if not os.path.isfile(f):
            sys.exit('boot-check: %s missing: run hw-tests/build-fixtures.sh' % f)
    log_path = args.log or os.path.join(args.fixtures, 'logs', 'boot-%s.log' % args.arch)
    os.makedirs(os.path.dirname(log_path), exist_ok=True)

    # No network at all (-nic none). Console on QEMU's stdio (a pty from pexpect),
    # with signal=off: else a ^C meant for the guest ends QEMU (as it does with
    # `-nographic -monitor none`).
    cmd = a['qemu'] + ['-m', '512', '-nic', 'none', '-display', 'none',
                       '-monitor', 'none', '-chardev', 'stdio,id=con,signal=off',
                       '-serial', 'chardev:con', '-no-reboot',
                       '-kernel', kernel, '-initrd', initrd, '-append', a['append']]

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    child = None
    t0 = time.monotonic()
    deadline = t0 + args.timeout
    left = lambda: max(0.1, deadline - time.monotonic())  # noqa: E731
    step = 'start'
    try:
        with open(log_path, 'wb') as log:
            child = pexpect.spawn(cmd[0], cmd[1:], timeout=args.timeout, logfile=log,
                                  dimensions=(50, 200))
            step = 'banner'
            child.expect(BANNER, timeout=left())
            banner = child.after.decode(errors='replace')
            t_banner = time.monotonic() - t0
            step = 'prompt'
            child.expect_exact(PROMPT, timeout=left())
            t_prompt = time.monotonic() - t0
            step = 'uname'
            child.sendline('uname -a')
            child.expect(r'Linux basalt-dut [^\r\n]* %s[^\r\n]*[\r\n]' % a['machine'], timeout=left())
            uname = child.after.decode(errors='replace').strip()
            child.expect_exact(PROMPT, timeout=left())
            step = 'applets'
            child.sendline('for c in sh cat sed awk grep sleep mkdir cpio gzip tar date env '
                           'uname find xargs; do command -v $c >/dev/null || echo NO-$c; done; '
                           'grep -q " /tmp tmpfs" /proc/mounts || echo NO-${x:-tmp}; '
                           'echo APPLETS-$((6*7))')
            i = child.expect([r'APPLETS-42', r'NO-[a-z]+'], timeout=left())
            if i != 0:
                raise RuntimeError('missing in the initramfs: %s' % child.after.decode())
            child.expect_exact(PROMPT, timeout=left())
            step = 'ctrl-c'  # the shell has a controlling tty: ^C stops a hung command
            child.sendline('sleep 600')
            time.sleep(0.3)
            child.sendcontrol('c')
            child.expect_exact(PROMPT, timeout=min(10, left()))
            child.sendline('echo CTRL-C-$((6*7))')
            child.expect(r'CTRL-C-42', timeout=left())
            child.expect_exact(PROMPT, timeout=left())
            t_done = time.monotonic() - t0
    except pexpect.TIMEOUT:
        print('boot-check %s: TIMEOUT waiting for %s after %.1f s (console log: %s)'
              % (args.arch, step, time.monotonic() - t0, log_path), file=sys.stderr)
        return 1
    except pexpect.EOF:
        print('boot-check %s: QEMU ended while waiting for %s (console log: %s)'
              % (args.arch, step, log_path), file=sys.stderr)
        return 1
    except (RuntimeError, Terminated) as e:
        print('boot-check %s: %s at %s (console log: %s)' % (args.arch, e, step, log_path),
              file=sys.stderr)
        return 1
    finally:
        stop_qemu(child)

    print('boot-check %s: %s' % (args.arch, banner.strip()))
    print('boot-check %s: %s' % (args.arch, uname))
    print('boot-check %s: ok: banner %.2f s, prompt %.2f s, all checks %.2f s'
          % (args.arch, t_banner, t_prompt, t_done))
    return 0


if __name__ == '__main__':
    sys.exit(main())
