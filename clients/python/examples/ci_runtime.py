#!/usr/bin/env python3
"""The CI runtime's user story with basalt_client: ask for a machine by specification, boot
it with an image (a URL, or a local file uploaded to the master's artifact store), wait until
it is ready, run commands on it, copy a file to it and check it arrived, release it.

    ci_runtime.py --url http://master:8080 --token TOKEN \\
        --arch x86_64 --ram 512M \\
        --kernel https://example.org/bzImage --ramdisk ./rootfs.cpio.gz \\
        --command 'uname -a' --command 'cat /proc/cpuinfo' \\
        --copy ./test-suite.sh:/tmp/test-suite.sh

``--url`` and ``--token`` default to $BASALT_URL and $BASALT_TOKEN. Exit status: 0 when every
command succeeded and the copy checked out, 1 otherwise, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

from basalt_client import (
    Artifact,
    BasaltError,
    BootRequest,
    Client,
    DeviceState,
    ExecResult,
    Reservation,
)


def say(msg: str) -> None:
    print(f"ci_runtime: {msg}", flush=True)


def image(client: Client, value: str | None, local_files: str) -> str | Artifact | Path | None:
    """A URL as given; a local file uploaded to the artifact store (or, with
    ``--local-files file-url``, given to the worker as a file:// URL)."""
    if value is None or "://" in value or value.startswith("artifact:"):
        return value
    path = Path(value)
    if not path.is_file():
        raise SystemExit(f"ci_runtime: {value} is neither a URL nor a file")
    if local_files == "file-url":
        return path
    say(f"uploading {path} ({path.stat().st_size} bytes) to the artifact store")
    art = client.upload(path)
    say(f"  {art.ref} sha256 {art.sha256}")
    return art


def run(r: Reservation, command: str, via: str, timeout: float) -> ExecResult:
    """Runs a command over the chosen transport."""
    if via == "ssh" or (via == "auto" and r.connection.ssh is not None):
        with r.ssh() as ssh:
            return ssh.ssh_run(command, timeout=timeout)
    if via == "console":
        with r.console() as console:
            return console.run(command, timeout=timeout)
    return r.run(command, timeout=timeout)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--url", default=os.environ.get("BASALT_URL"), help="the master (http://HOST:PORT)")
    p.add_argument("--token", default=os.environ.get("BASALT_TOKEN"), help="an API token")
    want = p.add_argument_group("which machine (a device type, or a minimum specification)")
    want.add_argument("--device-type")
    want.add_argument("--arch", help="x86_64, arm64, armv7, ...")
    want.add_argument("--ram", help="at least this much memory: 512M, 1G, ...")
    want.add_argument("--cpus", type=int, help="at least this many CPUs")
    want.add_argument("--feature", action="append", help="a required feature (repeatable): neon, ...")
    want.add_argument("--tag", action="append", help="a required device tag (repeatable)")
    want.add_argument("--lease", type=int, default=900, help="lease seconds (renewed while the script runs)")
    boot = p.add_argument_group("what to boot (URLs, artifact:NAME, or local files)")
    boot.add_argument("--kernel")
    boot.add_argument("--ramdisk")
    boot.add_argument("--dtb")
    boot.add_argument("--rootfs")
    boot.add_argument("--image", help="a whole disk image (qemu devices)")
    boot.add_argument("--prompt", action="append", help="the booted shell's prompt (repeatable)")
    boot.add_argument("--local-files", choices=["upload", "file-url"], default="upload",
                      help="local files: upload them to the artifact store (default), or pass file:// URLs")  # fmt: skip
    boot.add_argument("--boot-timeout", type=int, default=300)
    use = p.add_argument_group("what to do on it")
    use.add_argument("--command", action="append", help="a command to run (repeatable; default: uname -a)")
    use.add_argument("--via", choices=["auto", "rest", "console", "ssh"], default="auto",
                     help="how commands run: ssh when the board has it (auto), else the REST exec call")  # fmt: skip
    use.add_argument("--copy", metavar="LOCAL:REMOTE",
                     help="a file to copy to the board (default: a generated file to /tmp/basalt-ci-copy.txt)")  # fmt: skip
    use.add_argument("--queue-timeout", type=float, default=600, help="seconds to wait for a machine")
    use.add_argument("--wait-idle", action="store_true", help="after the release, wait until the device is Idle")
    args = p.parse_args(argv)
    if not args.url or not args.token:
        p.error("--url and --token (or $BASALT_URL and $BASALT_TOKEN) are required")
    if not (args.kernel or args.image or args.rootfs):
        p.error("give something to boot: --kernel (with --ramdisk, --dtb), --image or --rootfs")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    client = Client(args.url, args.token)
    request = BootRequest(
        kernel=image(client, args.kernel, args.local_files),
        ramdisk=image(client, args.ramdisk, args.local_files),
        dtb=image(client, args.dtb, args.local_files),
        rootfs=image(client, args.rootfs, args.local_files),
        image=image(client, args.image, args.local_files),
        prompts=args.prompt,
        timeout_secs=args.boot_timeout,
    )
    with tempfile.TemporaryDirectory(prefix="ci-runtime-") as tmp:
        if args.copy:
            local, _, remote = args.copy.partition(":")
            if not remote:
                raise SystemExit("ci_runtime: --copy takes LOCAL:REMOTE")
        else:
            local, remote = os.path.join(tmp, "copy.txt"), "/tmp/basalt-ci-copy.txt"
            Path(local).write_text(f"basalt ci runtime {time.time()}\n" * 20)
        failures = 0
        r = client.reserve(args.device_type, arch=args.arch, ram=args.ram, cpus=args.cpus,
                           features=args.feature, tags=args.tag, lease=args.lease, boot=request,
                           description="ci_runtime.py")  # fmt: skip
        say(f"reservation {r.id}: {r.state}")
        with r, r.keep_alive():
            t0 = time.monotonic()
            r.wait("ready", timeout=args.queue_timeout + args.boot_timeout)
            say(f"reservation {r.id}: ready on {r.device} after {time.monotonic() - t0:.1f} s"
                f"{' (ssh ' + r.connection.ssh.host + ':' + str(r.connection.ssh.port) + ')' if r.connection.ssh else ''}")  # fmt: skip
            for command in args.command or ["uname -a"]:
                result = run(r, command, args.via, timeout=120)
                say(f"$ {command}  -> exit {result.exit_status}")
                sys.stdout.write(result.output if result.output.endswith("\n") else result.output + "\n")
                failures += result.exit_status != 0
            r.copy_to(local, remote)
            want = hashlib.sha256(Path(local).read_bytes()).hexdigest()
            got = run(r, f"sha256sum {remote}", args.via, timeout=60).output.split()
            ok = bool(got) and got[0] == want
            say(f"copied {local} to {remote}: sha256 {'matches' if ok else 'DIFFERS: ' + ' '.join(got)}")
            failures += not ok
            device = r.device
            r.release(wait=True)
        say(f"reservation {r.id}: {r.state}")
        if args.wait_idle and device:
            deadline = time.monotonic() + 120
            while client.device(device).state is not DeviceState.IDLE:
                if time.monotonic() > deadline:
                    say(f"{device} is not Idle 120 s after the release")
                    return 1
                time.sleep(0.5)
            say(f"{device} is Idle")
    say("done" if failures == 0 else f"{failures} failure(s)")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BasaltError as e:
        print(f"ci_runtime: {e}", file=sys.stderr)
        sys.exit(1)
