#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Render basalt's device dictionaries with Python Jinja2 (and with the
`minijinja` Python binding too when it is installed) and check the result.

    python3 config/check-templates.py [--show NAME] [--corpus DIR]

* every config/devices/*.jinja2 must render to YAML with the expected
  top-level keys, identically (as data) with both engines;
* the LAVA corpus dictionaries kvm01, qemu01 and kvm02 (if the corpus is
  found: --corpus, $LAVA_DEVICES_CORPUS, or ../shared/conformance/lava/devices
  next to the repository) rendered through our qemu.jinja2 must mean the
  same as LAVA's own rendered YAML, apart from the known, deliberate
  differences listed in KNOWN_QEMU_DIFFERENCES.

Needs: Jinja2 3.x and PyYAML.  Exit status 0 when everything matches.
"""
import argparse
import os
import shlex
import sys

import jinja2
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
DEVICE_TYPES = os.path.join(HERE, "device-types")
DEVICES = os.path.join(HERE, "devices")

# path -> why ours differs from LAVA's rendering of the same dictionary
KNOWN_QEMU_DIFFERENCES = {
    "/parameters/pass": "LAVA writes a dummy 'pass' key; we write parameters: {}",
    "/actions/deploy/methods/tmpfs": "we list tmpfs as a deploy method explicitly",
    "/actions/boot/methods/qemu-nfs/parameters/append/console":
        "NFS console defaults to ttyS0 for x86 guests (LAVA: ttyAMA0 for all)",
    "/actions/test/methods/docker/global_options": "[] instead of [null]",
    "/actions/test/methods/docker/options": "[] instead of [null]",
}
LAVA_QEMU_CASES = {
    "kvm01": {"arch": "amd64", "no_kvm": True},
    "qemu01": {"arch": "amd64", "no_kvm": True},
    "kvm02": {"arch": "arm64", "netdevice": "tap", "extra_options": ["-smp", 1]},
}
TOP_KEYS = ["hostname", "devicetype", "constants", "parameters", "actions", "timeouts"]


def yaml_quote(value):
    return yaml.safe_dump(value).replace("...\n", "").strip()


def render_jinja2(search, name, context):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(search),
                             trim_blocks=True, autoescape=False)
    env.filters["shlex_quote"] = shlex.quote
    env.filters["yaml_quote"] = yaml_quote
    return env.get_template(name + ".jinja2").render(**context)


def render_minijinja(search, name, context):
    try:
        import minijinja
    except ImportError:
        return None

    def load(template):
        for folder in search:
            path = os.path.join(folder, template)
            if os.path.exists(path):
                with open(path) as handle:
                    return handle.read()
        return None

    env = minijinja.Environment(loader=load, trim_blocks=True)
    env.add_filter("shlex_quote", shlex.quote)
    env.add_filter("yaml_quote", yaml_quote)
    return env.render_template(name + ".jinja2", **context)


def differences(lava, ours, path=""):
    if isinstance(lava, dict) and isinstance(ours, dict):
        found = []
        for key in sorted(set(lava) | set(ours), key=str):
            sub = "%s/%s" % (path, key)
            if key not in ours:
                found.append((sub, "only in LAVA"))
            elif key not in lava:
                found.append((sub, "only in ours"))
            else:
                found += differences(lava[key], ours[key], sub)
        return found
    if (path.endswith("error-messages") and isinstance(lava, list)
            and isinstance(ours, list) and set(lava) == set(ours)):
        return []  # a set of patterns: order and duplicates do not matter
    if lava != ours:
        return [(path, "LAVA %r, ours %r" % (lava, ours))]
    return []


def render_both(search, name, context, problems):
    data = yaml.safe_load(render_jinja2(search, name, context))
    text = render_minijinja(search, name, context)
    if text is not None and yaml.safe_load(text) != data:
        problems.append("%s: minijinja and Jinja2 renderings differ" % name)
    return data


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--show", help="print the rendered YAML of this dictionary")
    parser.add_argument("--corpus", default=os.environ.get(
        "LAVA_DEVICES_CORPUS",
        os.path.join(HERE, "..", "..", "shared", "conformance", "lava", "devices")))
    args = parser.parse_args()

    if args.show:
        print(render_jinja2([DEVICE_TYPES, DEVICES], args.show,
                            {"scheduled_device_name": args.show}))
        return 0

    problems = []
    checks = 0
    failed = 0
    for entry in sorted(os.listdir(DEVICES)):
        if not entry.endswith(".jinja2"):
            continue
        name = entry[:-len(".jinja2")]
        checks += 1
        before = len(problems)
        data = render_both([DEVICE_TYPES, DEVICES], name,
                           {"scheduled_device_name": name}, problems)
        missing = [key for key in TOP_KEYS if key not in data]
        if missing:
            problems.append("%s: missing %s" % (name, ", ".join(missing)))
        failed += len(problems) > before
        print("rendered %s (%s)" % (name, data.get("devicetype")))

    dictionaries = os.path.join(args.corpus, "dictionaries")
    if os.path.isdir(dictionaries):
        for name, context in LAVA_QEMU_CASES.items():
            checks += 1
            before = len(problems)
            context = dict(context, scheduled_device_name=name,
                           scheduled_device_type="qemu")
            ours = render_both([DEVICE_TYPES, dictionaries], name, context, problems)
            with open(os.path.join(args.corpus, "rendered", name + ".yaml")) as handle:
                lava = yaml.safe_load(handle)
            for path, what in differences(lava, ours):
                if path in KNOWN_QEMU_DIFFERENCES:
                    continue
                problems.append("%s: %s: %s" % (name, path, what))
            failed += len(problems) > before
            print("compared %s with LAVA's rendering" % name)
    else:
        print("LAVA corpus not found at %s: comparison skipped" % args.corpus)

    for problem in problems:
        print("FAIL", problem)
    print("%d passed, %d failed" % (checks - failed, failed))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
