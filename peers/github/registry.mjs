// The stateful half of cordon's GitHub peer.
//
// Prism validates every request and response against GitHub's OpenAPI
// description but is stateless and checks no authentication, so it cannot say
// "this token was revoked, GET /user now answers 401". This registry answers
// the real endpoints behind `prism proxy --errors`: every byte it sends back
// still passes through Prism's contract checks on the way to cordon.
//
// Two listeners on 127.0.0.1:
//   API   (the upstream Prism proxies to): the GitHub endpoints cordon calls.
//   admin (reached directly, never through Prism): seeding and counters.
//
// Tests share one registry and run in parallel, so everything they observe is
// scoped by a `tag` they choose: every seeded token, app, OAuth app and
// deploy-key repository carries one, counters are kept per tag, and injected
// failures only hit requests that involve that tag.
//
// Node standard library only.
import { createServer } from "node:http";
import { createHash, generateKeyPairSync, randomBytes, sign, verify } from "node:crypto";

// ---------------------------------------------------------------- state

/** token string -> { tag, login, userId, scopes, kind, revoked, clientId, appId, ghesVersion } */
const tokens = new Map();
/** client_id -> { secret, tag } */
const oauthApps = new Map();
/** app id (string) -> { tag, publicKey, installations: Map(org -> installationId), canRevokePats, slug, owner } */
const apps = new Map();
/** installation id -> { appId, org, suspendedAt } */
const installations = new Map();
/** "owner/repo" -> { tag, keys: [deploy-key], hooks: [hook] } */
const repos = new Map();
/** org -> { tag, grants: [grant] } */
const orgPats = new Map();
/** "owner/repo" -> { tag, alerts: Map(number -> { secret, secretType, locations }) } */
const secretAlerts = new Map();
/** tag -> { "METHOD /template": count } */
const counts = new Map();
/** tag -> [{ status, remaining, endpoint }] */
const failures = new Map();
/** tag -> milliseconds a revocation takes to apply (GitHub revokes asynchronously) */
const revokeDelay = new Map();

let nextId = 1000;
const newId = () => nextId++;

// ---------------------------------------------------------------- helpers

function sha256b64(s) {
  return createHash("sha256").update(s).digest("base64");
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

function send(res, status, body, headers = {}) {
  if (body === undefined || status === 204) {
    res.writeHead(status, headers);
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

const DOCS = "https://docs.github.com/rest";
const err = (message) => ({ message, documentation_url: DOCS });

function simpleUser(login, id) {
  const u = `https://api.github.com/users/${login}`;
  return {
    login,
    id,
    node_id: `U_${id}`,
    avatar_url: `https://avatars.githubusercontent.com/u/${id}?v=4`,
    gravatar_id: "",
    url: u,
    html_url: `https://github.com/${login}`,
    followers_url: `${u}/followers`,
    following_url: `${u}/following{/other_user}`,
    gists_url: `${u}/gists{/gist_id}`,
    starred_url: `${u}/starred{/owner}{/repo}`,
    subscriptions_url: `${u}/subscriptions`,
    organizations_url: `${u}/orgs`,
    repos_url: `${u}/repos`,
    events_url: `${u}/events{/privacy}`,
    received_events_url: `${u}/received_events`,
    type: "User",
    site_admin: false,
  };
}

function privateUser(login, id) {
  return {
    ...simpleUser(login, id),
    name: login,
    company: null,
    blog: "",
    location: null,
    email: null,
    hireable: null,
    bio: null,
    public_repos: 0,
    public_gists: 0,
    followers: 0,
    following: 0,
    created_at: "2020-01-01T00:00:00Z",
    updated_at: "2020-01-01T00:00:00Z",
    private_gists: 0,
    total_private_repos: 0,
    owned_private_repos: 0,
    disk_usage: 0,
    collaborators: 0,
    two_factor_authentication: true,
    user_view_type: "private",
  };
}

function bearer(req) {
  const h = req.headers["authorization"];
  if (!h) return null;
  const m = /^(?:bearer|token)\s+(.+)$/i.exec(h);
  return m ? m[1].trim() : null;
}

function basic(req) {
  const h = req.headers["authorization"];
  const m = h && /^basic\s+(.+)$/i.exec(h);
  if (!m) return null;
  const text = Buffer.from(m[1], "base64").toString("utf8");
  const i = text.indexOf(":");
  return i < 0 ? null : { user: text.slice(0, i), pass: text.slice(i + 1) };
}

function liveToken(value) {
  const t = value && tokens.get(value);
  if (!t || t.revoked) return null;
  if (t.revokeAt && Date.now() >= t.revokeAt) {
    t.revoked = true;
    return null;
  }
  return t;
}

function b64url(buf) {
  return Buffer.from(buf, "base64url");
}

/** Verify a GitHub App JWT (RS256, iss = app id); returns the app or null. */
function appFromJwt(token) {
  if (!token || token.split(".").length !== 3) return null;
  const [h, p, s] = token.split(".");
  let header, payload;
  try {
    header = JSON.parse(b64url(h).toString("utf8"));
    payload = JSON.parse(b64url(p).toString("utf8"));
  } catch {
    return null;
  }
  if (header.alg !== "RS256") return null;
  const app = apps.get(String(payload.iss));
  // A key its owner deleted no longer verifies: GitHub checks a JWT against
  // the App's current keys (https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/managing-private-keys-for-github-apps#deleting-private-keys).
  if (!app || !app.publicKey) return null;
  const ok = verify("RSA-SHA256", Buffer.from(`${h}.${p}`), app.publicKey, b64url(s));
  const now = Math.floor(Date.now() / 1000);
  if (!ok || typeof payload.exp !== "number" || payload.exp < now) return null;
  if (payload.exp - (payload.iat ?? now) > 600 + 60) return null; // GitHub caps JWTs at 10 minutes
  return app;
}

// The registry's own signing key for stateless installation tokens (GitHub
// signs them with its key; nobody outside GitHub checks the signature).
const { privateKey: registryKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });

/** A stateless installation token: `ghs_<app id>_<RS256 JWT>`, about 520 characters. */
function statelessToken(appId, installationId) {
  const now = Math.floor(Date.now() / 1000);
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const head = enc({ alg: "RS256", typ: "JWT" });
  const body = enc({ iss: "github", iat: now, exp: now + 3600, installation_id: installationId, app_id: Number(appId), jti: randomBytes(8).toString("hex") });
  const sig = sign("RSA-SHA256", Buffer.from(`${head}.${body}`), registryKey).toString("base64url");
  return `ghs_${appId}_${head}.${body}.${sig}`;
}

/** OpenSSH SHA256 fingerprint of an `ssh-<type> <base64>` public key line. */
function sshFingerprint(line) {
  const blob = Buffer.from(line.trim().split(/\s+/)[1] ?? "", "base64");
  return "SHA256:" + createHash("sha256").update(blob).digest("base64").replace(/=+$/, "");
}

function count(tags, endpoint) {
  for (const tag of tags) {
    const c = counts.get(tag) ?? {};
    c[endpoint] = (c[endpoint] ?? 0) + 1;
    counts.set(tag, c);
  }
}

/** The first armed failure for any of `tags`, consumed. */
function takeFailure(tags, endpoint) {
  for (const tag of tags) {
    const list = failures.get(tag);
    if (!list) continue;
    const f = list.find((x) => x.remaining > 0 && (!x.endpoint || x.endpoint === endpoint));
    if (f) {
      f.remaining -= 1;
      return f;
    }
  }
  return null;
}

function failureBody(status) {
  if (status === 422) {
    return { message: "Validation Failed", documentation_url: DOCS, errors: ["injected by the test registry"] };
  }
  return err(status >= 500 ? "Server Error" : "Forbidden");
}

// ---------------------------------------------------------------- API routes

// Each route: [method, template, regex, handler(req, res, params, body) -> { tags, reply }]
const routes = [];
function route(method, template, handler) {
  const re = new RegExp(
    "^" + template.replace(/\{[a-z_]+\}/g, "([^/]+)") + "$",
  );
  routes.push({ method, template, re, handler });
}

// GitHub Enterprise Server mode. A server "is" GHES for the requests its own
// caller's token makes: a token seeded with `ghes_version` stands for cordon's
// credential on a GHES of that version. On GHES the revocation API exists
// from 3.19, needs authentication there, and takes only ghp_ and github_pat_
// tokens (https://docs.github.com/en/enterprise-server@3.19/rest/credentials/revoke).
// GHES names its version in `X-GitHub-Enterprise-Version` on every answer
// (https://docs.github.com/en/enterprise-server@3.19/rest/meta/meta).
function ghesOf(req) {
  const t = liveToken(bearer(req));
  return t?.ghesVersion ? t : null;
}

function versionAtLeast(v, major, minor) {
  const [a, b] = String(v).split(".").map(Number);
  return a > major || (a === major && b >= minor);
}

route("GET", "/meta", (req) => {
  const ghes = ghesOf(req);
  return {
    tags: new Set(ghes ? [ghes.tag] : []),
    reply: () => {
      if (ghes) {
        return [
          200,
          { verifiable_password_authentication: false, installed_version: ghes.ghesVersion },
          { "x-github-enterprise-version": ghes.ghesVersion },
        ];
      }
      return [200, { verifiable_password_authentication: false }];
    },
  };
});

route("POST", "/credentials/revoke", (req, body) => {
  const creds = Array.isArray(body?.credentials) ? body.credentials : [];
  const ghes = ghesOf(req);
  const tags = new Set([...creds.map((c) => tokens.get(c)?.tag), ghes?.tag].filter(Boolean));
  return {
    tags,
    reply: () => {
      if (ghes) {
        if (!versionAtLeast(ghes.ghesVersion, 3, 19)) return [404, err("Not Found")];
        // Only these kinds on GHES: a request with another one is refused
        // whole, so a client that sends one fails its test.
        if (creds.some((c) => !/^(ghp_|github_pat_)/.test(c))) {
          return [422, { message: "Validation Failed", documentation_url: DOCS, errors: ["only ghp_ and github_pat_ tokens can be revoked on this server"] }];
        }
      } else if (req.headers["authorization"]) {
        // GitHub refuses an authenticated call: the API exists so that anyone
        // who finds a token can report it, and it must not be tied to a user.
        return [403, err("This endpoint must be called without authentication.")];
      }
      for (const c of creds) {
        const t = tokens.get(c);
        if (!t || t.revoked) continue;
        const delay = revokeDelay.get(t.tag) ?? 0;
        if (delay > 0) t.revokeAt = t.revokeAt ?? Date.now() + delay;
        else t.revoked = true;
      }
      return [202, {}];
    },
  };
});

route("GET", "/user", (req) => {
  const value = bearer(req);
  const t = tokens.get(value);
  return {
    tags: new Set(t ? [t.tag] : []),
    reply: () => {
      const live = liveToken(value);
      if (!live) return [401, err("Bad credentials")];
      // A refresh token authenticates no API call, revoked or not: it is only
      // exchanged at POST https://github.com/login/oauth/access_token
      // (https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/refreshing-user-access-tokens).
      if (live.kind === "refresh") return [401, err("Bad credentials")];
      if (live.kind === "installation") {
        return [403, err("Resource not accessible by integration")];
      }
      return [200, privateUser(live.login, live.userId), { "x-oauth-scopes": live.scopes.join(", ") }];
    },
  };
});

route("DELETE", "/installation/token", (req) => {
  const value = bearer(req);
  const t = tokens.get(value);
  return {
    tags: new Set(t ? [t.tag] : []),
    reply: () => {
      const live = liveToken(value);
      if (!live || live.kind !== "installation") return [401, err("Bad credentials")];
      live.revoked = true;
      return [204];
    },
  };
});

function oauthRoute(method, template, onValid) {
  route(method, template, (req, body, [clientId]) => {
    const app = oauthApps.get(decodeURIComponent(clientId));
    const t = tokens.get(body?.access_token);
    const tags = new Set([app?.tag, t?.tag].filter(Boolean));
    return {
      tags,
      reply: () => {
        const auth = basic(req);
        if (!app || !auth || auth.user !== clientId || auth.pass !== app.secret) {
          return [404, err("Not Found")];
        }
        const live = liveToken(body?.access_token);
        if (!live || live.clientId !== clientId) return [404, err("Not Found")];
        return onValid(live, clientId, body.access_token);
      },
    };
  });
}

// GitHub echoes the checked token in `token`: cordon must not carry it along.
oauthRoute("POST", "/applications/{client_id}/token", (live, clientId, value) => [
  200,
  {
    id: live.userId * 10,
    url: "https://api.github.com/authorizations/1",
    scopes: live.scopes,
    token: value,
    token_last_eight: value.slice(-8),
    hashed_token: sha256b64(value),
    app: { client_id: clientId, name: "cordon test app", url: "https://example.invalid/app" },
    note: null,
    note_url: null,
    updated_at: "2020-01-01T00:00:00Z",
    created_at: "2020-01-01T00:00:00Z",
    fingerprint: null,
    user: simpleUser(live.login, live.userId),
    expires_at: null,
  },
]);

oauthRoute("DELETE", "/applications/{client_id}/token", (live) => {
  live.revoked = true;
  return [204];
});

oauthRoute("DELETE", "/applications/{client_id}/grant", (live, clientId) => {
  // The grant is the user's authorization of the app: every token of it dies.
  for (const t of tokens.values()) {
    if (t.clientId === clientId && t.login === live.login) t.revoked = true;
  }
  return [204];
});

function cordonCaller(req) {
  // cordon's own credential: a seeded live token (GITHUB_TOKEN) or an installation token.
  return liveToken(bearer(req));
}

route("GET", "/repos/{owner}/{repo}/keys", (req, _body, [owner, repo]) => {
  const r = repos.get(`${owner}/${repo}`);
  return {
    tags: new Set(r ? [r.tag] : []),
    reply: () => {
      if (!cordonCaller(req)) return [401, err("Requires authentication")];
      if (!r) return [404, err("Not Found")];
      const url = new URL(req.url, "http://x");
      const perPage = Number(url.searchParams.get("per_page") ?? 30);
      const page = Number(url.searchParams.get("page") ?? 1);
      return [200, r.keys.slice((page - 1) * perPage, page * perPage)];
    },
  };
});

route("DELETE", "/repos/{owner}/{repo}/keys/{key_id}", (req, _body, [owner, repo, keyId]) => {
  const r = repos.get(`${owner}/${repo}`);
  return {
    tags: new Set(r ? [r.tag] : []),
    reply: () => {
      if (!cordonCaller(req)) return [401, err("Requires authentication")];
      if (!r) return [404, err("Not Found")];
      r.keys = r.keys.filter((k) => String(k.id) !== keyId);
      return [204];
    },
  };
});

// ---------------------------------------------------------------- audit log
// GitHub records, in an organisation's audit log, each action taken in it;
// an action taken with a token carries `hashed_token` (base64 of the token's
// SHA-256), `programmatic_access_type` and `token_scopes`, and the log can be
// searched with `phrase=hashed_token:"VALUE"`
// (https://docs.github.com/en/enterprise-cloud@latest/organizations/keeping-your-organization-secure/managing-security-settings-for-your-organization/identifying-audit-log-events-performed-by-an-access-token).
// The registry records an event for the calls below that it served with a
// token, in the log of the repository owner when that owner is an
// organisation seeded as on GitHub Enterprise Cloud (admin POST /audit-orgs).
// `public_key.create`: "An SSH key was added to a user account or a deploy
// key was added to a repository"; `hook.create`: "A new hook was added"
// (https://docs.github.com/en/enterprise-cloud@latest/organizations/keeping-your-organization-secure/managing-security-settings-for-your-organization/audit-log-events-for-your-organization).

/** org -> { tag, owners: Set(login), events: [event] } */
const auditOrgs = new Map();

/** What GitHub calls the kind of token in `programmatic_access_type`. */
function accessType(value) {
  if (value.startsWith("github_pat_")) return "Fine-grained personal access token";
  if (value.startsWith("ghp_")) return "Personal access token (classic)";
  if (value.startsWith("gho_")) return "OAuth access token";
  if (value.startsWith("ghu_")) return "GitHub App user-to-server token";
  if (value.startsWith("ghs_")) return "GitHub App server-to-server token";
  return "Personal access token (classic)";
}

function record(org, action, value, token, fields) {
  const log = auditOrgs.get(org);
  if (!log) return;
  const now = Date.now();
  log.events.push({
    "@timestamp": now,
    created_at: now,
    _document_id: randomBytes(16).toString("base64url"),
    action,
    actor: token.login,
    actor_id: token.userId,
    org,
    hashed_token: sha256b64(value),
    programmatic_access_type: accessType(value),
    token_scopes: token.scopes.join(","),
    ...fields,
  });
}

/** A token that may act: live, and not one that authenticates no call. */
function actingToken(req) {
  const value = bearer(req);
  const t = liveToken(value);
  return t && t.kind !== "refresh" ? { value, token: t } : null;
}

route("POST", "/repos/{owner}/{repo}/keys", (req, body, [owner, repo]) => {
  const caller = actingToken(req);
  return {
    tags: new Set(caller ? [caller.token.tag] : []),
    reply: () => {
      if (!caller) return [401, err("Requires authentication")];
      const name = `${owner}/${repo}`;
      const r = repos.get(name) ?? { tag: caller.token.tag, keys: [], hooks: [] };
      repos.set(name, r);
      const id = newId();
      const key = {
        id,
        key: body.key,
        url: `https://api.github.com/repos/${name}/keys/${id}`,
        title: body.title ?? "",
        verified: true,
        created_at: new Date().toISOString().replace(/\.\d{3}Z$/, "Z"),
        read_only: body.read_only ?? false,
        added_by: caller.token.login,
        last_used: null,
        enabled: true,
      };
      r.keys.push(key);
      record(owner, "public_key.create", caller.value, caller.token, {
        repo: name,
        repository: name,
        title: key.title,
        fingerprint: sshFingerprint(body.key),
        read_only: key.read_only,
      });
      return [201, key];
    },
  };
});

route("POST", "/repos/{owner}/{repo}/hooks", (req, body, [owner, repo]) => {
  const caller = actingToken(req);
  return {
    tags: new Set(caller ? [caller.token.tag] : []),
    reply: () => {
      if (!caller) return [401, err("Requires authentication")];
      const name = `${owner}/${repo}`;
      const r = repos.get(name) ?? { tag: caller.token.tag, keys: [], hooks: [] };
      repos.set(name, r);
      const id = newId();
      const at = new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
      const api = `https://api.github.com/repos/${name}/hooks/${id}`;
      const hook = {
        type: "Repository",
        id,
        name: "web",
        active: body?.active ?? true,
        events: body?.events ?? ["push"],
        config: { url: body?.config?.url, content_type: body?.config?.content_type ?? "form", insecure_ssl: "0" },
        updated_at: at,
        created_at: at,
        url: api,
        test_url: `${api}/test`,
        ping_url: `${api}/pings`,
        deliveries_url: `${api}/deliveries`,
        last_response: { code: null, status: "unused", message: null },
      };
      (r.hooks ??= []).push(hook);
      record(owner, "hook.create", caller.value, caller.token, {
        repo: name,
        repository: name,
        hook_id: id,
        name: "webhook",
        active: hook.active,
        events: hook.events.map((e) => ({ name: e })),
        config: [{ url: hook.config.url, content_type: hook.config.content_type, insecure_ssl: "0" }],
      });
      return [201, hook];
    },
  };
});

/**
 * The search phrase's qualifiers, `key:value` or `key:"value"`, all of which
 * an event must match (`-key:` must not). `action:CATEGORY` matches every
 * action of the category. Free text and the date qualifiers are not modelled:
 * the registry refuses them rather than ignore them.
 */
function phraseFilter(phrase) {
  const qualifiers = [];
  const re = /\s*(-?)([a-z_]+):(?:"([^"]*)"|(\S+))\s*/gy;
  let m;
  let at = 0;
  while (at < phrase.length && (m = re.exec(phrase))) {
    qualifiers.push({ negate: m[1] === "-", key: m[2], value: m[3] ?? m[4] });
    at = re.lastIndex;
  }
  if (phrase.slice(at).trim()) return null;
  if (qualifiers.some((q) => q.key === "created")) return null;
  return (e) =>
    qualifiers.every((q) => {
      const v = e[q.key];
      const hit =
        q.key === "action" && !q.value.includes(".")
          ? String(v ?? "").split(".")[0] === q.value
          : v !== undefined && String(v) === q.value;
      return q.negate ? !hit : hit;
    });
}

route("GET", "/orgs/{org}/audit-log", (req, _body, [org]) => {
  const log = auditOrgs.get(org);
  return {
    tags: new Set(log ? [log.tag] : []),
    reply: () => {
      const caller = liveToken(bearer(req));
      if (!caller) return [401, err("Requires authentication")];
      // Only organisations on GitHub Enterprise Cloud have this endpoint
      // (`githubCloudOnly` in GitHub's description); elsewhere it is not found.
      if (!log) return [404, err("Not Found")];
      // "The authenticated user must be an organization owner."
      if (!log.owners.has(caller.login)) return [403, err("Must have admin rights to the organization.")];
      const url = new URL(req.url, "http://x");
      const q = url.searchParams;
      const filter = phraseFilter(q.get("phrase") ?? "");
      if (!filter) return [422, { message: "Validation Failed", documentation_url: DOCS, errors: ["the registry models only qualifiers (key:value), without created:"] }];
      // `include`: web (default), git or all; every event here is a web event.
      const include = q.get("include") ?? "web";
      const perPage = Math.min(Number(q.get("per_page") ?? 30), 100);
      const newestFirst = (q.get("order") ?? "desc") === "desc";
      let list = include === "git" ? [] : log.events.filter(filter);
      if (newestFirst) list = [...list].reverse();
      // Cursor pagination: `after` names the last event of the previous page.
      const after = q.get("after");
      if (after) {
        const i = list.findIndex((e) => e._document_id === after);
        list = i < 0 ? [] : list.slice(i + 1);
      }
      const page = list.slice(0, perPage);
      const headers = {};
      if (list.length > perPage) {
        const next = new URLSearchParams(q);
        next.set("after", page[page.length - 1]._document_id);
        next.delete("before");
        headers.link = `<https://api.github.com/orgs/${org}/audit-log?${next}>; rel="next"`;
      }
      return [200, page, headers];
    },
  };
});

route("GET", "/orgs/{org}/installation", (req, _body, [org]) => {
  const app = appFromJwt(bearer(req));
  return {
    tags: new Set(app ? [app.tag] : []),
    reply: () => {
      if (!app) return [401, err("A JSON web token could not be decoded")];
      const id = app.installations.get(org);
      if (!id) return [404, err("Not Found")];
      const account = simpleUser(org, 77);
      account.type = "Organization";
      return [
        200,
        {
          id,
          account,
          repository_selection: "all",
          access_tokens_url: `https://api.github.com/app/installations/${id}/access_tokens`,
          repositories_url: "https://api.github.com/installation/repositories",
          html_url: `https://github.com/organizations/${org}/settings/installations/${id}`,
          app_id: Number(app.id),
          target_id: 77,
          target_type: "Organization",
          permissions: { organization_personal_access_tokens: "write" },
          events: [],
          created_at: "2020-01-01T00:00:00Z",
          updated_at: "2020-01-01T00:00:00Z",
          single_file_name: null,
          app_slug: "cordon",
          suspended_by: null,
          suspended_at: null,
        },
      ];
    },
  };
});

route("POST", "/app/installations/{installation_id}/access_tokens", (req, _body, [instId]) => {
  const app = appFromJwt(bearer(req));
  return {
    tags: new Set(app ? [app.tag] : []),
    reply: () => {
      if (!app) return [401, err("A JSON web token could not be decoded")];
      const inst = installations.get(Number(instId));
      if (!inst || inst.appId !== app.id) return [404, err("Not Found")];
      // A suspended installation blocks the App's access to the account
      // (https://docs.github.com/en/rest/apps/apps#suspend-an-app-installation):
      // no token is minted for it.
      if (inst.suspendedAt) return [403, err("This installation has been suspended")];
      // `X-GitHub-Stateless-S2S-Token: enabled` asks for the stateless format
      // GitHub rolls out from April 2026: `ghs_` + app id + `_` + a JWT
      // (https://github.blog/changelog/2026-05-15-github-app-installation-tokens-per-request-override-header/).
      const stateless = String(req.headers["x-github-stateless-s2s-token"] ?? "") === "enabled";
      const token = stateless
        ? statelessToken(app.id, Number(instId))
        : "ghs_" + randomBytes(27).toString("base64url").replace(/[-_]/g, "x").slice(0, 36);
      tokens.set(token, {
        tag: app.tag,
        login: `${app.id}[bot]`,
        userId: newId(),
        scopes: [],
        kind: "installation",
        revoked: false,
        installation: Number(instId),
        appId: app.id,
      });
      const expires = new Date(Date.now() + 3600_000).toISOString().replace(/\.\d{3}Z$/, "Z");
      return [
        201,
        {
          token,
          expires_at: expires,
          permissions: { organization_personal_access_tokens: "write" },
          repository_selection: "all",
        },
      ];
    },
  };
});

// A GitHub App, as GET /app shows it (the `integration` schema).
function integration(app) {
  const owner = simpleUser(app.owner, 77);
  owner.type = "Organization";
  return {
    id: Number(app.id),
    slug: app.slug,
    node_id: `A_${app.id}`,
    client_id: `Iv1.${app.id}`,
    owner,
    name: app.slug,
    description: "an app of the test registry",
    external_url: "https://example.invalid/app",
    html_url: `https://github.com/apps/${app.slug}`,
    created_at: "2020-01-01T00:00:00Z",
    updated_at: "2020-01-01T00:00:00Z",
    permissions: { metadata: "read" },
    events: [],
    installations_count: app.installations.size,
  };
}

function installationOf(app, org, id) {
  const inst = installations.get(id);
  // GitHub's description of GET /app/installations types the account as
  // `allOf: [simple-user, enterprise]` (not `anyOf`, as the single-installation
  // endpoints do), so Prism requires both shapes' fields: the account carries
  // the enterprise fields too. cordon reads only `login`.
  const account = {
    ...simpleUser(org, 77),
    type: "Organization",
    name: org,
    slug: org,
    description: null,
    website_url: null,
    created_at: "2020-01-01T00:00:00Z",
    updated_at: "2020-01-01T00:00:00Z",
  };
  return {
    id,
    account,
    repository_selection: "all",
    access_tokens_url: `https://api.github.com/app/installations/${id}/access_tokens`,
    repositories_url: "https://api.github.com/installation/repositories",
    html_url: `https://github.com/organizations/${org}/settings/installations/${id}`,
    app_id: Number(app.id),
    target_id: 77,
    target_type: "Organization",
    permissions: { metadata: "read" },
    events: [],
    created_at: "2020-01-01T00:00:00Z",
    updated_at: "2020-01-01T00:00:00Z",
    single_file_name: null,
    app_slug: app.slug,
    suspended_by: inst?.suspendedAt ? simpleUser(app.owner, 77) : null,
    suspended_at: inst?.suspendedAt ?? null,
  };
}

// "Get the authenticated app": a JWT signed with one of the App's current
// keys (https://docs.github.com/en/rest/apps/apps#get-the-authenticated-app).
route("GET", "/app", (req) => {
  const app = appFromJwt(bearer(req));
  return {
    tags: new Set(app ? [app.tag] : []),
    reply: () => (app ? [200, integration(app)] : [401, err("A JSON web token could not be decoded")]),
  };
});

// "List installations for the authenticated app"
// (https://docs.github.com/en/rest/apps/apps#list-installations-for-the-authenticated-app).
route("GET", "/app/installations", (req) => {
  const app = appFromJwt(bearer(req));
  return {
    tags: new Set(app ? [app.tag] : []),
    reply: () => {
      if (!app) return [401, err("A JSON web token could not be decoded")];
      const url = new URL(req.url, "http://127.0.0.1");
      const perPage = Math.min(Number(url.searchParams.get("per_page") ?? 30), 100);
      const page = Number(url.searchParams.get("page") ?? 1);
      const all = [...app.installations].map(([org, id]) => installationOf(app, org, id));
      return [200, all.slice((page - 1) * perPage, page * perPage)];
    },
  };
});

// "Suspend an app installation" / "Unsuspend an app installation": JWT auth,
// 204 (https://docs.github.com/en/rest/apps/apps#suspend-an-app-installation).
for (const [method, suspend] of [["PUT", true], ["DELETE", false]]) {
  route(method, "/app/installations/{installation_id}/suspended", (req, _body, [instId]) => {
    const app = appFromJwt(bearer(req));
    return {
      tags: new Set(app ? [app.tag] : []),
      reply: () => {
        if (!app) return [401, err("A JSON web token could not be decoded")];
        const inst = installations.get(Number(instId));
        if (!inst || inst.appId !== app.id) return [404, err("Not Found")];
        inst.suspendedAt = suspend ? (inst.suspendedAt ?? new Date().toISOString().replace(/\.\d{3}Z$/, "Z")) : null;
        return [204];
      },
    };
  });
}

function installationCaller(req, org) {
  const t = liveToken(bearer(req));
  if (!t || t.kind !== "installation") return null;
  const inst = installations.get(t.installation);
  return inst && inst.org === org ? { token: t, app: apps.get(inst.appId) } : null;
}

route("GET", "/orgs/{org}/personal-access-tokens", (req, _body, [org]) => {
  const o = orgPats.get(org);
  return {
    tags: new Set(o ? [o.tag] : []),
    reply: () => {
      if (!installationCaller(req, org)) return [403, err("Resource not accessible by integration")];
      const url = new URL(req.url, "http://x");
      const perPage = Number(url.searchParams.get("per_page") ?? 30);
      const page = Number(url.searchParams.get("page") ?? 1);
      return [200, (o?.grants ?? []).slice((page - 1) * perPage, page * perPage)];
    },
  };
});

route("POST", "/orgs/{org}/personal-access-tokens/{pat_id}", (req, body, [org, patId]) => {
  const o = orgPats.get(org);
  return {
    tags: new Set(o ? [o.tag] : []),
    reply: () => {
      const caller = installationCaller(req, org);
      if (!caller) return [403, err("Resource not accessible by integration")];
      if (!caller.app.canRevokePats) {
        return [403, err("Resource not accessible by integration")];
      }
      const grants = o?.grants ?? [];
      const i = grants.findIndex((g) => String(g.id) === patId);
      if (i < 0) return [404, err("Not Found")];
      if (body?.action !== "revoke") return [422, { message: "Validation Failed", documentation_url: DOCS }];
      grants.splice(i, 1);
      return [204];
    },
  };
});

// ---------------------------------------------------------------- secret scanning
// Alerts are planted through the admin port (POST /secret-scanning-alerts);
// cordon fetches them with its own token, as a `secret_scanning_alert`
// webhook carries no secret.

function alertBody(owner, repo, number, a, hideSecret) {
  const api = `https://api.github.com/repos/${owner}/${repo}/secret-scanning/alerts/${number}`;
  const body = {
    number,
    created_at: "2020-01-01T00:00:00Z",
    updated_at: "2020-01-01T00:00:00Z",
    url: api,
    html_url: `https://github.com/${owner}/${repo}/security/secret-scanning/${number}`,
    locations_url: `${api}/locations`,
    state: "open",
    resolution: null,
    resolved_at: null,
    resolved_by: null,
    resolution_comment: null,
    secret_type: a.secretType,
    secret_type_display_name: a.displayName,
    push_protection_bypassed: false,
    push_protection_bypassed_by: null,
    push_protection_bypassed_at: null,
    validity: "unknown",
    publicly_leaked: false,
    multi_repo: false,
    is_base64_encoded: false,
    has_more_locations: a.locations.length > 1,
  };
  if (!hideSecret) body.secret = a.secret;
  return body;
}

function locationBody(owner, repo, l) {
  const api = `https://api.github.com/repos/${owner}/${repo}`;
  return {
    type: "commit",
    details: {
      path: l.path,
      start_line: l.start_line,
      end_line: l.start_line,
      start_column: l.start_column ?? 1,
      end_column: l.end_column ?? 41,
      blob_sha: l.blob_sha,
      blob_url: `${api}/git/blobs/${l.blob_sha}`,
      commit_sha: l.commit_sha,
      commit_url: `${api}/git/commits/${l.commit_sha}`,
      html_url: `https://github.com/${owner}/${repo}/blob/${l.commit_sha}/${l.path}#L${l.start_line}`,
    },
  };
}

function alertRoute(suffix, answer) {
  route("GET", `/repos/{owner}/{repo}/secret-scanning/alerts/{alert_number}${suffix}`, (req, _body, [owner, repo, n]) => {
    const r = secretAlerts.get(`${owner}/${repo}`);
    return {
      tags: new Set(r ? [r.tag] : []),
      reply: () => {
        // cordon's own token, with `security_events` / secret scanning read access.
        if (!cordonCaller(req)) return [401, err("Requires authentication")];
        const a = r?.alerts.get(Number(n));
        if (!a) return [404, err("Not Found")];
        return answer(req, owner, repo, Number(n), a);
      },
    };
  });
}

alertRoute("", (req, owner, repo, n, a) => {
  const hide = new URL(req.url, "http://x").searchParams.get("hide_secret") === "true";
  return [200, alertBody(owner, repo, n, a, hide)];
});

alertRoute("/locations", (req, owner, repo, _n, a) => {
  const url = new URL(req.url, "http://x");
  const perPage = Number(url.searchParams.get("per_page") ?? 30);
  const page = Number(url.searchParams.get("page") ?? 1);
  const list = a.locations.map((l) => locationBody(owner, repo, l));
  return [200, list.slice((page - 1) * perPage, page * perPage)];
});

async function api(req, res) {
  const url = new URL(req.url, "http://127.0.0.1");
  const r = routes.find((x) => x.method === req.method && x.re.test(url.pathname));
  const text = await readBody(req);
  if (!r) return send(res, 404, err("Not Found"));
  let body = null;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      return send(res, 400, err("Problems parsing JSON"));
    }
  }
  const params = r.re.exec(url.pathname).slice(1).map(decodeURIComponent);
  const endpoint = `${r.method} ${r.template}`;
  const { tags, reply } = r.handler(req, body, params);
  count(tags, endpoint);
  const failure = takeFailure(tags, endpoint);
  if (failure && failure.rateLimitResetIn !== null) {
    // GitHub's answer when the primary rate limit is spent: 403 or 429 with
    // x-ratelimit-remaining: 0 and the reset time in epoch seconds
    // (https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api#exceeding-the-primary-rate-limit).
    const reset = Math.floor(Date.now() / 1000) + failure.rateLimitResetIn;
    return send(res, failure.status, err("API rate limit exceeded for 127.0.0.1."), {
      "x-ratelimit-limit": "60",
      "x-ratelimit-remaining": "0",
      "x-ratelimit-used": "60",
      "x-ratelimit-reset": String(reset),
      "x-ratelimit-resource": "core",
    });
  }
  if (failure) return send(res, failure.status, failureBody(failure.status));
  const [status, out, headers] = reply();
  return send(res, status, out, headers);
}

// ---------------------------------------------------------------- admin

async function admin(req, res) {
  const url = new URL(req.url, "http://127.0.0.1");
  const text = await readBody(req);
  let b = {};
  try {
    b = text ? JSON.parse(text) : {};
  } catch {
    return send(res, 400, { error: "body is not JSON" });
  }
  const need = (...keys) => {
    const missing = keys.filter((k) => b[k] === undefined || b[k] === null || b[k] === "");
    if (missing.length) throw new Error(`missing ${missing.join(", ")}`);
  };
  try {
    const p = url.pathname;
    if (req.method === "GET" && p === "/health") return send(res, 200, { ok: true });
    if (req.method === "POST" && p === "/tokens") {
      // { tag, token | tokens: [..], login, scopes?, kind?, client_id?, ghes_version? }
      // The kind follows GitHub's prefix unless given: ghr_ is a refresh
      // token, ghs_ (classic or stateless) an installation token.
      need("tag", "login");
      const list = Array.isArray(b.tokens) ? b.tokens : [b.token];
      if (!list.length || list.some((t) => typeof t !== "string" || !t)) throw new Error("missing token");
      const userId = newId();
      const kindOf = (t) => b.kind ?? (t.startsWith("ghr_") ? "refresh" : t.startsWith("ghs_") ? "installation" : "token");
      for (const token of list) {
        tokens.set(token, {
          tag: b.tag,
          login: b.login,
          userId,
          scopes: b.scopes ?? [],
          kind: kindOf(token),
          revoked: false,
          clientId: b.client_id ?? null,
          ghesVersion: b.ghes_version ?? null,
        });
      }
      return send(res, 201, { seeded: list.length });
    }
    if (req.method === "POST" && p === "/oauth-apps") {
      need("tag", "client_id", "client_secret");
      oauthApps.set(b.client_id, { tag: b.tag, secret: b.client_secret });
      return send(res, 201, {});
    }
    if (req.method === "POST" && p === "/apps") {
      // { tag, org, can_revoke_pats? } -> { app_id, installation_id, private_key_pem }
      need("tag", "org");
      const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
      const id = String(newId());
      const installationId = newId();
      apps.set(id, {
        id,
        tag: b.tag,
        publicKey,
        installations: new Map([[b.org, installationId]]),
        canRevokePats: b.can_revoke_pats !== false,
        slug: b.slug ?? `app-${id}`,
        owner: b.owner ?? b.org,
      });
      installations.set(installationId, { appId: id, org: b.org, suspendedAt: null });
      // More accounts the App is installed on.
      for (const org of b.more_orgs ?? []) {
        const more = newId();
        apps.get(id).installations.set(org, more);
        installations.set(more, { appId: id, org, suspendedAt: null });
      }
      if (!orgPats.has(b.org)) orgPats.set(b.org, { tag: b.tag, grants: [] });
      return send(res, 201, {
        app_id: Number(id),
        installation_id: installationId,
        private_key_pem: privateKey.export({ type: "pkcs1", format: "pem" }),
      });
    }
    const delKey = p.match(/^\/apps\/(\d+)\/delete-key$/);
    if (req.method === "POST" && delKey) {
      // The App's owner deletes its private key in the App's settings (no API
      // does it): JWTs signed with it are refused from now on.
      const app = apps.get(delKey[1]);
      if (!app) return send(res, 404, { error: "no such app" });
      app.publicKey = null;
      return send(res, 200, {});
    }
    if (req.method === "GET" && p === "/installations") {
      // ?app_id= -> [{ id, org, suspended_at }]
      const app = apps.get(url.searchParams.get("app_id") ?? "");
      if (!app) return send(res, 404, { error: "no such app" });
      return send(res, 200, [...app.installations].map(([org, id]) => ({ id, org, suspended_at: installations.get(id)?.suspendedAt ?? null })));
    }
    if (req.method === "POST" && p === "/org-pats") {
      // { tag, org, owner } -> { id }
      need("tag", "org", "owner");
      const o = orgPats.get(b.org) ?? { tag: b.tag, grants: [] };
      orgPats.set(b.org, o);
      const id = newId();
      o.grants.push({
        id,
        owner: simpleUser(b.owner, newId()),
        repository_selection: "all",
        repositories_url: `https://api.github.com/organizations/77/personal-access-token/${id}/repositories`,
        permissions: { organization: { members: "read" } },
        access_granted_at: "2020-01-01T00:00:00Z",
        token_id: id * 3,
        token_name: "leaked token",
        token_expired: false,
        token_expires_at: null,
        token_last_used_at: null,
      });
      return send(res, 201, { id });
    }
    if (req.method === "POST" && p === "/deploy-keys") {
      // { tag, owner, repo, key, title? } -> { id, fingerprint }
      need("tag", "owner", "repo", "key");
      const name = `${b.owner}/${b.repo}`;
      const r = repos.get(name) ?? { tag: b.tag, keys: [] };
      repos.set(name, r);
      const id = newId();
      r.keys.push({
        id,
        key: b.key,
        url: `https://api.github.com/repos/${name}/keys/${id}`,
        title: b.title ?? "deploy key",
        verified: true,
        created_at: "2020-01-01T00:00:00Z",
        read_only: true,
        added_by: "octocat",
        last_used: null,
        enabled: true,
      });
      return send(res, 201, { id, fingerprint: sshFingerprint(b.key) });
    }
    if (req.method === "POST" && p === "/audit-orgs") {
      // { tag, org, owners: [login] }: an organisation on GitHub Enterprise
      // Cloud, whose audit log its owners can read.
      need("tag", "org", "owners");
      auditOrgs.set(b.org, { tag: b.tag, owners: new Set(b.owners), events: [] });
      return send(res, 201, {});
    }
    if (req.method === "POST" && p === "/secret-scanning-alerts") {
      // { tag, owner, repo, secret, secret_type, display_name?, locations: [{ path, start_line, commit_sha, blob_sha? }] } -> { number }
      need("tag", "owner", "repo", "secret", "secret_type");
      const name = `${b.owner}/${b.repo}`;
      const r = secretAlerts.get(name) ?? { tag: b.tag, alerts: new Map() };
      secretAlerts.set(name, r);
      const number = r.alerts.size + 1;
      const locations = (b.locations ?? []).map((l) => {
        if (!l.path || !Number.isInteger(l.start_line) || !/^[0-9a-f]{40}$/.test(l.commit_sha ?? "")) {
          throw new Error("each location needs path, integer start_line and a 40-hex commit_sha");
        }
        return { ...l, blob_sha: l.blob_sha ?? createHash("sha1").update(l.path).digest("hex") };
      });
      r.alerts.set(number, {
        secret: b.secret,
        secretType: b.secret_type,
        displayName: b.display_name ?? b.secret_type,
        locations,
      });
      return send(res, 201, { number });
    }
    if (req.method === "POST" && p === "/fail") {
      // { tag, count, status, endpoint?, rate_limit_reset_in? }: the next `count` requests
      // involving `tag` get `status`; with rate_limit_reset_in (seconds), GitHub's
      // rate-limit answer and headers.
      need("tag", "count", "status");
      const list = failures.get(b.tag) ?? [];
      list.push({
        status: b.status,
        remaining: b.count,
        endpoint: b.endpoint ?? null,
        rateLimitResetIn: Number.isFinite(b.rate_limit_reset_in) ? b.rate_limit_reset_in : null,
      });
      failures.set(b.tag, list);
      return send(res, 201, {});
    }
    if (req.method === "POST" && p === "/revoke-delay") {
      need("tag", "ms");
      revokeDelay.set(b.tag, b.ms);
      return send(res, 201, {});
    }
    if (req.method === "GET" && p === "/counts") {
      const tag = url.searchParams.get("tag");
      if (!tag) return send(res, 400, { error: "missing ?tag=" });
      return send(res, 200, counts.get(tag) ?? {});
    }
    if (req.method === "GET" && p === "/deploy-keys") {
      const r = repos.get(`${url.searchParams.get("owner")}/${url.searchParams.get("repo")}`);
      return send(res, 200, r ? r.keys.map((k) => ({ id: k.id, fingerprint: sshFingerprint(k.key) })) : []);
    }
    return send(res, 404, { error: `no admin route ${req.method} ${p}` });
  } catch (e) {
    return send(res, 400, { error: String(e.message ?? e) });
  }
}

// ---------------------------------------------------------------- main

function listen(handler, port) {
  return new Promise((resolve, reject) => {
    const s = createServer((req, res) => {
      handler(req, res).catch((e) => {
        process.stderr.write(`registry: ${e?.stack ?? e}\n`);
        if (!res.headersSent) send(res, 500, err("registry failure"));
      });
    });
    s.on("error", reject);
    s.listen(port, "127.0.0.1", () => resolve(s.address().port));
  });
}

const apiPort = await listen(api, Number(process.env.REGISTRY_API_PORT ?? 0));
const adminPort = await listen(admin, Number(process.env.REGISTRY_ADMIN_PORT ?? 0));
// One line the start script parses; nothing secret in it.
process.stdout.write(`REGISTRY_API_PORT=${apiPort} REGISTRY_ADMIN_PORT=${adminPort}\n`);
