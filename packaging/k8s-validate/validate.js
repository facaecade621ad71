#!/usr/bin/env node
// Validate Kubernetes objects against the API schemas, two ways:
//  1. kubernetes-models' generated validators: types, enums, required fields,
//     formats (kind by kind; cert-manager and Prometheus Operator CRDs too);
//  2. unknown fields: every object becomes a typed TypeScript literal and
//     `tsc --noEmit --strict` reports excess properties ("Object literal may
//     only specify known properties"), which JSON schema validation misses.
// Usage: node validate.js OBJECTS.json    (a JSON list of {source, object[, kind]})
// Prints one line per problem, "SOURCE: KIND/NAME: message"; exits 1 if any.
"use strict";
const fs = require("fs");
const path = require("path");
const os = require("os");
const { execFileSync } = require("child_process");
const NM = process.env.PS_K8S_VALIDATE_MODULES || path.join(__dirname, "node_modules");

// meta/v1 types every API group serves: Status (a refusal, a watch ERROR) and
// WatchEvent (one line of a watch stream, which has no kind of its own: the
// list entry names it, {source, kind: "WatchEvent", object}).
const META_V1 = new Set(["Status", "WatchEvent"]);

function modulePath(apiVersion, kind) {
  if (META_V1.has(kind)) return "@kubernetes-models/apimachinery/apis/meta/v1";
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  if (group === "cert-manager.io") return `@kubernetes-models/cert-manager/cert-manager.io/${version}`;
  if (group === "monitoring.coreos.com") return `@kubernetes-models/prometheus-operator/monitoring.coreos.com/${version}`;
  return group ? `kubernetes-models/${group}/${version}` : `kubernetes-models/${version}`;
}

const items = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const problems = [];
const ts = [];
items.forEach(({ source, object, kind: given }, i) => {
  const kind = given || object.kind;
  const label = `${source}: ${kind}/${(object.metadata || {}).name}`;
  const mod = modulePath(object.apiVersion || "", kind);
  let Cls;
  try {
    Cls = require(path.join(NM, mod, kind))[kind];
  } catch (e) {
    problems.push(`${label}: unknown apiVersion/kind ${object.apiVersion} ${object.kind}`);
    return;
  }
  try {
    new Cls(object).validate();
  } catch (e) {
    problems.push(`${label}: ${e.message.replace(/\s+/g, " ")}`);
  }
  ts.push(`import type { I${kind} as T${i} } from ${JSON.stringify(path.join(NM, mod, kind))};`);
  ts.push(`// ${label}\nexport const o${i}: T${i} = ${JSON.stringify(object, null, 1)};`);
});

if (ts.length) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ps-k8s-validate-"));
  const file = path.join(dir, "objects.ts");
  fs.writeFileSync(file, ts.join("\n") + "\n");
  try {
    execFileSync(process.execPath, [path.join(NM, "typescript/bin/tsc"), "--noEmit", "--strict",
      "--skipLibCheck", "--target", "es2020", "--moduleResolution", "node", file], { encoding: "utf8" });
  } catch (e) {
    const lines = fs.readFileSync(file, "utf8").split("\n");
    for (const m of (e.stdout || "").matchAll(/objects\.ts\((\d+),\d+\): error TS\d+: (.*)/g)) {
      // the object's label is the nearest "// " comment above the line
      let n = Number(m[1]) - 1, label = "?";
      while (n >= 0) { if (lines[n].startsWith("// ")) { label = lines[n].slice(3); break; } n--; }
      const field = (lines[Number(m[1]) - 1] || "").trim();
      problems.push(`${label}: ${m[2]} (at ${field})`);
    }
    if (!problems.length) problems.push(`tsc failed: ${(e.stdout || "") + (e.stderr || "")}`);
  }
  fs.rmSync(dir, { recursive: true, force: true });
}
for (const p of problems) console.log(p);
console.log(`k8s-validate: ${items.length} objects, ${problems.length} problems`);
process.exit(problems.length ? 1 : 0);
