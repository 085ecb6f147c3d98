#!/usr/bin/env python3
"""Writes the LAVA-verdict corpus: one job per rule of docs/validation.md.

Each case is a base job with one edit; the line that carries the fault ends in `#<` here.
The generated file starts with a header naming the expected verdict, and for refused jobs
the line and key path of the error (`# refuse LINE PATH`). Run it again after editing:
    python3 tests/data/lava-verdict/make.py
"""
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))

BASE = """\
device_type: qemu
job_name: ltp-syscalls on qemu-arm64
timeouts:
  job:
    minutes: 60
  action:
    minutes: 10
  connection:
    minutes: 2
priority: medium
visibility: public
context:
  arch: arm64
  machine: virt,gic-version=3
  cpu: max
  extra_options:
  - -smp 2
metadata:
  source: basalt-tests
  build-url: http://example.invalid/builds/1
actions:
- deploy:
    to: tmpfs
    os: oe
    timeout:
      minutes: 5
    images:
      kernel:
        image_arg: -kernel {kernel}
        url: http://example.invalid/Image.gz
        compression: gz
      rootfs:
        image_arg: -drive file={rootfs},if=virtio,format=raw
        url: http://example.invalid/rootfs.ext4.xz
        compression: xz
- boot:
    method: qemu
    media: tmpfs
    timeout:
      minutes: 5
    prompts:
    - 'root@(.*):[/~]#'
    auto_login:
      login_prompt: 'login:'
      username: root
- test:
    timeout:
      minutes: 40
    definitions:
    - repository: https://example.invalid/test-definitions.git
      from: git
      path: automated/linux/ltp/ltp.yaml
      name: ltp-syscalls
      parameters:
        TST_CMDFILES: syscalls
        SKIPFILE: skipfile-lkft.yaml
"""

MULTINODE = """\
job_name: multinode ping
timeouts:
  job:
    minutes: 30
visibility: public
protocols:
  lava-multinode:
    roles:
      server:
        device_type: qemu
        count: 1
      client:
        device_type: qemu
        count: 2
actions:
- deploy:
    role:
    - server
    - client
    to: tmpfs
    images:
      rootfs:
        image_arg: -drive file={rootfs},if=virtio,format=raw
        url: http://example.invalid/rootfs.ext4
- boot:
    role:
    - server
    - client
    method: qemu
    media: tmpfs
    prompts:
    - '# '
"""


def sub(base, old, new):
    assert old in base, old
    return base.replace(old, new, 1)


def refuse(name, text, path):
    CASES.append((name, "refuse", text, path))


def accept(name, text):
    CASES.append((name, "accept", text, None))


CASES = []

# --- top level (closed in the gate)
refuse("top-unknown-key", sub(BASE, "timeouts:\n  job:", "timeout:  #<\n  job:"), "timeout")
refuse("top-job-name-empty", sub(BASE, "job_name: ltp-syscalls on qemu-arm64", "job_name: ''  #<"), "job_name")
refuse("top-job-name-number", sub(BASE, "job_name: ltp-syscalls on qemu-arm64", "job_name: 1234  #<"), "job_name")
refuse("top-visibility", sub(BASE, "visibility: public", "visibility: everyone  #<"), "visibility")
refuse("top-priority-range", sub(BASE, "priority: medium", "priority: 101  #<"), "priority")
refuse("top-tags-string", sub(BASE, "visibility: public", "visibility: public\ntags: arm64  #<"), "tags")
refuse("top-secrets-number", sub(BASE, "visibility: public", "visibility: public\nsecrets:\n  TOKEN: 1234  #<"), "secrets.TOKEN")
refuse("top-metadata-float-key", sub(BASE, "  source: basalt-tests", "  source: basalt-tests\n  4.2: answer  #<"), "metadata")
accept("ok-metadata-int-key", sub(BASE, "  source: basalt-tests", "  source: basalt-tests\n  42: answer"))
refuse("top-metadata-null", sub(BASE, "metadata:\n  source: basalt-tests\n  build-url: http://example.invalid/builds/1\n", "metadata:  #<\n"), "metadata")
refuse("top-reboot-to-fastboot", sub(BASE, "visibility: public", "visibility: public\nreboot_to_fastboot: yes-please  #<"), "reboot_to_fastboot")
refuse("top-device-type-missing", sub(BASE, "device_type: qemu\n", "#<\n"), "device_type")
refuse("top-protocol-unknown", sub(BASE, "visibility: public", "visibility: public\nprotocols:\n  lava-lxc:  #<\n    name: lxc-test"), "protocols.lava-lxc")
refuse("top-environment-list", sub(BASE, "visibility: public", "visibility: public\nenvironment: [A, B]  #<"), "environment")

# --- context (closed: CONTEXT_VARIABLES)
refuse("context-unknown-key", sub(BASE, "  cpu: max", "  cpu: max\n  qemu_binary: /tmp/evil  #<"), "context.qemu_binary")
refuse("context-mapping-value", sub(BASE, "  cpu: max", "  cpu:  #<\n    model: max"), "context.cpu")
refuse("context-float-value", sub(BASE, "  cpu: max", "  cpu: max\n  memory: 1.5  #<"), "context.memory")

# --- timeouts
refuse("timeout-two-units", sub(BASE, "  job:\n    minutes: 60", "  job:\n    minutes: 60\n    seconds: 30  #<"), "timeouts.job.seconds")
refuse("timeout-zero", sub(BASE, "  action:\n    minutes: 10", "  action:\n    minutes: 0  #<"), "timeouts.action.minutes")
refuse("timeout-unknown-unit", sub(BASE, "  connection:\n    minutes: 2", "  connection:\n    mins: 2  #<"), "timeouts.connection.mins")
refuse("timeout-string-value", sub(BASE, "  connection:\n    minutes: 2", "  connection:\n    minutes: two  #<"), "timeouts.connection.minutes")
refuse("timeout-unknown-key", sub(BASE, "  connection:\n    minutes: 2", "  connection:\n    minutes: 2\n  test:  #<\n    minutes: 2"), "timeouts.test")
refuse("timeout-action-name", sub(BASE, "  connection:\n    minutes: 2", "  connection:\n    minutes: 2\n  actions:\n    lava_test_shell:  #<\n      minutes: 2"), "timeouts.actions.lava_test_shell")
refuse("timeout-block-longer-than-job", sub(BASE, "    timeout:\n      minutes: 40", "    timeout:\n      minutes: 90  #<"), "actions[2].test.timeout")
refuse("timeout-global-longer-than-job", sub(BASE, "  action:\n    minutes: 10", "  action:\n    hours: 2  #<"), "timeouts.action")
refuse("timeout-named-longer-than-job", sub(BASE, "  connection:\n    minutes: 2", "  connection:\n    minutes: 2\n  actions:\n    lava-test-shell:  #<\n      hours: 3"), "timeouts.actions.lava-test-shell")
refuse("timeout-block-two-units", sub(BASE, "    timeout:\n      minutes: 5\n    images:", "    timeout:\n      minutes: 5\n      seconds: 5  #<\n    images:"), "actions[0].deploy.timeout.seconds")
refuse("timeout-skip-not-bool", sub(BASE, "    timeout:\n      minutes: 40", "    timeout:\n      minutes: 40\n      skip: maybe  #<"), "actions[2].test.timeout.skip")

# --- action blocks
refuse("action-not-mapping", sub(BASE, "- boot:\n    method: qemu", "- boot: qemu  #<\n- boot:\n    method: qemu"), "actions[1].boot")
refuse("action-unknown-type", sub(BASE, "- boot:\n    method: qemu", "- reboot:  #<\n    method: qemu"), "actions[1].reboot")
refuse("action-namespace-reserved", sub(BASE, "    to: tmpfs", "    to: tmpfs\n    namespace: common  #<"), "actions[0].deploy.namespace")
refuse("action-namespace-partial", sub(sub(sub(BASE, "    to: tmpfs", "    to: tmpfs\n    namespace: target"), "    method: qemu", "    method: qemu\n    namespace: target"), "- test:\n    timeout:", "- test:\n    timeout:  #<"), "actions[2].test")
refuse("action-repeat-zero", sub(BASE, "    method: qemu", "    method: qemu\n    failure_retry: 0  #<"), "actions[1].boot.failure_retry")
refuse("action-role-string", sub(MULTINODE, "- deploy:\n    role:\n    - server\n    - client", "- deploy:\n    role: server  #<"), "actions[0].deploy.role")

# --- deploy
refuse("deploy-to-unknown", sub(BASE, "    to: tmpfs", "    to: ramfs  #<"), "actions[0].deploy.to")
refuse("deploy-tmpfs-no-images", sub(sub(BASE, "    to: tmpfs", "    to: tmpfs  #<"), """    images:
      kernel:
        image_arg: -kernel {kernel}
        url: http://example.invalid/Image.gz
        compression: gz
      rootfs:
        image_arg: -drive file={rootfs},if=virtio,format=raw
        url: http://example.invalid/rootfs.ext4.xz
        compression: xz
""", ""), "actions[0].deploy.images")
refuse("deploy-compression", sub(BASE, "        compression: xz", "        compression: lzma  #<"), "actions[0].deploy.images.rootfs.compression")
refuse("deploy-url-missing", sub(BASE, "        image_arg: -kernel {kernel}\n        url: http://example.invalid/Image.gz\n", "        image_arg: -kernel {kernel}  #<\n        urls: http://example.invalid/Image.gz\n"), "actions[0].deploy.images.kernel.url")
refuse("deploy-os-null", sub(BASE, "    os: oe", "    os:  #<"), "actions[0].deploy.os")
refuse("deploy-authorize", sub(BASE, "    os: oe", "    os: oe\n    authorize: password  #<"), "actions[0].deploy.authorize")
refuse("deploy-image-arg-number", sub(BASE, "        image_arg: -kernel {kernel}", "        image_arg: 7  #<"), "actions[0].deploy.images.kernel.image_arg")
refuse("deploy-tftp-kernel-type", """\
device_type: beaglebone-black
job_name: bbb ramdisk
timeouts:
  job:
    minutes: 15
visibility: public
actions:
- deploy:
    to: tftp
    kernel:
      url: http://example.invalid/zImage
      type: Zimage  #<
    ramdisk:
      url: http://example.invalid/rootfs.cpio.gz
      compression: gz
      header: u-boot
""", "actions[0].deploy.kernel.type")
refuse("deploy-tftp-ramdisk-header", """\
device_type: beaglebone-black
job_name: bbb ramdisk
timeouts:
  job:
    minutes: 15
visibility: public
actions:
- deploy:
    to: tftp
    kernel:
      url: http://example.invalid/zImage
      type: zimage
    ramdisk:
      url: http://example.invalid/rootfs.cpio.gz
      header: uboot  #<
""", "actions[0].deploy.ramdisk.header")

# --- boot
refuse("boot-method-unknown", sub(BASE, "    method: qemu", "    method: kvm  #<"), "actions[1].boot.method")
refuse("boot-qemu-media", sub(BASE, "    media: tmpfs", "    media: nfs  #<"), "actions[1].boot.media")
refuse("boot-prompt-empty", sub(BASE, "    - 'root@(.*):[/~]#'", "    - ''  #<"), "actions[1].boot.prompts[0]")
refuse("boot-auto-login-unknown-key", sub(BASE, "      username: root", "      username: root\n      user: root  #<"), "actions[1].boot.auto_login.user")
refuse("boot-auto-login-no-username", sub(BASE, "      login_prompt: 'login:'\n      username: root\n", "      login_prompt: 'login:'  #<\n"), "actions[1].boot.auto_login.username")
refuse("boot-auto-login-prompt-empty", sub(BASE, "      login_prompt: 'login:'", "      login_prompt: ''  #<"), "actions[1].boot.auto_login.login_prompt")
refuse("boot-parameters-number", sub(BASE, "    media: tmpfs", "    media: tmpfs\n    parameters:\n      shutdown-message: 'reboot: Restarting system'\n      kernel-start-message: 42  #<"), "actions[1].boot.parameters.kernel-start-message")
refuse("boot-uboot-no-commands", """\
device_type: beaglebone-black
job_name: bbb ramdisk
timeouts:
  job:
    minutes: 15
visibility: public
actions:
- boot:
    method: u-boot  #<
    prompts:
    - '/ # '
""", "actions[0].boot.commands")
refuse("boot-transfer-overlay", sub(BASE, "    media: tmpfs", "    media: tmpfs\n    transfer_overlay:\n      download_command: wget -S  #<"), "actions[1].boot.transfer_overlay.unpack_command")
refuse("boot-ignore-kernel-messages", sub(BASE, "    media: tmpfs", "    media: tmpfs\n    ignore_kernel_messages: 1  #<"), "actions[1].boot.ignore_kernel_messages")

# --- test definitions
refuse("test-from-unknown", sub(BASE, "      from: git", "      from: svn  #<"), "actions[2].test.definitions[0].from")
refuse("test-name-chars", sub(BASE, "      name: ltp-syscalls", "      name: ltp syscalls  #<"), "actions[2].test.definitions[0].name")
refuse("test-path-missing", sub(sub(BASE, "      path: automated/linux/ltp/ltp.yaml\n", ""), "    - repository: https://example.invalid/test-definitions.git", "    - repository: https://example.invalid/test-definitions.git  #<"), "actions[2].test.definitions[0].path")
refuse("test-shallow-with-revision", sub(BASE, "      name: ltp-syscalls", "      name: ltp-syscalls\n      revision: 2f1e6b2\n      shallow: true  #<"), "actions[2].test.definitions[0].shallow")
refuse("test-revision-number", sub(BASE, "      name: ltp-syscalls", "      name: ltp-syscalls\n      revision: 20260801  #<"), "actions[2].test.definitions[0].revision")
refuse("test-skip-install-string", sub(BASE, "      name: ltp-syscalls", "      name: ltp-syscalls\n      skip_install: all  #<"), "actions[2].test.definitions[0].skip_install")
refuse("test-skip-install-value", sub(BASE, "      name: ltp-syscalls", "      name: ltp-syscalls\n      skip_install:\n      - everything  #<"), "actions[2].test.definitions[0].skip_install[0]")
refuse("test-lava-signal", sub(BASE, "      name: ltp-syscalls", "      name: ltp-syscalls\n      lava-signal: serial  #<"), "actions[2].test.definitions[0].lava-signal")
refuse("test-parameters-list", sub(BASE, "      parameters:\n        TST_CMDFILES: syscalls\n        SKIPFILE: skipfile-lkft.yaml", "      parameters:  #<\n      - TST_CMDFILES=syscalls"), "actions[2].test.definitions[0].parameters")
refuse("test-no-kind", sub(BASE, "    timeout:\n      minutes: 40\n    definitions:\n", "    timeout:  #<\n      minutes: 40\n    tests:\n"), "actions[2].test")

INLINE = """\
    - repository:
        metadata:
          format: Lava-Test Test Definition 1.0
          name: smoke
          description: smoke tests
        run:
          steps:
          - lava-test-case uname --shell uname -a
      from: inline
      path: inline/smoke.yaml
      name: smoke
"""
WITH_INLINE = sub(BASE, "    definitions:\n", "    definitions:\n" + INLINE)
refuse("test-inline-extra-key", sub(WITH_INLINE, "        run:\n          steps:", "        params:  #<\n          A: 1\n        run:\n          steps:"), "actions[2].test.definitions[0].repository.params")
refuse("test-inline-format", sub(WITH_INLINE, "          format: Lava-Test Test Definition 1.0", "          format: Lava-Test Test Definition 2.0  #<"), "actions[2].test.definitions[0].repository.metadata.format")
refuse("test-inline-steps-string", sub(WITH_INLINE, "          steps:\n          - lava-test-case uname --shell uname -a", "          steps: uname -a  #<"), "actions[2].test.definitions[0].repository.run.steps")
refuse("test-inline-no-metadata", sub(WITH_INLINE, "        metadata:\n          format: Lava-Test Test Definition 1.0\n          name: smoke\n          description: smoke tests\n        run:", "        run:  #<"), "actions[2].test.definitions[0].repository.metadata")

INTERACTIVE = """\
- test:
    timeout:
      minutes: 5
    interactive:
    - name: network
      prompts:
      - '=> '
      script:
      - name: dhcp
        command: dhcp
        successes:
        - message: 'DHCP client bound'
        failures:
        - message: 'TIMEOUT'
          exception: InfrastructureError
"""
WITH_INTERACTIVE = BASE + INTERACTIVE
refuse("interactive-no-prompts", sub(WITH_INTERACTIVE, "    - name: network\n      prompts:\n      - '=> '\n", "    - name: network  #<\n"), "actions[3].test.interactive[0].prompts")
refuse("interactive-name-dot", sub(WITH_INTERACTIVE, "    - name: network", "    - name: net.work  #<"), "actions[3].test.interactive[0].name")
refuse("interactive-step-unknown-key", sub(WITH_INTERACTIVE, "        command: dhcp", "        command: dhcp\n        timeout: 10  #<"), "actions[3].test.interactive[0].script[0].timeout")
refuse("interactive-exception", sub(WITH_INTERACTIVE, "          exception: InfrastructureError", "          exception: RuntimeError  #<"), "actions[3].test.interactive[0].script[0].failures[0].exception")
refuse("interactive-unknown-key", sub(WITH_INTERACTIVE, "    - name: network", "    - name: network\n      timeout: 5  #<"), "actions[3].test.interactive[0].timeout")
refuse("interactive-success-empty", sub(WITH_INTERACTIVE, "        - message: 'DHCP client bound'", "        - message: ''  #<"), "actions[3].test.interactive[0].script[0].successes[0].message")

MONITOR = """\
- test:
    monitors:
    - name: tests
      start: 'Running TESTSUITE'
      end: 'PROJECT EXECUTION SUCCESSFUL'
      pattern: '(?P<result>(PASS|FAIL)) - (?P<test_case_id>\\w+)\\.'
      fixupdict:
        PASS: pass
        FAIL: fail
"""
WITH_MONITOR = BASE + MONITOR
refuse("monitor-name-dot", sub(WITH_MONITOR, "    - name: tests", "    - name: tests.zephyr  #<"), "actions[3].test.monitors[0].name")
refuse("monitor-fixupdict-value", sub(WITH_MONITOR, "        FAIL: fail", "        FAIL: failed  #<"), "actions[3].test.monitors[0].fixupdict.FAIL")
refuse("monitor-unknown-key", sub(WITH_MONITOR, "      start: 'Running TESTSUITE'", "      start: 'Running TESTSUITE'\n      timeout: 60  #<"), "actions[3].test.monitors[0].timeout")
refuse("monitor-no-end", sub(WITH_MONITOR, "    - name: tests\n      start: 'Running TESTSUITE'\n      end: 'PROJECT EXECUTION SUCCESSFUL'\n", "    - name: tests  #<\n      start: 'Running TESTSUITE'\n"), "actions[3].test.monitors[0].end")

# --- notify
NOTIFY = """\
notify:
  criteria:
    status: finished
  recipients:
  - to:
      method: email
      email: ci@example.invalid
"""
WITH_NOTIFY = sub(BASE, "actions:\n", NOTIFY + "actions:\n")
refuse("notify-recipient-no-address", sub(WITH_NOTIFY, "  - to:\n      method: email\n      email: ci@example.invalid", "  - to:  #<\n      method: email"), "notify.recipients[0].to")
refuse("notify-irc-no-handle", sub(WITH_NOTIFY, "  - to:\n      method: email\n      email: ci@example.invalid", "  - to:  #<\n      method: irc\n      server: irc.example.invalid"), "notify.recipients[0].to")
refuse("notify-method", sub(WITH_NOTIFY, "      method: email", "      method: slack  #<"), "notify.recipients[0].to.method")
refuse("notify-to-unknown-key", sub(WITH_NOTIFY, "      email: ci@example.invalid", "      email: ci@example.invalid\n      cc: boss@example.invalid  #<"), "notify.recipients[0].to.cc")
refuse("notify-status", sub(WITH_NOTIFY, "    status: finished", "    status: done  #<"), "notify.criteria.status")
refuse("notify-criteria-missing", sub(WITH_NOTIFY, "  criteria:\n    status: finished\n  recipients:", "  recipients:  #<"), "notify.criteria")
refuse("notify-callback-and-callbacks", sub(WITH_NOTIFY, "  criteria:", "  callback:\n    url: http://example.invalid/cb\n  callbacks:  #<\n  - url: http://example.invalid/cb2\n  criteria:"), "notify.callbacks")
refuse("notify-callback-method", sub(WITH_NOTIFY, "  criteria:", "  callback:\n    url: http://example.invalid/cb\n    method: PUT  #<\n  criteria:"), "notify.callback.method")
refuse("notify-verbosity", sub(WITH_NOTIFY, "  criteria:", "  verbosity: loud  #<\n  criteria:"), "notify.verbosity")

# --- MultiNode
refuse("multinode-device-type", "device_type: qemu  #<\n" + MULTINODE, "device_type")
refuse("multinode-context", sub(MULTINODE, "visibility: public", "visibility: public\ncontext:  #<\n  arch: arm64"), "context")
refuse("multinode-tags", sub(MULTINODE, "visibility: public", "visibility: public\ntags:  #<\n- big"), "tags")
refuse("multinode-role-misspelt", sub(MULTINODE, "    roles:\n", "    role:  #<\n"), "protocols.lava-multinode.role")
refuse("multinode-action-without-role", sub(MULTINODE, "- boot:\n    role:\n    - server\n    - client\n    method: qemu", "- boot:\n    method: qemu  #<"), "actions[1].boot")
refuse("multinode-count-missing", sub(MULTINODE, "        device_type: qemu\n        count: 1\n", "        device_type: qemu  #<\n"), "protocols.lava-multinode.roles.server.count")
refuse("multinode-device-count", sub(MULTINODE, "        count: 2", "        count: 2  #<\n        device: qemu-01"), "protocols.lava-multinode.roles.client.count")
refuse("multinode-context-unknown", sub(MULTINODE, "        count: 2", "        count: 2\n        context:\n          qemu_binary: /bin/sh  #<"), "protocols.lava-multinode.roles.client.context.qemu_binary")
refuse("multinode-expect-role-unknown", sub(MULTINODE, "        count: 2", "        count: 2\n      guest:\n        connection: ssh\n        count: 1\n        host_role: server\n        expect_role: nobody  #<"), "protocols.lava-multinode.roles.guest.expect_role")
refuse("multinode-timeout-zero", sub(MULTINODE, "    roles:\n", "    timeout:\n      minutes: 0  #<\n    roles:\n"), "protocols.lava-multinode.timeout.minutes")

# --- a job file is untrusted: nothing in it reaches the host (docs/security.md). LAVA accepts
# these; basalt refuses them on purpose (docs/validation.md, "stricter").
refuse("host-image-arg-logfile", sub(BASE, "        image_arg: -kernel {kernel}", "        image_arg: -kernel {kernel} -D /tmp/basalt-marker  #<"), "actions[0].deploy.images.kernel.image_arg")
refuse("host-image-arg-pidfile", sub(BASE, "        image_arg: -kernel {kernel}", "        image_arg: -kernel {kernel} -pidfile /etc/passwd  #<"), "actions[0].deploy.images.kernel.image_arg")
refuse("host-image-arg-chardev-file", sub(BASE, "        image_arg: -kernel {kernel}", "        image_arg: -kernel {kernel} -chardev file,id=c,path=/etc/cron.d/x -serial chardev:c  #<"), "actions[0].deploy.images.kernel.image_arg")
refuse("host-image-arg-host-disk", sub(BASE, "        image_arg: -drive file={rootfs},if=virtio,format=raw", "        image_arg: -drive file=/dev/sda,if=virtio,format=raw  #<"), "actions[0].deploy.images.rootfs.image_arg")
refuse("host-image-arg-daemonize", sub(BASE, "        image_arg: -kernel {kernel}", "        image_arg: -kernel {kernel} -daemonize  #<"), "actions[0].deploy.images.kernel.image_arg")
refuse("host-context-qemu-binary", sub(BASE, "  cpu: max", "  cpu: max\n  qemu_binary: /bin/sh  #<"), "context.qemu_binary")
refuse("host-context-pre-power-command", sub(BASE, "  cpu: max", "  cpu: max\n  pre_power_command: touch /tmp/basalt-marker  #<"), "context.pre_power_command")
refuse("host-context-machine-option", sub(BASE, "  machine: virt,gic-version=3", "  machine: virt -D /tmp/basalt-marker  #<"), "context.machine")
refuse("host-context-machine-dumpdtb", sub(BASE, "  machine: virt,gic-version=3", "  machine: virt,dumpdtb=/tmp/basalt-marker  #<"), "context.machine")
refuse("host-context-serial-file", sub(BASE, "  cpu: max", "  cpu: max\n  serial: -serial file:/etc/cron.d/basalt  #<"), "context.serial")
refuse("host-context-monitor", sub(BASE, "  cpu: max", "  cpu: max\n  monitor: unix:/tmp/basalt-monitor,server,nowait  #<"), "context.monitor")
refuse("host-context-netdevice-script", sub(BASE, "  cpu: max", "  cpu: max\n  netdevice: tap,script=/tmp/basalt-evil  #<"), "context.netdevice")
refuse("host-context-extra-options", sub(BASE, "  - -smp 2", "  - -smp 2\n  - -qmp unix:/tmp/basalt-qmp,server  #<"), "context.extra_options")
refuse("host-context-newline", sub(BASE, "  cpu: max", "  cpu: max\n  bootloader_prompt: \"=>\\npower_on_command: touch /tmp/basalt-marker\"  #<"), "context.bootloader_prompt")
refuse("host-context-arch-path", sub(BASE, "  arch: arm64", "  arch: ../../../bin/sh  #<"), "context.arch")

# --- accepted: what LAVA takes although it looks odd
accept("ok-os-placeholder", sub(BASE, "    os: oe", "    os: '{{OS}}'"))
accept("ok-os-free-text", sub(BASE, "    os: oe", "    os: openembedded-kirkstone"))
accept("ok-password-without-prompt", sub(BASE, "      username: root", "      username: root\n      password: 'lin aro'"))
accept("ok-password-and-prompt", sub(BASE, "      username: root", "      username: root\n      password_prompt: 'Password:'\n      password: 'lin aro'"))
accept("ok-block-timeouts-open", sub(BASE, "    method: qemu", "    method: qemu\n    timeouts:\n      auto-login-action:\n        minutes: 2\n        seconds: 30"))
accept("ok-context-scalars", sub(BASE, "  cpu: max", "  cpu: max\n  no_kvm: true\n  memory: 2048\n  netdevice: user"))
accept("ok-boot-parameters-extra", sub(BASE, "    media: tmpfs", "    media: tmpfs\n    parameters:\n      shutdown-message: 'reboot: Restarting system'\n      custom-flag: true"))
accept("ok-metadata-values", sub(BASE, "  source: basalt-tests", "  source: basalt-tests\n  empty:\n  count: 3\n  list: [a, b]"))
accept("ok-deploy-extra-keys", sub(BASE, "    os: oe", "    os: oe\n    custom_key: anything"))
accept("ok-compression-null", sub(BASE, "        compression: xz", "        compression:"))
accept("ok-interactive-null-command", sub(WITH_INTERACTIVE, "        command: dhcp", "        command:"))
accept("ok-multinode-count-zero", sub(MULTINODE, "        count: 2", "        count: 0"))
accept("ok-test-definition-timeout", sub(BASE, "      name: ltp-syscalls", "      name: ltp-syscalls\n      timeout:\n        minutes: 30"))
accept("ok-test-definition-shallow-no-revision", sub(BASE, "      name: ltp-syscalls", "      name: ltp-syscalls\n      shallow: false\n      revision: 2f1e6b2"))
accept("ok-priority-number", sub(BASE, "priority: medium", "priority: 0"))
accept("ok-notify-user", sub(WITH_NOTIFY, "      email: ci@example.invalid", "      user: admin"))
accept("ok-notify-irc", sub(WITH_NOTIFY, "      method: email\n      email: ci@example.invalid", "      method: irc\n      handle: basalt-bot\n      server: irc.example.invalid"))
accept("ok-boot-extra-keys", sub(BASE, "    media: tmpfs", "    media: tmpfs\n    docker_options: anything"))
accept("ok-interactive", WITH_INTERACTIVE)
accept("ok-monitor", WITH_MONITOR)
accept("ok-inline", WITH_INLINE)
accept("ok-multinode", MULTINODE)
accept("ok-base", BASE)


def main():
    for sub_dir in ("refuse", "accept"):
        d = os.path.join(HERE, sub_dir)
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(d):
            if f.endswith(".yaml"):
                os.remove(os.path.join(d, f))
    for name, verdict, text, path in CASES:
        lines = text.splitlines()
        header = "# accept" if verdict == "accept" else None
        body = []
        mark = None
        for i, line in enumerate(lines):
            if line.rstrip().endswith("#<"):
                mark = i
                line = re.sub(r"\s*#<$", "", line)
                if not line.strip():
                    continue
            body.append(line)
        if verdict == "refuse":
            assert mark is not None, name
            # header line + 1-based: the marked line (or, if it was emptied, the next one)
            header = f"# refuse {mark + 2} {path}"
        with open(os.path.join(HERE, verdict, name + ".yaml"), "w") as fh:
            fh.write(header + "\n" + "\n".join(body) + "\n")
    print(f"{len(CASES)} cases")


main()
