// Cut GitHub's official OpenAPI description (@octokit/openapi, 13 MB) down to
// the operations cordon calls, plus every component they reference, so that
// Prism starts in under a second instead of parsing the whole API.
//
// usage: node trim-spec.mjs <api.github.com.json> <out.json>
//
// Nothing is rewritten: operations and components are copied verbatim, so the
// trimmed document holds GitHub's contract for these calls exactly.
import { readFileSync, writeFileSync, renameSync } from "node:fs";

// Keep this list in step with connectors/github/src (every request it sends).
export const OPERATIONS = {
  "/credentials/revoke": ["post"],
  "/installation/token": ["delete"],
  "/applications/{client_id}/token": ["post", "delete"],
  "/applications/{client_id}/grant": ["delete"],
  "/repos/{owner}/{repo}/keys": ["get"],
  "/repos/{owner}/{repo}/keys/{key_id}": ["delete"],
  "/orgs/{org}/installation": ["get"],
  "/app/installations/{installation_id}/access_tokens": ["post"],
  "/app": ["get"],
  "/app/installations": ["get"],
  "/app/installations/{installation_id}/suspended": ["put", "delete"],
  "/orgs/{org}/personal-access-tokens": ["get"],
  "/orgs/{org}/personal-access-tokens/{pat_id}": ["post"],
  "/user": ["get"],
  "/meta": ["get"],
  "/repos/{owner}/{repo}/secret-scanning/alerts/{alert_number}": ["get"],
  "/repos/{owner}/{repo}/secret-scanning/alerts/{alert_number}/locations": ["get"],
};

const [, , input, output] = process.argv;
if (!input || !output) {
  console.error("usage: node trim-spec.mjs <api.github.com.json> <out.json>");
  process.exit(2);
}
const spec = JSON.parse(readFileSync(input, "utf8"));

const paths = {};
for (const [path, methods] of Object.entries(OPERATIONS)) {
  const item = spec.paths[path];
  if (!item) throw new Error(`path ${path} is not in ${input}`);
  const kept = {};
  if (item.parameters) kept.parameters = item.parameters;
  for (const m of methods) {
    if (!item[m]) throw new Error(`${m.toUpperCase()} ${path} is not in ${input}`);
    kept[m] = item[m];
  }
  paths[path] = kept;
}

// Follow every "#/components/<section>/<name>" reference transitively.
const components = {};
const seen = new Set();
const queue = [paths];
while (queue.length) {
  const node = queue.pop();
  if (Array.isArray(node)) {
    node.forEach((n) => queue.push(n));
  } else if (node && typeof node === "object") {
    for (const [k, v] of Object.entries(node)) {
      if (k === "$ref" && typeof v === "string" && v.startsWith("#/components/")) {
        if (seen.has(v)) continue;
        seen.add(v);
        const [, , section, ...rest] = v.split("/");
        const name = rest.join("/").replaceAll("~1", "/").replaceAll("~0", "~");
        const target = spec.components?.[section]?.[name];
        if (target === undefined) throw new Error(`dangling reference ${v}`);
        (components[section] ??= {})[name] = target;
        queue.push(target);
      } else {
        queue.push(v);
      }
    }
  }
}

const trimmed = {
  openapi: spec.openapi,
  info: spec.info,
  servers: spec.servers,
  paths,
  components,
};
const tmp = `${output}.tmp`;
writeFileSync(tmp, JSON.stringify(trimmed));
renameSync(tmp, output);
console.error(
  `trim-spec: kept ${Object.keys(paths).length} paths and ${seen.size} components (${
    JSON.stringify(trimmed).length
  } bytes)`,
);
