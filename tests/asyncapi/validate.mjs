// Validates openapi/asyncapi.yaml with @asyncapi/parser and prints one JSON report on stdout:
//
//   {"valid": bool,              the parser accepted the document and its examples match
//    "diagnostics": [...],       {severity, code, message, path}; errors make it invalid
//    "server_types": [...],      `type` values of the messages of `send` operations
//    "client_ops": [...],        `op` values of the messages of `receive` operations
//    "channels": {id: {"address", "query", "server_types", "client_ops"}},   the same per
//                                channel, with `query` the properties of its ws binding's query
//    "examples": {"server": [...], "client": [...]},   every message example's payload
//    "frame_checks": [...]}      with --frames FILE: {direction, tag, errors} per frame
//
// Usage: node tests/asyncapi/validate.mjs [--doc FILE] [--frames FILE]
//
// --frames FILE holds {"server": [frame, ...], "client": [op, ...]}: JSON produced by the Rust
// types, each checked against the payload schema of the message with its `type` (or `op`), and
// for keys the schema does not declare. Every message example is checked the same way.
//
// @asyncapi/parser (and the JSON Schema validator it depends on) is looked up in .tools/node,
// where `scripts/install-tools.sh asyncapi` installs it, then in NODE_PATH. Exit status: 0 when
// valid and every frame check passed, 1 when not, 2 when the parser is missing or the input
// cannot be read.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const toolsRequire = createRequire(resolve(repo, ".tools/node/package.json"));
const fallbackRequire = createRequire(import.meta.url); // honours NODE_PATH

function fail(code, message) {
  const report = {
    valid: false,
    diagnostics: [{ severity: "error", code, message, path: "" }],
    server_types: [],
    client_ops: [],
  };
  process.stdout.write(JSON.stringify(report) + "\n");
  process.exit(2);
}

function load(name) {
  for (const req of [toolsRequire, fallbackRequire]) {
    try {
      return { module: req(name), require: createRequire(req.resolve(name)) };
    } catch {
      // try the next location
    }
  }
  return undefined;
}

const args = process.argv.slice(2);
function option(name) {
  const at = args.indexOf(name);
  return at >= 0 ? args[at + 1] : undefined;
}
const docPath = resolve(option("--doc") ?? resolve(repo, "openapi/asyncapi.yaml"));
const framesPath = option("--frames");

const parserPackage = load("@asyncapi/parser");
if (!parserPackage) {
  fail(
    "parser-missing",
    "@asyncapi/parser is not installed in .tools/node: run scripts/install-tools.sh asyncapi " +
      "(make test does)",
  );
}
const { Parser } = parserPackage.module;
// The validator the parser itself uses, resolved from the parser's own location.
const Ajv = (() => {
  const ajv = parserPackage.require("ajv");
  return ajv.default ?? ajv;
})();
const addFormats = (() => {
  try {
    const formats = parserPackage.require("ajv-formats");
    return formats.default ?? formats;
  } catch {
    return undefined;
  }
})();

let text;
try {
  text = readFileSync(docPath, "utf8");
} catch (err) {
  fail("unreadable", `cannot read ${docPath}: ${err.message}`);
}
let frames = { server: [], client: [] };
if (framesPath) {
  try {
    frames = { ...frames, ...JSON.parse(readFileSync(framesPath, "utf8")) };
  } catch (err) {
    fail("unreadable", `cannot read frames from ${framesPath}: ${err.message}`);
  }
}

const SEVERITY = ["error", "warning", "info", "hint"];
const parser = new Parser();
const { document, diagnostics } = await parser.parse(text, { source: docPath });
const report = {
  valid: false,
  diagnostics: diagnostics.map((d) => ({
    severity: SEVERITY[d.severity] ?? String(d.severity),
    code: String(d.code),
    message: d.message,
    path: (d.path ?? []).join("."),
  })),
  server_types: [],
  client_ops: [],
  examples: { server: [], client: [] },
  frame_checks: [],
};
const error = (code, message, path = "") =>
  report.diagnostics.push({ severity: "error", code, message, path });

if (document) {
  const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: Boolean(addFormats) });
  if (addFormats) addFormats(ajv);

  // The values a schema fixes for `tag` (`const` or `enum`), through allOf/anyOf/oneOf.
  const tagValues = (schema, tag) => {
    if (!schema || typeof schema !== "object") return [];
    const own = schema.properties?.[tag];
    const values = [];
    if (own && "const" in own) values.push(own.const);
    if (own && Array.isArray(own.enum)) values.push(...own.enum);
    for (const key of ["allOf", "anyOf", "oneOf"]) {
      for (const part of schema[key] ?? []) values.push(...tagValues(part, tag));
    }
    return values;
  };

  // Property names an object schema declares; undefined when it admits any (open) property.
  const declared = (schema) => {
    if (!schema || typeof schema !== "object") return new Set();
    const extra = schema.additionalProperties;
    if (extra !== undefined && extra !== false) return undefined;
    if (schema.patternProperties) return undefined;
    const names = new Set(Object.keys(schema.properties ?? {}));
    for (const key of ["allOf", "anyOf", "oneOf"]) {
      for (const part of schema[key] ?? []) {
        const more = declared(part);
        if (more === undefined) return undefined;
        for (const name of more) names.add(name);
      }
    }
    return names;
  };

  const problems = (validate, schema, value) => {
    const out = [];
    if (!validate(value)) {
      for (const e of validate.errors ?? []) out.push(`${e.instancePath || "/"} ${e.message}`);
    }
    const names = declared(schema);
    if (names && value && typeof value === "object" && !Array.isArray(value)) {
      for (const key of Object.keys(value)) {
        if (!names.has(key)) out.push(`/${key} is not declared by the schema`);
      }
    }
    return out;
  };

  // direction ("server" | "client") → tag value → {name, schema, validate}
  const byTag = { server: new Map(), client: new Map() };
  const tagOf = { server: "type", client: "op" };
  const channels = {};
  for (const channel of document.channels().all()) {
    const ws = channel.bindings().get("ws")?.value();
    channels[channel.id()] = {
      address: channel.address(),
      query: ws?.query?.properties ?? {},
      server_types: [],
      client_ops: [],
    };
  }
  for (const operation of document.operations().all()) {
    const direction = operation.isSend() ? "server" : "client";
    const tag = tagOf[direction];
    for (const message of operation.messages().all()) {
      const name = message.name() ?? message.id();
      const schema = message.payload()?.json();
      const values = tagValues(schema, tag);
      if (values.length !== 1) {
        error(
          "message-tag",
          `message '${name}' of ${operation.id()} must fix exactly one '${tag}' value, found ` +
            JSON.stringify(values),
        );
        continue;
      }
      const value = values[0];
      for (const channel of operation.channels().all()) {
        const list = channels[channel.id()]?.[direction === "server" ? "server_types" : "client_ops"];
        if (list && !list.includes(value)) list.push(value);
      }
      const other = direction === "server" ? "client" : "server";
      if (tagValues(schema, tagOf[other]).length > 0) {
        error("message-tag", `message '${name}' has both 'type' and 'op'`);
      }
      const known = byTag[direction].get(value);
      if (known) {
        if (known.id !== message.id()) {
          error("message-tag", `'${tag}: ${value}' is used by two messages: ${known.name}, ${name}`);
        }
        continue;
      }
      let validate;
      try {
        validate = ajv.compile(schema);
      } catch (err) {
        error("schema-invalid", `payload of '${name}': ${err.message}`);
        continue;
      }
      byTag[direction].set(value, { id: message.id(), name, schema, validate });
      for (const example of message.examples().all()) {
        const payload = example.payload();
        if (payload === undefined) {
          error("example-missing-payload", `an example of '${name}' has no payload`);
          continue;
        }
        report.examples[direction].push(payload);
        for (const problem of problems(validate, schema, payload)) {
          error("example-invalid", `example '${example.name() ?? "?"}' of '${name}': ${problem}`);
        }
      }
      if (message.examples().all().length === 0) {
        error("example-missing", `message '${name}' has no example`);
      }
    }
  }
  report.server_types = [...byTag.server.keys()];
  report.client_ops = [...byTag.client.keys()];
  report.channels = channels;

  for (const direction of ["server", "client"]) {
    for (const frame of frames[direction] ?? []) {
      const tag = frame?.[tagOf[direction]];
      const entry = byTag[direction].get(tag);
      const errors = entry
        ? problems(entry.validate, entry.schema, frame)
        : [`no ${direction} message with ${tagOf[direction]} '${tag}' in the document`];
      report.frame_checks.push({ direction, tag, frame, errors });
    }
  }
}

report.valid = document !== undefined && !report.diagnostics.some((d) => d.severity === "error");
const framesOk = report.frame_checks.every((check) => check.errors.length === 0);
process.stdout.write(JSON.stringify(report, null, 2) + "\n");
process.exit(report.valid && framesOk ? 0 : 1);
