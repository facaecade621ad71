#!/usr/bin/python3
"""Check manifests/fargate/task-definition.json.

    /usr/bin/python3 packaging/check_fargate.py [FILE] [--selftest]

1. botocore's RegisterTaskDefinition input shape (Debian's python3-botocore):
   unknown keys, types, required members, and enums (which botocore's own
   ParamValidator does not check);
2. Fargate's rules: awsvpc, FARGATE compatibility, a valid task cpu/memory
   pair, container cpu/memory within the task's, no capability added except
   SYS_PTRACE, no privileged container, no host ports other than container
   ports, an execution role when secrets or awslogs are used;
3. the sidecar's contract: the sensor is not essential, starts after the app
   (dependsOn START), runs read-only as a non-root user, logs to CloudWatch,
   keeps NET_RAW (not dropped), gets its certificates as PEM from Secrets
   Manager, and every PACKETSTREAMER_* variable is one the sensor knows
   (docs/configuration.md) or one listed as pending below.
--selftest breaks the file on purpose (a misspelt key, a bad enum, an added
NET_ADMIN, a bad cpu/memory pair, an essential sensor) and requires each
break to be reported. Prints "N passed, N failed"; exits 1 on failure.
"""
import copy
import json
import os
import re
import sys

import botocore.session
import botocore.validate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT = os.path.join(ROOT, "manifests", "fargate", "task-definition.json")
# Variables the sensor reads once the named work lands (not in docs/configuration.md yet).
PENDING_VARS = {}  # all implemented: PEM from the environment (#5), http.listen (#6), promiscuous (#3)
# Fargate task sizes: cpu units -> allowed memory (MiB).
FARGATE_SIZES = {
    256: [512, 1024, 2048],
    512: list(range(1024, 4097, 1024)),
    1024: list(range(2048, 8193, 1024)),
    2048: list(range(4096, 16385, 1024)),
    4096: list(range(8192, 30721, 1024)),
    8192: list(range(16384, 61441, 4096)),
    16384: list(range(32768, 122881, 8192)),
}
SENSOR = "packetstreamer-sensor"


def shape_problems(value, shape, path="$"):
    """Unknown keys, types, required members and enums against a botocore shape."""
    out = []
    t = shape.type_name
    if t == "structure":
        if not isinstance(value, dict):
            return [f"{path}: expected an object"]
        for k in shape.required_members:
            if k not in value:
                out.append(f"{path}: missing required {k}")
        for k, v in value.items():
            if k not in shape.members:
                out.append(f"{path}: unknown key {k!r}")
            else:
                out += shape_problems(v, shape.members[k], f"{path}.{k}")
    elif t == "list":
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        for i, v in enumerate(value):
            out += shape_problems(v, shape.member, f"{path}[{i}]")
    elif t == "map":
        if not isinstance(value, dict):
            return [f"{path}: expected a map"]
        for k, v in value.items():
            out += shape_problems(v, shape.value, f"{path}.{k}")
    elif t == "string":
        if not isinstance(value, str):
            out.append(f"{path}: expected a string, got {type(value).__name__}")
        elif shape.enum and value not in shape.enum:
            out.append(f"{path}: {value!r} is not one of {', '.join(shape.enum)}")
    elif t in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            out.append(f"{path}: expected an integer")
    elif t == "boolean":
        if not isinstance(value, bool):
            out.append(f"{path}: expected a boolean")
    return out


def known_vars():
    doc = open(os.path.join(ROOT, "docs", "configuration.md")).read()
    return set(re.findall(r"PACKETSTREAMER_[A-Z0-9_]+", doc))


def fargate_problems(td):
    p = []
    if td.get("networkMode") != "awsvpc":
        p.append("networkMode must be awsvpc on Fargate")
    if "FARGATE" not in td.get("requiresCompatibilities", []):
        p.append("requiresCompatibilities must include FARGATE")
    try:
        cpu, mem = int(td["cpu"]), int(td["memory"])
        if mem not in FARGATE_SIZES.get(cpu, []):
            p.append(f"task cpu {cpu} / memory {mem} is not a Fargate size")
    except (KeyError, ValueError):
        p.append("task cpu and memory must be set (strings of integers) on Fargate")
        cpu, mem = 0, 0
    cs = td.get("containerDefinitions", [])
    num = lambda x: x if isinstance(x, int) and not isinstance(x, bool) else 0
    if sum(num(c.get("cpu", 0)) for c in cs) > cpu:
        p.append("containers' cpu exceeds the task's")
    if sum(num(c.get("memory", c.get("memoryReservation", 0))) for c in cs) > mem:
        p.append("containers' memory exceeds the task's")
    needs_role = False
    for c in cs:
        name = c.get("name")
        if c.get("privileged"):
            p.append(f"{name}: privileged containers are not allowed on Fargate")
        add = (c.get("linuxParameters", {}).get("capabilities", {}) or {}).get("add", [])
        if set(add) - {"SYS_PTRACE"}:
            p.append(f"{name}: Fargate can add no capability but SYS_PTRACE (got {add})")
        lp = c.get("linuxParameters", {})
        for k in ("devices", "sharedMemorySize", "tmpfs", "maxSwap", "swappiness"):
            if k in lp:
                p.append(f"{name}: linuxParameters.{k} is not supported on Fargate")
        for pm in c.get("portMappings", []):
            if pm.get("hostPort", pm["containerPort"]) != pm["containerPort"]:
                p.append(f"{name}: awsvpc needs hostPort == containerPort")
        if c.get("secrets") or (c.get("logConfiguration", {}).get("logDriver") == "awslogs"):
            needs_role = True
    if needs_role and not td.get("executionRoleArn"):
        p.append("secrets and awslogs need executionRoleArn")
    return p


# Docker's (and Fargate's) default capability set.
DOCKER_DEFAULT_CAPS = ["AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                       "NET_BIND_SERVICE", "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID",
                       "SYS_CHROOT"]


def sidecar_problems(td):
    p = []
    cs = {c["name"]: c for c in td.get("containerDefinitions", [])}
    s = cs.get(SENSOR)
    if not s:
        return [f"no container named {SENSOR}"]
    apps = [c for n, c in cs.items() if n != SENSOR]
    if s.get("essential") is not False:
        p.append("sensor: essential must be false (the app must not die with its sensor)")
    if not any(d.get("condition") == "START" and d.get("containerName") in [a["name"] for a in apps]
               for d in s.get("dependsOn", [])):
        p.append("sensor: must dependsOn the app container with condition START")
    if not s.get("readonlyRootFilesystem"):
        p.append("sensor: readonlyRootFilesystem must be true")
    # The privilege model tests/runtimes/test_runtimes.py proved (Fargate runs
    # containerd): started as root with NET_RAW, SETUID, SETGID and SETPCAP
    # left in Docker's default set and everything else dropped, the sensor
    # switches to PACKETSTREAMER_PRIVILEGES_USER keeping only NET_RAW. Or
    # non-root from the start with the image's file capabilities.
    user = str(s.get("user", "")).split(":")[0]
    drop = (s.get("linuxParameters", {}).get("capabilities", {}) or {}).get("drop", [])
    env0 = {e["name"]: e.get("value") for e in s.get("environment", [])}
    switch_to = str(env0.get("PACKETSTREAMER_PRIVILEGES_USER") or "")
    if user in ("0", "root"):
        parts = switch_to.split(":")
        if len(parts) != 2 or not all(x.isdigit() and int(x) > 0 for x in parts):
            p.append("sensor: runs as root without PACKETSTREAMER_PRIVILEGES_USER=UID:GID (non-root) "
                     "to switch to at start")
        for cap in ("SETUID", "SETGID", "SETPCAP"):
            if cap in drop or "ALL" in drop:
                p.append(f"sensor: {cap} must not be dropped: the switch to {switch_to or 'the user'} needs it")
        left = set(DOCKER_DEFAULT_CAPS) - set(drop)
        extra = sorted(left - {"NET_RAW", "SETUID", "SETGID", "SETPCAP"})
        if extra:
            p.append(f"sensor: started as root it must drop every default capability but NET_RAW, "
                     f"SETUID, SETGID and SETPCAP (left: {extra})")
    elif not user:
        p.append("sensor: no user: set \"0\" with PACKETSTREAMER_PRIVILEGES_USER, or a non-root user")
    if "NET_RAW" in drop or "ALL" in drop:
        p.append("sensor: NET_RAW must not be dropped: capture needs it")
    if s.get("logConfiguration", {}).get("logDriver") != "awslogs":
        p.append("sensor: logs must go to CloudWatch (awslogs)")
    env = {e["name"]: e.get("value") for e in s.get("environment", [])}
    secrets = {e["name"]: e["valueFrom"] for e in s.get("secrets", [])}
    if not env.get("PACKETSTREAMER_OUTPUT_SERVER_ADDRESS"):
        p.append("sensor: PACKETSTREAMER_OUTPUT_SERVER_ADDRESS is required")
    for v in ("PACKETSTREAMER_TLS_CERT_PEM", "PACKETSTREAMER_TLS_KEY_PEM", "PACKETSTREAMER_TLS_CA_PEM"):
        if not str(secrets.get(v, "")).startswith("arn:aws:secretsmanager:"):
            p.append(f"sensor: {v} must come from Secrets Manager (secrets[].valueFrom)")
    if env.get("PACKETSTREAMER_TLS_ENABLE", "").lower() != "true":
        p.append("sensor: PACKETSTREAMER_TLS_ENABLE must be true")
    for n in set(env) | set(secrets):
        if n in env and n in secrets:
            p.append(f"sensor: {n} is both in environment and secrets")
    known = known_vars()
    for n in sorted(set(env) | set(secrets)):
        if n.startswith("PACKETSTREAMER_") and n not in known and n not in PENDING_VARS:
            p.append(f"sensor: {n} is not a variable the sensor knows (docs/configuration.md)")
    return p


def all_problems(td):
    shape = botocore.session.get_session().get_service_model("ecs").operation_model("RegisterTaskDefinition").input_shape
    return shape_problems(td, shape), fargate_problems(td), sidecar_problems(td)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    path = args[0] if args else DEFAULT
    td = json.load(open(path))
    passed = failed = 0

    def report(name, problems):
        nonlocal passed, failed
        if problems:
            failed += 1
            print(f"FAIL {name}")
            for x in problems:
                print(f"     {x}")
        else:
            passed += 1
            print(f"ok   {name}")

    shape_p, farg_p, side_p = all_problems(td)
    rel = os.path.relpath(path, ROOT)
    report(f"{rel}: botocore RegisterTaskDefinition shape (keys, types, enums)", shape_p)
    report(f"{rel}: Fargate rules", farg_p)
    report(f"{rel}: sensor sidecar contract", side_p)
    pend = [n for n in PENDING_VARS if any(n == e.get("name") for c in td["containerDefinitions"]
                                               for e in c.get("environment", []) + c.get("secrets", []))]
    if pend:
        print(f"     note: variables pending other work: {', '.join(f'{n} ({PENDING_VARS[n]})' for n in pend)}")

    def broken(name, fn, expect):
        t = copy.deepcopy(td)
        fn(t)
        got = [x for group in all_problems(t) for x in group]
        report(f"self-test: {name} is caught", [] if any(expect in x for x in got) else [f"expected {expect!r}, got {got}"])

    sensor = lambda t: next(c for c in t["containerDefinitions"] if c["name"] == SENSOR)
    broken("misspelt key (essentail)", lambda t: sensor(t).__setitem__("essentail", False), "unknown key 'essentail'")
    broken("bad enum (networkMode: awsvcp)", lambda t: t.__setitem__("networkMode", "awsvcp"), "'awsvcp' is not one of")
    broken("wrong type (cpu: \"128\")", lambda t: sensor(t).__setitem__("cpu", "128"), ".cpu: expected an integer")
    broken("NET_ADMIN added", lambda t: sensor(t)["linuxParameters"]["capabilities"].__setitem__("add", ["NET_ADMIN"]),
           "no capability but SYS_PTRACE")
    broken("root without the switch", lambda t: sensor(t).__setitem__(
        "environment", [e for e in sensor(t)["environment"] if e["name"] != "PACKETSTREAMER_PRIVILEGES_USER"]),
        "runs as root without PACKETSTREAMER_PRIVILEGES_USER")
    broken("SETUID dropped", lambda t: sensor(t)["linuxParameters"]["capabilities"]["drop"].append("SETUID"),
           "SETUID must not be dropped")
    broken("CHOWN kept as root", lambda t: sensor(t)["linuxParameters"]["capabilities"]["drop"].remove("CHOWN"),
           "left: ['CHOWN']")
    broken("cpu/memory pair 512/512", lambda t: t.__setitem__("memory", "512"), "is not a Fargate size")
    broken("essential sensor", lambda t: sensor(t).__setitem__("essential", True), "essential must be false")
    broken("unknown variable", lambda t: sensor(t)["environment"].append({"name": "PACKETSTREAMER_OUTPUT_SEVER_PORT", "value": "1"}),
           "PACKETSTREAMER_OUTPUT_SEVER_PORT is not a variable")
    print(f"fargate: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
