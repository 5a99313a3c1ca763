// Cut GitHub's official OpenAPI description (@octokit/openapi, 13 MB) down to
// the operations cordon calls, plus every component they reference, so that
// Prism starts in under a second instead of parsing the whole API.
//
// usage: node trim-spec.mjs <api.github.com.json> <out.json> <ghec.json>
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
  // POST: the tests' attacker (below).
  "/repos/{owner}/{repo}/keys": ["get", "post"],
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
  // Not called by cordon: the tests create deploy keys and webhooks with a
  // leaked token, as an attacker would, so that the registry records them in
  // the audit log (POST /repos/{owner}/{repo}/keys too).
  "/repos/{owner}/{repo}/hooks": ["post"],
};

// Operations GitHub documents only for GitHub Enterprise Cloud: they are not
// in the api.github.com description, so they are taken verbatim from the GHEC
// description of the same @octokit/openapi release (generated/ghec.json).
// The organisation audit log: cordon searches it for what a leaked token did
// (https://docs.github.com/en/enterprise-cloud@latest/rest/orgs/orgs#get-the-audit-log-for-an-organization).
export const GHEC_OPERATIONS = {
  "/orgs/{org}/audit-log": ["get"],
};

const [, , input, output, ghecInput] = process.argv;
if (!input || !output || !ghecInput) {
  console.error("usage: node trim-spec.mjs <api.github.com.json> <out.json> <ghec.json>");
  process.exit(2);
}
const spec = JSON.parse(readFileSync(input, "utf8"));
const ghec = JSON.parse(readFileSync(ghecInput, "utf8"));

function keep(source, name, operations, paths) {
  for (const [path, methods] of Object.entries(operations)) {
    const item = source.paths[path];
    if (!item) throw new Error(`path ${path} is not in ${name}`);
    const kept = {};
    if (item.parameters) kept.parameters = item.parameters;
    for (const m of methods) {
      if (!item[m]) throw new Error(`${m.toUpperCase()} ${path} is not in ${name}`);
      kept[m] = item[m];
    }
    paths[path] = kept;
  }
}

/** The same node with every `description` left out (the GHEC description links other pages). */
function contract(node) {
  if (Array.isArray(node)) return node.map(contract);
  if (node && typeof node === "object") {
    return Object.fromEntries(
      Object.entries(node)
        .filter(([k]) => k !== "description")
        .map(([k, v]) => [k, contract(v)]),
    );
  }
  return node;
}

// Follow every "#/components/<section>/<name>" reference of `roots`
// transitively in `source`. A component both descriptions define must be the
// same contract (descriptions aside): the api.github.com one is kept.
const components = {};
function follow(source, name, roots) {
  const seen = new Set();
  const queue = [roots];
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
          const cname = rest.join("/").replaceAll("~1", "/").replaceAll("~0", "~");
          const target = source.components?.[section]?.[cname];
          if (target === undefined) throw new Error(`dangling reference ${v} in ${name}`);
          const have = components[section]?.[cname];
          if (have === undefined) {
            (components[section] ??= {})[cname] = target;
          } else if (JSON.stringify(contract(have)) !== JSON.stringify(contract(target))) {
            throw new Error(`${v} differs between the descriptions; cannot serve both`);
          }
          queue.push(target);
        } else {
          queue.push(v);
        }
      }
    }
  }
  return seen.size;
}

const paths = {};
keep(spec, input, OPERATIONS, paths);
const ghecPaths = {};
keep(ghec, ghecInput, GHEC_OPERATIONS, ghecPaths);
for (const p of Object.keys(ghecPaths)) {
  if (paths[p]) throw new Error(`${p} is listed twice`);
}
let followed = follow(spec, input, paths);
followed += follow(ghec, ghecInput, ghecPaths);
Object.assign(paths, ghecPaths);

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
  `trim-spec: kept ${Object.keys(paths).length} paths and ${followed} components (${
    JSON.stringify(trimmed).length
  } bytes)`,
);
