#!/usr/bin/python3
"""Write the values table of charts/packetstreamer/README.md from values.yaml.

Each key documented with a "# -- text" comment line above it becomes a row:
key (dotted), type, default (JSON), description. The table sits between the
markers <!-- values:start --> and <!-- values:end -->.
    /usr/bin/python3 packaging/gen_chart_readme.py [--check]
"""
import json
import os
import re
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHART = os.path.join(ROOT, "charts", "packetstreamer")


def rows():
    lines = open(os.path.join(CHART, "values.yaml")).read().splitlines()
    values = yaml.safe_load("\n".join(lines))
    stack, out, doc = [], [], None
    for line in lines:
        m = re.match(r"^(\s*)# -- (.*)$", line)
        if m:
            doc = m.group(2)
            continue
        m = re.match(r"^(\s*)([A-Za-z0-9_]+):", line)
        if not m:
            continue
        indent = len(m.group(1)) // 2
        stack = stack[:indent] + [m.group(2)]
        if doc:
            v = values
            for k in stack:
                v = v[k]
            typ = {bool: "bool", int: "int", str: "string", list: "list", dict: "object", float: "number"}.get(type(v), "")
            default = json.dumps(v, separators=(", ", ": "))
            if len(default) > 60:
                default = "see values.yaml"
            out.append(f"| `{'.'.join(stack)}` | {typ} | `{default}` | {doc.replace('|', '&#124;')} |")
            doc = None
    return out


def main():
    path = os.path.join(CHART, "README.md")
    text = open(path).read()
    table = "\n".join(["| Key | Type | Default | Description |", "|---|---|---|---|"] + rows())
    new = re.sub(r"(<!-- values:start -->\n)(.*?\n)?(<!-- values:end -->)", lambda m: m.group(1) + table + "\n" + m.group(3), text, flags=re.S)
    if "--check" in sys.argv:
        if new != text:
            print("charts/packetstreamer/README.md values table is stale: run packaging/gen_chart_readme.py")
            return 1
        return 0
    open(path, "w").write(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
