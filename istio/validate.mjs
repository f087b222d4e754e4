#!/usr/bin/env node
// Offline validation of the Istio manifests in istio/ (no cluster, no network).
//
//   npm ci --prefix istio
//   node istio/validate.mjs [--plugin-configs-out DIR] [--expect-sha256 HEX] [FILE.yaml ...]
//
// Without FILE arguments it reads every istio/*.yaml beside this script. For each YAML document:
//   1. it must read the same under YAML 1.2 (this script) and YAML 1.1 rules (kubectl's YAML
//      library): an unquoted `on`, `yes`, `010` or `02:00` would silently change type on apply;
//   2. it must be an Istio resource known to @kubernetes-models/istio (apiVersion + kind;
//      anything else is an error), with metadata.name and metadata.namespace, unique per file;
//   3. it must pass that model's JSON-schema validation (`.validate()`, the CRD schema);
//   4. it must have no fields the schema does not know (the API server would prune them
//      silently, or kubectl's strict field validation would refuse them). Free-form fields are
//      not descended into: WasmPlugin spec.pluginConfig, EnvoyFilter configPatches[].patch.value.
// Across all files:
//   5. every VirtualService destination subset is defined by a DestinationRule for that host;
//   6. every target of every WasmPlugin pluginConfig is matched by a VirtualService route on the
//      plugin's `target_header` (else the target is silently served by the default route);
//   7. a WasmPlugin with `body.source: "metadata"` whose rules read body fields has an
//      EnvoyFilter for the same workloads that inserts envoy.filters.http.json_to_metadata and
//      writes each of those fields into the plugin's `body.metadata_namespace`.
// And for every WasmPlugin on its own:
//   8. a `sha256` is 64 lowercase hex digits, and equals the digest of an `oci://...@sha256:` url
//      (Istio's agent refuses the module otherwise); with --expect-sha256 HEX (make validate, on
//      the copies `make istio-manifests` pins), every WasmPlugin must be pinned to that digest
//      in both its `url` and its `sha256`.
// Then, if everything is valid and --plugin-configs-out is given, each WasmPlugin's
// spec.pluginConfig is written as JSON to DIR/<file-stem>.<wasmplugin-name>.json, for the
// filter's own checker (`cargo run -q --bin inference-router-check -- FILE.json`).
//
// Prints one line per validated resource; exits 1 with every error found, 2 on usage errors.

import { readFile, readdir, mkdir, writeFile, unlink, access } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { isDeepStrictEqual } from "node:util";

// Loaded in main(), so a missing `npm ci` gets a clear message instead of a resolver error.
let loadAll, CORE_SCHEMA, YAML11_SCHEMA, istioModels;

async function loadDependencies() {
  try {
    ({ loadAll, CORE_SCHEMA, YAML11_SCHEMA } = await import("js-yaml"));
    istioModels = await import("@kubernetes-models/istio");
  } catch (e) {
    console.error(`error: cannot load the validator's dependencies (${e.code ?? e.message}); run: npm ci --prefix istio`);
    process.exit(2);
  }
}

const HERE = path.dirname(fileURLToPath(import.meta.url));
const MARKER = ".generated-by-istio-validate";
const TARGET_HEADER_DEFAULT = "x-inference-target";
const METADATA_NAMESPACE_DEFAULT = "inference-router";
const JSON_TO_METADATA = "envoy.filters.http.json_to_metadata";
const SHA256_HEX = /^[0-9a-f]{64}$/;

// ---------------------------------------------------------------------------------------------
// Command line

function usage(message) {
  if (message) console.error(`error: ${message}`);
  console.error("usage: node istio/validate.mjs [--plugin-configs-out DIR] [--expect-sha256 HEX] [FILE.yaml ...]");
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { outDir: null, expectSha256: null, files: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--plugin-configs-out") {
      if (i + 1 >= argv.length || argv[i + 1].startsWith("--")) usage(`${a} needs a directory`);
      opts.outDir = argv[++i];
    } else if (a.startsWith("--plugin-configs-out=")) {
      opts.outDir = a.slice("--plugin-configs-out=".length);
      if (!opts.outDir) usage("--plugin-configs-out needs a directory");
    } else if (a === "--expect-sha256") {
      if (i + 1 >= argv.length || !SHA256_HEX.test(argv[i + 1])) usage(`${a} needs 64 lowercase hex digits`);
      opts.expectSha256 = argv[++i];
    } else if (a === "-h" || a === "--help") {
      usage();
    } else if (a.startsWith("-")) {
      usage(`unknown option ${a}`);
    } else {
      opts.files.push(a);
    }
  }
  return opts;
}

// ---------------------------------------------------------------------------------------------
// Helpers

const display = (p) => path.relative(process.cwd(), p) || p;
const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

/** ["spec", "http", 0, "match"] -> "spec.http[0].match" */
function dotted(segments) {
  let out = "";
  for (const s of segments) {
    if (typeof s === "number") out += `[${s}]`;
    else if (/^[A-Za-z_$][\w$-]*$/.test(s)) out += out ? `.${s}` : s;
    else out += `[${JSON.stringify(s)}]`;
  }
  return out || "(document)";
}

/** ["spec", "http", 0] -> "/spec/http/0" (JSON pointer, as ajv reports instancePath). */
const pointer = (segments) =>
  segments.map((s) => "/" + String(s).replaceAll("~", "~0").replaceAll("/", "~1")).join("");

/** "/spec/http/0" -> ["spec", "http", 0] */
function fromPointer(ptr) {
  if (!ptr) return [];
  return ptr
    .split("/")
    .slice(1)
    .map((s) => s.replaceAll("~1", "/").replaceAll("~0", "~"))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

// ---------------------------------------------------------------------------------------------
// The Istio kinds @kubernetes-models/istio knows: "apiVersion/kind" -> model class.

function collectModels() {
  const models = new Map();
  const seen = new Set();
  const walk = (ns) => {
    if (seen.has(ns)) return;
    seen.add(ns);
    for (const value of Object.values(ns)) {
      if (typeof value === "function" && typeof value.apiVersion === "string" && typeof value.kind === "string") {
        models.set(`${value.apiVersion}/${value.kind}`, value);
      } else if (value && typeof value === "object") {
        walk(value);
      }
    }
  };
  walk(istioModels);
  return models;
}

// ---------------------------------------------------------------------------------------------
// 1. YAML 1.2 vs 1.1

function yamlDifferences(a12, a11, segs = [], out = []) {
  if (a11 instanceof Date && typeof a12 === "string") return out; // kubectl keeps timestamps as strings
  if (Array.isArray(a12) && Array.isArray(a11) && a12.length === a11.length) {
    a12.forEach((v, i) => yamlDifferences(v, a11[i], [...segs, i], out));
    return out;
  }
  if (isObject(a12) && isObject(a11) && isDeepStrictEqual(Object.keys(a12), Object.keys(a11))) {
    for (const k of Object.keys(a12)) yamlDifferences(a12[k], a11[k], [...segs, k], out);
    return out;
  }
  if (!isDeepStrictEqual(a12, a11)) out.push({ segs, v12: a12, v11: a11 });
  return out;
}

// ---------------------------------------------------------------------------------------------
// 3. + 4. schema validation and unknown fields

/** The schema errors of `doc` (the model keeps references into `doc`; validation does not mutate it). */
function schemaErrors(Model, doc) {
  try {
    new Model(doc).validate();
    return [];
  } catch (e) {
    if (!Array.isArray(e?.errors)) return [{ instancePath: "", message: String(e?.message ?? e) }];
    return e.errors;
  }
}

function describeSchemaError(err) {
  const where = dotted(fromPointer(err.instancePath));
  let msg = err.message ?? "is invalid";
  if (err.params?.allowedValues) msg += ` (allowed: ${err.params.allowedValues.join(", ")})`;
  return `${where}: ${msg}`;
}

/** Subtrees whose content the CRD schema does not describe (x-kubernetes-preserve-unknown-fields). */
function isFreeForm(kind, segs) {
  const p = segs.map((s) => (typeof s === "number" ? "[]" : s)).join(".");
  if (segs[0] === "status") return true;
  if (kind === "WasmPlugin" && p === "spec.pluginConfig") return true;
  if (kind === "EnvoyFilter" && p === "spec.configPatches.[].patch.value") return true;
  return false;
}

const PROBE = Symbol("probe");

/**
 * Finds fields the schema does not know. The compiled schema validators do not reject unknown
 * properties, so each key is probed: its value is replaced by a value no schema type accepts;
 * a known field then fails validation at exactly its path, an unknown one does not.
 */
function unknownFields(Model, kind, doc) {
  const found = [];
  const probeFails = (segs) => {
    const copy = structuredClone(doc);
    let node = copy;
    for (const s of segs.slice(0, -1)) node = node[s];
    node[segs[segs.length - 1]] = PROBE;
    const at = pointer(segs);
    return schemaErrors(Model, copy).some((e) => e.instancePath === at);
  };
  const visit = (value, segs) => {
    if (Array.isArray(value)) {
      value.forEach((v, i) => visit(v, [...segs, i]));
      return;
    }
    if (!isObject(value)) return;
    for (const key of Object.keys(value)) {
      const child = [...segs, key];
      if (segs.length === 0 && (key === "apiVersion" || key === "kind")) continue;
      if (segs.length === 0 && key === "status") continue;
      if (!probeFails(child)) {
        found.push(child);
        continue;
      }
      if (!isFreeForm(kind, child)) visit(value[key], child);
    }
  };
  visit(doc, []);
  return found;
}

// ---------------------------------------------------------------------------------------------
// pluginConfig: must survive the trip through google.protobuf.Struct (numbers are doubles)

function structProblems(value, segs = [], out = []) {
  if (typeof value === "number") {
    if (!Number.isFinite(value)) out.push(`${dotted(segs)}: ${value} is not a finite number`);
    else if (Number.isInteger(value) && !Number.isSafeInteger(value))
      out.push(`${dotted(segs)}: ${value} is not exactly representable as a double (Istio stores pluginConfig as google.protobuf.Struct)`);
  } else if (Array.isArray(value)) {
    value.forEach((v, i) => structProblems(v, [...segs, i], out));
  } else if (isObject(value)) {
    for (const [k, v] of Object.entries(value)) structProblems(v, [...segs, k], out);
  } else if (!(value === null || typeof value === "string" || typeof value === "boolean")) {
    out.push(`${dotted(segs)}: ${typeof value} is not a JSON value`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The module's pin (8)

function pinProblems(spec, expected) {
  const out = [];
  const url = typeof spec?.url === "string" ? spec.url : "";
  const sha = spec?.sha256;
  const urlDigest = /@sha256:([^/@]*)$/.exec(url)?.[1];
  if (sha !== undefined && !(typeof sha === "string" && SHA256_HEX.test(sha)))
    out.push(`spec.sha256: ${JSON.stringify(sha)} is not 64 lowercase hex digits`);
  if (urlDigest !== undefined && !SHA256_HEX.test(urlDigest))
    out.push(`spec.url: the digest ${JSON.stringify(urlDigest)} is not 64 lowercase hex digits`);
  if (urlDigest !== undefined && sha !== undefined && urlDigest !== sha)
    out.push(`spec.sha256 ${sha} differs from the digest in spec.url (${urlDigest}): Istio's agent refuses the module`);
  if (expected) {
    if (sha !== expected) out.push(`spec.sha256: expected ${expected} (--expect-sha256), found ${sha ?? "none"}`);
    if (!url.startsWith("oci://") || urlDigest !== expected)
      out.push(`spec.url: expected oci://...@sha256:${expected} (--expect-sha256), found ${JSON.stringify(url)}`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Cross-resource checks (5-7)

const FQDN_SUFFIX = ".svc.cluster.local";
function fqdn(host, namespace) {
  if (host.includes("*") || host.includes(".")) return host;
  return `${host}.${namespace}${FQDN_SUFFIX}`;
}

const sameLabels = (a, b) => isDeepStrictEqual(a ?? {}, b ?? {});

/** JSON pointer -> metadata key, as the filter reads it ("/a/b" -> "a.b"). */
const metadataKey = (ptr) => ptr.replace(/^\//, "").replaceAll("/", ".");

function bodyPointers(pluginConfig) {
  const out = new Set();
  for (const rule of pluginConfig?.rules ?? []) {
    if (isObject(rule?.when?.body)) for (const p of Object.keys(rule.when.body)) out.add(p);
  }
  return out;
}

/** (namespace, key) pairs written by json_to_metadata filters that an EnvoyFilter inserts. */
function jsonToMetadataKeys(envoyFilter) {
  const keys = [];
  for (const patch of envoyFilter.doc.spec?.configPatches ?? []) {
    const value = patch?.patch?.value;
    if (patch?.applyTo !== "HTTP_FILTER" || value?.name !== JSON_TO_METADATA) continue;
    for (const rule of value?.typed_config?.request_rules?.rules ?? []) {
      const kv = rule?.on_present;
      if (kv?.key) keys.push({ namespace: kv.metadata_namespace || JSON_TO_METADATA, key: kv.key });
    }
  }
  return keys;
}

function crossChecks(resources, fail) {
  const of = (kind) => resources.filter((r) => r.doc.kind === kind);
  const drs = of("DestinationRule");
  const vss = of("VirtualService");
  const wasms = of("WasmPlugin");
  const efs = of("EnvoyFilter");

  // 5. VirtualService subsets exist.
  const subsets = new Map(); // fqdn host -> Set(subset)
  for (const dr of drs) {
    const host = fqdn(dr.doc.spec?.host ?? "", dr.namespace);
    const set = subsets.get(host) ?? new Set();
    for (const s of dr.doc.spec?.subsets ?? []) set.add(s?.name);
    subsets.set(host, set);
  }
  for (const vs of vss) {
    (vs.doc.spec?.http ?? []).forEach((route, ri) => {
      (route?.route ?? []).forEach((dest, di) => {
        const d = dest?.destination;
        if (!d?.subset) return;
        const host = fqdn(d.host ?? "", vs.namespace);
        if (!subsets.get(host)?.has(d.subset))
          fail(vs, `spec.http[${ri}].route[${di}].destination: subset ${JSON.stringify(d.subset)} of host ${host} is not defined by any DestinationRule in the validated files`);
      });
    });
  }

  // 6. Every target is routed by a VirtualService on the target header.
  if (wasms.length > 0 && vss.length === 0) {
    console.log("note: no VirtualService among the validated files; target/route consistency not checked");
  }
  if (vss.length > 0) {
    for (const w of wasms) {
      const cfg = w.doc.spec?.pluginConfig;
      if (!isObject(cfg)) continue;
      const header = cfg.target_header ?? TARGET_HEADER_DEFAULT;
      const routed = new Set();
      for (const vs of vss)
        for (const route of vs.doc.spec?.http ?? [])
          for (const m of route?.match ?? []) {
            const exact = m?.headers?.[header]?.exact;
            if (typeof exact === "string") routed.add(exact);
          }
      (cfg.models ?? []).forEach((model, mi) =>
        (model?.targets ?? []).forEach((t, ti) => {
          if (!routed.has(t?.name))
            fail(w, `spec.pluginConfig.models[${mi}].targets[${ti}]: target ${JSON.stringify(t?.name)} of model ${JSON.stringify(model?.name)} is matched by no VirtualService route on header ${header} (exact); its requests would take the default route`);
        }),
      );
    }
  }

  // 7. Metadata mode: the body fields rules read are lifted by json_to_metadata.
  for (const w of wasms) {
    const cfg = w.doc.spec?.pluginConfig;
    if (!isObject(cfg) || cfg.body?.source !== "metadata") continue;
    const pointers = bodyPointers(cfg);
    if (pointers.size === 0) continue;
    const ns = cfg.body?.metadata_namespace ?? METADATA_NAMESPACE_DEFAULT;
    const mine = efs.filter(
      (ef) => ef.namespace === w.namespace && sameLabels(ef.doc.spec?.workloadSelector?.labels, w.doc.spec?.selector?.matchLabels),
    );
    const lifted = mine.flatMap(jsonToMetadataKeys);
    if (lifted.length === 0) {
      fail(w, `spec.pluginConfig: body.source is "metadata" and rules read ${[...pointers].join(", ")}, but no EnvoyFilter in namespace ${w.namespace} with the same workload labels inserts ${JSON_TO_METADATA}`);
      continue;
    }
    for (const p of pointers) {
      const key = metadataKey(p);
      if (!lifted.some((kv) => kv.namespace === ns && kv.key === key))
        fail(w, `spec.pluginConfig: a rule reads body field ${p}, but no ${JSON_TO_METADATA} rule writes key ${JSON.stringify(key)} into metadata namespace ${JSON.stringify(ns)}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------

async function listYamlFiles(dir) {
  const names = (await readdir(dir)).filter((n) => /\.ya?ml$/.test(n)).sort();
  return names.map((n) => path.join(dir, n));
}

async function exists(p) {
  try {
    await access(p);
    return true;
  } catch {
    return false;
  }
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  await loadDependencies();
  const files = opts.files.length ? opts.files.map((f) => path.resolve(f)) : await listYamlFiles(HERE);
  if (files.length === 0) usage(`no YAML files in ${display(HERE)}`);

  const models = collectModels();
  const errors = [];
  const resources = [];
  const label = (r) => `${display(r.file)}: document ${r.index + 1} (${r.doc.kind} ${r.namespace}/${r.name})`;
  const fail = (r, msg) => errors.push(`${label(r)}: ${msg}`);

  for (const file of files) {
    let text;
    try {
      text = await readFile(file, "utf8");
    } catch (e) {
      errors.push(`${display(file)}: cannot read: ${e.message}`);
      continue;
    }
    let docs12, docs11;
    try {
      docs12 = loadAll(text, { schema: CORE_SCHEMA, filename: display(file) });
      docs11 = loadAll(text, { schema: YAML11_SCHEMA, filename: display(file) });
    } catch (e) {
      errors.push(`${display(file)}: invalid YAML: ${e.message}`);
      continue;
    }
    const seenNames = new Set();
    let count = 0;
    for (let index = 0; index < docs12.length; index++) {
      const doc = docs12[index];
      if (doc === null || doc === undefined) continue; // empty document (comments only)
      count++;
      const ident =
        isObject(doc) && typeof doc.kind === "string" && typeof doc.metadata?.name === "string"
          ? ` (${doc.kind} ${doc.metadata.namespace ?? "(none)"}/${doc.metadata.name})`
          : "";
      const where = `${display(file)}: document ${index + 1}${ident}`;
      if (!isObject(doc)) {
        errors.push(`${where}: is a ${Array.isArray(doc) ? "list" : typeof doc}, not a Kubernetes resource`);
        continue;
      }
      for (const d of yamlDifferences(doc, docs11[index]))
        errors.push(`${where}: ${dotted(d.segs)}: unquoted scalar reads as ${JSON.stringify(d.v12)} under YAML 1.2 but as ${JSON.stringify(d.v11)} under YAML 1.1 rules (kubectl): quote it`);

      const { apiVersion, kind } = doc;
      if (typeof apiVersion !== "string" || typeof kind !== "string") {
        errors.push(`${where}: apiVersion and kind must be strings`);
        continue;
      }
      const Model = models.get(`${apiVersion}/${kind}`);
      if (!Model) {
        const versions = [...models.keys()].filter((k) => k.endsWith(`/${kind}`)).map((k) => k.slice(0, -kind.length - 1));
        const hint = versions.length ? ` (known apiVersions for ${kind}: ${versions.join(", ")})` : " (not an Istio kind)";
        errors.push(`${where}: unknown kind ${kind} in ${apiVersion}${hint}`);
        continue;
      }
      const name = doc.metadata?.name;
      const namespace = doc.metadata?.namespace;
      if (typeof name !== "string" || !name) {
        errors.push(`${where}: metadata.name is required`);
        continue;
      }
      const r = { file, index, doc, name, namespace: namespace ?? "(none)", Model };
      if (typeof namespace !== "string" || !namespace)
        fail(r, "metadata.namespace is required (selectors and exportTo depend on it; do not leave it to kubectl's current namespace)");
      const id = `${apiVersion.split("/")[0]}/${kind}/${namespace}/${name}`;
      if (seenNames.has(id)) fail(r, "defined twice in this file");
      seenNames.add(id);

      const before = errors.length;
      for (const e of schemaErrors(Model, doc)) fail(r, describeSchemaError(e));
      for (const segs of unknownFields(Model, kind, doc))
        fail(r, `${dotted(segs)}: unknown field (not in the ${apiVersion} ${kind} schema)`);
      if (kind === "WasmPlugin") {
        const cfg = doc.spec?.pluginConfig;
        if (!isObject(cfg)) fail(r, "spec.pluginConfig: required: the filter refuses to start without a configuration");
        else for (const p of structProblems(cfg, ["spec", "pluginConfig"])) fail(r, p);
        for (const p of pinProblems(doc.spec, opts.expectSha256)) fail(r, p);
      }
      resources.push(r);
      if (errors.length === before) console.log(`ok  ${display(file)}  ${apiVersion} ${kind} ${namespace}/${name}`);
    }
    if (count === 0) errors.push(`${display(file)}: contains no resources`);
  }

  crossChecks(resources, fail);

  if (errors.length) {
    for (const e of errors) console.error(`error: ${e}`);
    console.error(`istio/validate.mjs: ${errors.length} error(s); no plugin configs written`);
    process.exit(1);
  }

  let written = 0;
  if (opts.outDir) {
    const outDir = path.resolve(opts.outDir);
    await mkdir(outDir, { recursive: true });
    // Remove what an earlier run wrote, so a renamed WasmPlugin leaves no stale config behind.
    if (await exists(path.join(outDir, MARKER))) {
      for (const n of await readdir(outDir)) if (n.endsWith(".json")) await unlink(path.join(outDir, n));
    }
    await writeFile(path.join(outDir, MARKER), "JSON files here are written by istio/validate.mjs and removed by its next run.\n");
    const names = new Set();
    for (const r of resources.filter((x) => x.doc.kind === "WasmPlugin")) {
      const stem = path.basename(r.file).replace(/\.ya?ml$/, "");
      const out = path.join(outDir, `${stem}.${r.name}.json`);
      if (names.has(out)) {
        console.error(`error: ${label(r)}: a second WasmPlugin named ${r.name} in the same file would overwrite ${display(out)}`);
        process.exit(1);
      }
      names.add(out);
      await writeFile(out, JSON.stringify(r.doc.spec.pluginConfig, null, 2) + "\n");
      console.log(`wrote ${display(out)}  (pluginConfig of WasmPlugin ${r.namespace}/${r.name})`);
      written++;
    }
  }
  console.log(`istio/validate.mjs: ${resources.length} resource(s) in ${files.length} file(s) valid; ${written} plugin config(s) written`);
}

main().catch((e) => {
  console.error(`error: ${e?.stack ?? e}`);
  process.exit(1);
});
