// Judges JSON documents against the event schemas with Ajv (JSON Schema draft 2020-12, formats on):
// the contract's reader outside Python. Usage:
//   node validate.cjs <node_modules parent dir> <schemas dir> <event.vN.json>=<document.json> ...
// Prints one JSON object per document: {"file": ..., "valid": true|false, "errors": [...]}, and exits 0
// (non-zero only when a schema itself does not compile).
"use strict";
const fs = require("fs");
const path = require("path");
const { createRequire } = require("module");

const [modules, schemaDir, ...pairs] = process.argv.slice(2);
const load = createRequire(path.join(modules, "package.json"));
const Ajv2020 = load("ajv/dist/2020").default;
const addFormats = load("ajv-formats").default;

const ajv = new Ajv2020({ allErrors: true, strict: true, strictTypes: false, strictRequired: false });
addFormats(ajv);
const validators = new Map();
for (const name of fs.readdirSync(schemaDir).filter((n) => n.endsWith(".json"))) {
  validators.set(name, ajv.compile(JSON.parse(fs.readFileSync(path.join(schemaDir, name), "utf8"))));
}
for (const pair of pairs) {
  const at = pair.indexOf("=");
  const schema = pair.slice(0, at);
  const file = pair.slice(at + 1);
  const validate = validators.get(schema);
  if (!validate) throw new Error(`no schema ${schema} in ${schemaDir}`);
  const valid = validate(JSON.parse(fs.readFileSync(file, "utf8")));
  const errors = (validate.errors || []).map((e) => `${e.instancePath} ${e.message}`);
  process.stdout.write(JSON.stringify({ file, valid, errors }) + "\n");
}
