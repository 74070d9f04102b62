// Validates Kubernetes manifests offline: every object against the Kubernetes API schemas (the
// npm package kubernetes-models; `kubectl --dry-run=client` needs a cluster), then the references
// between the objects that the schemas cannot see.
//
//   npm ci --prefix deploy/kubernetes/check
//   node deploy/kubernetes/check/validate.mjs [--haproxy-cfg FILE] [--pantry BINARY] FILE.yaml...
//
// Checked across the files: a workload's selector matches its pod labels; every probe's and
// Service's named port exists on the container; every volume mount names a volume or claim
// template, every ConfigMap volume a ConfigMap of the files and every subPath one of its keys;
// every Service selects a workload; a StatefulSet's serviceName is a headless Service of its pods,
// it has volumeClaimTemplates, and its containers are ready on /readyz, alive on /healthz and
// request CPU and memory; `$(VAR)` in an env value names an earlier variable. With --haproxy-cfg:
// a ConfigMap key haproxy.cfg holds exactly that file, its cache backend has one server line per
// StatefulSet replica and the HAProxy Deployment sets PANTRY_1..N. With --pantry: every ConfigMap
// key pantry.yaml passes `pantry config check`.
//
// Prints one line per valid object; each problem as "FILE: KIND/NAME: what"; exit 0 when all is
// valid, 1 when something is not, 2 on bad arguments or unreadable files.

import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";

const usage =
  "usage: validate.mjs [--haproxy-cfg FILE] [--pantry BINARY] FILE.yaml...";

function parseArgs(argv) {
  const out = { files: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--haproxy-cfg" || a === "--pantry") {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      out[a === "--pantry" ? "pantry" : "haproxyCfg"] = argv[++i];
    } else if (a.startsWith("--")) {
      throw new Error(`unknown option ${a}`);
    } else {
      out.files.push(a);
    }
  }
  if (out.files.length === 0) throw new Error("no manifest files given");
  return out;
}

// "apps/v1" + "StatefulSet" -> "kubernetes-models/apps/v1/StatefulSet"; "v1" -> ".../v1/Kind".
function modelPath(apiVersion, kind) {
  return `kubernetes-models/${apiVersion}/${kind}`;
}

async function loadObjects(files, problems) {
  const objects = [];
  for (const file of files) {
    let text;
    try {
      text = readFileSync(file, "utf8");
    } catch (e) {
      throw new Error(`${file}: ${e.message}`);
    }
    const docs = parseAllDocuments(text, { prettyErrors: true });
    docs.forEach((doc, n) => {
      for (const err of doc.errors) problems.push(`${file}: document ${n + 1}: ${err.message}`);
    });
    for (const [n, doc] of docs.entries()) {
      if (doc.errors.length) continue;
      const obj = doc.toJS();
      if (obj === null || obj === undefined) continue; // a document of comments only
      const where = `${file}: document ${n + 1}`;
      if (typeof obj !== "object" || !obj.apiVersion || !obj.kind) {
        problems.push(`${where}: not a Kubernetes object (no apiVersion and kind)`);
        continue;
      }
      objects.push({ file, obj, name: `${obj.kind}/${obj.metadata?.name ?? "(no name)"}` });
    }
  }
  return objects;
}

async function validateSchemas(objects, problems) {
  for (const o of objects) {
    const { apiVersion, kind } = o.obj;
    let Model;
    try {
      Model = (await import(modelPath(apiVersion, kind)))[kind];
    } catch {
      Model = undefined;
    }
    if (!Model) {
      problems.push(`${o.file}: ${o.name}: no schema for apiVersion ${apiVersion}, kind ` +
                    `${kind} in kubernetes-models`);
      continue;
    }
    try {
      new Model(o.obj).validate();
      o.valid = true;
    } catch (e) {
      problems.push(`${o.file}: ${o.name}: ${e.message}`);
    }
  }
}

const isWorkload = (o) => ["StatefulSet", "Deployment", "DaemonSet"].includes(o.obj.kind);

function selects(selector, labels) {
  return Object.entries(selector ?? {}).every(([k, v]) => labels?.[k] === v);
}

function checkWorkload(o, byKind, problems, say) {
  const spec = o.obj.spec ?? {};
  const pod = spec.template?.spec ?? {};
  const labels = spec.template?.metadata?.labels ?? {};
  if (!selects(spec.selector?.matchLabels, labels)) {
    say(`selector ${JSON.stringify(spec.selector?.matchLabels)} does not match the pod labels ` +
        JSON.stringify(labels));
  }
  const volumes = new Set((pod.volumes ?? []).map((v) => v.name));
  for (const t of spec.volumeClaimTemplates ?? []) volumes.add(t.metadata?.name);
  const configMaps = new Map(byKind("ConfigMap").map((c) => [c.obj.metadata?.name, c.obj]));
  for (const v of pod.volumes ?? []) {
    if (v.configMap && !configMaps.has(v.configMap.name)) {
      say(`volume ${v.name} names ConfigMap ${v.configMap.name}, which the files do not define`);
    }
  }
  for (const c of [...(pod.initContainers ?? []), ...(pod.containers ?? [])]) {
    const ports = new Set((c.ports ?? []).map((p) => p.name).filter(Boolean));
    for (const kind of ["readinessProbe", "livenessProbe", "startupProbe"]) {
      const probe = c[kind];
      const port = probe?.httpGet?.port ?? probe?.tcpSocket?.port;
      if (typeof port === "string" && !ports.has(port)) {
        say(`container ${c.name}: ${kind} uses port "${port}", which it does not name`);
      }
    }
    for (const m of c.volumeMounts ?? []) {
      if (!volumes.has(m.name)) {
        say(`container ${c.name}: volume mount ${m.name} names no volume or claim template`);
        continue;
      }
      const v = (pod.volumes ?? []).find((x) => x.name === m.name);
      const cm = v?.configMap && configMaps.get(v.configMap.name);
      if (m.subPath && cm && !(m.subPath in (cm.data ?? {}))) {
        say(`container ${c.name}: mount ${m.mountPath} takes key ${m.subPath} of ConfigMap ` +
            `${v.configMap.name}, which has only ${Object.keys(cm.data ?? {}).join(", ")}`);
      }
    }
    const seen = new Set();
    for (const e of c.env ?? []) {
      for (const [, ref] of String(e.value ?? "").matchAll(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g)) {
        if (!seen.has(ref)) say(`container ${c.name}: env ${e.name} uses $(${ref}), not set before it`);
      }
      seen.add(e.name);
    }
  }
  if (o.obj.kind !== "StatefulSet") return;
  const service = byKind("Service").find((s) => s.obj.metadata?.name === spec.serviceName);
  if (!service) {
    say(`serviceName ${spec.serviceName} is not a Service of the files`);
  } else if (service.obj.spec?.clusterIP !== "None" ||
             !selects(service.obj.spec?.selector, labels)) {
    say(`serviceName ${spec.serviceName} must be a headless Service (clusterIP: None) that ` +
        "selects its pods");
  }
  if (!(spec.volumeClaimTemplates ?? []).length) say("has no volumeClaimTemplates");
  for (const c of pod.containers ?? []) {
    if (c.readinessProbe?.httpGet?.path !== "/readyz") {
      say(`container ${c.name}: readinessProbe must GET /readyz, not ` +
          JSON.stringify(c.readinessProbe?.httpGet?.path ?? null));
    }
    if (c.livenessProbe?.httpGet?.path !== "/healthz") {
      say(`container ${c.name}: livenessProbe must GET /healthz, not ` +
          JSON.stringify(c.livenessProbe?.httpGet?.path ?? null));
    }
    for (const r of ["cpu", "memory"]) {
      if (c.resources?.requests?.[r] === undefined) say(`container ${c.name}: no ${r} request`);
    }
  }
}

function checkService(o, byKind, say) {
  const workloads = byKind("StatefulSet", "Deployment", "DaemonSet").filter((w) =>
    selects(o.obj.spec?.selector, w.obj.spec?.template?.metadata?.labels));
  if (!workloads.length) {
    say(`selector ${JSON.stringify(o.obj.spec?.selector)} selects no workload of the files`);
    return;
  }
  for (const p of o.obj.spec?.ports ?? []) {
    if (typeof p.targetPort !== "string") continue;
    for (const w of workloads) {
      const named = (w.obj.spec.template.spec?.containers ?? [])
        .some((c) => (c.ports ?? []).some((cp) => cp.name === p.targetPort));
      if (!named) say(`port ${p.name}: targetPort "${p.targetPort}" is no port of ${w.name}`);
    }
  }
}

// The cache backend's server lines of haproxy.cfg, and the HAProxy workload's PANTRY_N variables.
function checkHAProxy(haproxyCfg, objects, byKind, problems) {
  const expected = readFileSync(haproxyCfg, "utf8");
  const holders = byKind("ConfigMap").filter((c) => "haproxy.cfg" in (c.obj.data ?? {}));
  if (!holders.length) problems.push(`no ConfigMap holds haproxy.cfg (${haproxyCfg})`);
  for (const c of holders) {
    if (c.obj.data["haproxy.cfg"] !== expected) {
      problems.push(`${c.file}: ${c.name}: haproxy.cfg differs from ${haproxyCfg}; copy the file ` +
                    "into it as it is");
    }
  }
  const backend = expected.split(/^backend /m).find((b) => b.startsWith("cache"));
  const servers = (backend ?? "").match(/^\s+server pantry\d+ /gm) ?? [];
  for (const s of byKind("StatefulSet")) {
    if (s.obj.spec?.replicas !== servers.length) {
      problems.push(`${s.file}: ${s.name}: replicas ${s.obj.spec?.replicas}, but ${haproxyCfg}'s ` +
                    `cache backend has ${servers.length} server lines`);
    }
  }
  const lbs = byKind("Deployment").filter((d) =>
    (d.obj.spec?.template?.spec?.volumes ?? []).some((v) =>
      holders.some((h) => h.obj.metadata?.name === v.configMap?.name)));
  if (!lbs.length) problems.push(`no Deployment mounts the ConfigMap holding haproxy.cfg`);
  for (const d of lbs) {
    const env = new Set(d.obj.spec.template.spec.containers.flatMap((c) =>
      (c.env ?? []).map((e) => e.name)));
    const needed = ["PANTRY_LB_BIND", "PANTRY_LB_STATS",
                    ...servers.map((_, i) => `PANTRY_${i + 1}`)];
    const missing = needed.filter((n) => !env.has(n));
    if (missing.length) {
      problems.push(`${d.file}: ${d.name}: haproxy.cfg reads ${missing.join(", ")}, which it ` +
                    "does not set");
    }
  }
}

function checkPantryConfigs(pantry, byKind, problems) {
  const dir = mkdtempSync(join(tmpdir(), "pantry-k8s-check-"));
  try {
    for (const c of byKind("ConfigMap")) {
      for (const [key, text] of Object.entries(c.obj.data ?? {})) {
        if (key !== "pantry.yaml") continue;
        const path = join(dir, `${c.obj.metadata.name}-${key}`);
        writeFileSync(path, text);
        try {
          execFileSync(pantry, ["config", "check", path], { stdio: "pipe" });
        } catch (e) {
          problems.push(`${c.file}: ${c.name}: key ${key}: ` +
                        `${String(e.stderr ?? "").trim() || `pantry config check exited ${e.status ?? e.message}`}`);
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main() {
  let args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`validate.mjs: ${e.message}\n${usage}`);
    return 2;
  }
  const problems = [];
  let objects;
  try {
    objects = await loadObjects(args.files, problems);
  } catch (e) {
    console.error(`validate.mjs: ${e.message}`);
    return 2;
  }
  await validateSchemas(objects, problems);
  const byKind = (...kinds) => objects.filter((o) => kinds.includes(o.obj.kind));
  for (const o of objects) {
    const say = (what) => problems.push(`${o.file}: ${o.name}: ${what}`);
    if (isWorkload(o)) checkWorkload(o, byKind, problems, say);
    if (o.obj.kind === "Service") checkService(o, byKind, say);
  }
  if (args.haproxyCfg) checkHAProxy(args.haproxyCfg, objects, byKind, problems);
  if (args.pantry) checkPantryConfigs(args.pantry, byKind, problems);
  for (const o of objects) if (o.valid) console.log(`valid: ${o.file}: ${o.name}`);
  for (const p of problems) console.error(p);
  if (problems.length) {
    console.error(`validate.mjs: ${problems.length} problem(s) in ${args.files.join(", ")}`);
    return 1;
  }
  console.log(`validate.mjs: ${objects.length} objects valid`);
  return 0;
}

process.exitCode = await main();
