#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The GitHub connector against its real peer: Prism (`prism proxy --errors`)
//! serving GitHub's official OpenAPI description, in front of the token
//! registry (`peers/github/registry.mjs`). Every request cordon sends and
//! every answer it gets is validated against GitHub's contract; a request
//! that breaks it gets 422 from Prism, which every test here turns into a
//! failure.
//!
//! Gaps between the peer and github.com, closed in the smallest way:
//! * Media type: cordon sends GitHub's documented `Accept:
//!   application/vnd.github+json`. `prism mock` answers that with 406 (the
//!   description lists only `application/json` responses); `prism proxy`
//!   forwards it unchanged and validates the registry's `application/json`
//!   answer, which is also the content type github.com answers with. So the
//!   peer runs as a proxy, and cordon sends exactly what it sends to GitHub.
//! * State and authentication: Prism is stateless and checks no credentials.
//!   The registry behind it holds seeded tokens and answers 401 for revoked or
//!   unknown ones, 403 to an authenticated `POST /credentials/revoke`, 202 to
//!   revocation (applied after an optional delay, as GitHub revokes
//!   asynchronously), and verifies GitHub App JWTs (RS256) with the app's key.
//!   It also serves secret scanning alerts planted through its admin port
//!   (`POST /secret-scanning-alerts`), answering cordon's own token only.
//! * Statuses GitHub sends but its description omits (401 on
//!   `DELETE /installation/token`, 404 on the OAuth token endpoints, 5xx
//!   anywhere) pass Prism with a warning, as they reach cordon from GitHub.
//!
//! Tests share one peer and run in parallel: each uses its own tag, tokens,
//! organisation and repository, and reads only its own counters.
//!
//! Run with `scripts/test` (which starts the peers), or by hand:
//! `peers/github/install && eval "$(peers/github/start)"` and export the two
//! printed variables.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use cordon_connector::testkit::{assert_no_canary, check_contain_cycle};
use cordon_connector::{
    Action, Connector, ErrorClass, Outcome, PlanStep, Provider, Secret, StepContext, Target,
    Verification,
};
use cordon_github::{
    AppCredentials, CordonCredentials, GithubConfig, GithubConnector, OauthClient,
    REVOKE_BATCH_LIMIT,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

// ------------------------------------------------------------------ peer

fn env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: these tests need the GitHub peer (Prism + token registry). Run \
             `scripts/test`, which installs and starts the peers, or `peers/github/install` and \
             `peers/github/start` and export what it prints"
        ),
    }
}

fn prism_url() -> String {
    env("CORDON_TEST_GITHUB_URL")
}

/// The registry's admin port: seeding and counters, never through Prism.
struct Registry {
    client: octocrab::Octocrab,
}

impl Registry {
    fn new() -> Self {
        let client = octocrab::Octocrab::builder()
            .base_uri(env("CORDON_TEST_GITHUB_REGISTRY_URL"))
            .unwrap()
            .build()
            .unwrap();
        Registry { client }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let resp = match method {
            "GET" => self.client._get(path).await.unwrap(),
            _ => self.client._post(path, body.as_ref()).await.unwrap(),
        };
        let status = resp.status();
        let text = self.client.body_to_string(resp).await.unwrap();
        assert!(
            status.is_success(),
            "registry {method} {path}: {status} {text}"
        );
        serde_json::from_str(&text).unwrap()
    }

    async fn seed_tokens(&self, tag: &str, login: &str, tokens: &[&Secret], extra: Value) {
        let mut body = json!({
            "tag": tag,
            "login": login,
            "scopes": ["repo", "read:org"],
            "tokens": tokens.iter().map(|t| t.expose()).collect::<Vec<_>>(),
        });
        if let Value::Object(m) = extra {
            for (k, v) in m {
                body[k] = v;
            }
        }
        self.call("POST", "/tokens", Some(body)).await;
    }

    async fn fail_next(&self, tag: &str, count: u32, status: u16, endpoint: Option<&str>) {
        self.call(
            "POST",
            "/fail",
            Some(json!({"tag": tag, "count": count, "status": status, "endpoint": endpoint})),
        )
        .await;
    }

    async fn counts(&self, tag: &str) -> BTreeMap<String, u64> {
        let v = self.call("GET", &format!("/counts?tag={tag}"), None).await;
        serde_json::from_value(v).unwrap()
    }

    async fn count(&self, tag: &str, endpoint: &str) -> u64 {
        self.counts(tag).await.get(endpoint).copied().unwrap_or(0)
    }
}

// ------------------------------------------------------------------ canaries

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique(label: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let h = Sha256::digest(format!("{label}/{}/{t}/{n}", std::process::id()));
    format!("{label}{}", hex(&h[..5]))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn base62(mut n: u64, width: usize) -> String {
    let mut out = Vec::new();
    while n > 0 {
        out.push(BASE62[(n % 62) as usize]);
        n /= 62;
    }
    while out.len() < width {
        out.push(b'0');
    }
    out.reverse();
    String::from_utf8(out).unwrap()
}

fn random_base62(len: usize) -> String {
    let seed = unique("seed");
    let mut out = String::new();
    let mut block = 0u64;
    while out.len() < len {
        let h = Sha256::digest(format!("{seed}/{block}"));
        for byte in h.iter() {
            if out.len() == len {
                break;
            }
            // Rejection sampling keeps the characters uniform.
            if (*byte as usize) < 62 * 4 {
                out.push(BASE62[(*byte as usize) % 62] as char);
            }
        }
        block += 1;
    }
    out
}

/// A canary that passes GitHub's token checksum: prefix, 30 random base62
/// characters, then base62(crc32(the 30 characters)) zero-padded to 6.
fn canary(prefix: &str) -> Secret {
    let random = random_base62(30);
    let crc = crc32fast::hash(random.as_bytes());
    Secret::new(format!("{prefix}{random}{}", base62(u64::from(crc), 6)))
}

/// A fine-grained token's shape: `github_pat_` + 22 + `_` + 59 characters.
fn fine_grained_canary() -> Secret {
    Secret::new(format!(
        "github_pat_{}_{}",
        random_base62(22),
        random_base62(59)
    ))
}

fn checksum_ok(token: &str) -> bool {
    let body = &token[token.find('_').unwrap() + 1..];
    let (random, check) = body.split_at(body.len() - 6);
    base62(u64::from(crc32fast::hash(random.as_bytes())), 6) == check
}

/// Every string a test saw, to be searched for canaries at the end.
#[derive(Default)]
struct Seen(Vec<(String, String)>);

impl Seen {
    fn add(&mut self, name: &str, text: impl Into<String>) {
        self.0.push((name.to_owned(), text.into()));
    }
    fn debug(&mut self, name: &str, v: &impl std::fmt::Debug) {
        self.add(name, format!("{v:?}"));
    }
    fn assert_clean(&self, secrets: &[&Secret]) {
        let hay: Vec<(&str, &str)> = self
            .0
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        for s in secrets {
            assert_no_canary(s.expose(), &hay).unwrap();
            // Not even a part may leak (e.g. a token with its prefix cut).
            let mid = s.expose().len() / 2;
            assert_no_canary(&s.expose()[mid - 8..mid + 8], &hay).unwrap();
        }
    }
}

// ------------------------------------------------------------------ helpers

struct Setup {
    connector: GithubConnector,
    budget_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn connector(probe: bool, creds: CordonCredentials) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let budget_file = dir.path().join("state").join("github-budget.json");
    let config = GithubConfig::new(&budget_file)
        .with_api_url(prism_url())
        .with_probe(probe)
        .with_verify(4, Duration::from_millis(50));
    Setup {
        connector: GithubConnector::new(config, creds).unwrap(),
        budget_file,
        _dir: dir,
    }
}

fn token_step(action: Action, kind: &str, secret: &Secret, params: Value) -> PlanStep {
    let fp = secret.fingerprint();
    PlanStep {
        id: "s1".into(),
        action,
        target: Target::new(Provider::Github, kind, fp.clone()),
        secret: Some(fp),
        params: serde_json::from_value(params).unwrap(),
    }
}

fn ctx<'a>(step: &'a PlanStep, secret: Option<&'a Secret>) -> StepContext<'a> {
    StepContext {
        plan_id: "plan-test",
        step,
        secret,
        evidence: None,
        observed: None,
    }
}

/// An ssh-ed25519 public key line with random key bytes.
fn ed25519_public_key() -> String {
    let mut blob = Vec::new();
    blob.extend_from_slice(&11u32.to_be_bytes());
    blob.extend_from_slice(b"ssh-ed25519");
    blob.extend_from_slice(&32u32.to_be_bytes());
    blob.extend_from_slice(&Sha256::digest(unique("key")));
    format!(
        "ssh-ed25519 {} deploy@ci",
        base64::engine::general_purpose::STANDARD.encode(blob)
    )
}

// ------------------------------------------------------------------ tests

#[test]
fn canaries_pass_githubs_checksum_and_are_unique() {
    let a = canary("ghp_");
    let b = canary("ghp_");
    assert_eq!(a.expose().len(), 40);
    assert!(checksum_ok(a.expose()) && checksum_ok(b.expose()));
    assert_ne!(a.expose(), b.expose());
    // One changed character breaks the checksum.
    let mut broken = a.expose().to_owned();
    let c = if broken.as_bytes()[10] == b'a' {
        "b"
    } else {
        "a"
    };
    broken.replace_range(10..11, c);
    assert!(!checksum_ok(&broken));
}

#[tokio::test]
async fn peer_rejects_requests_that_break_githubs_contract() {
    // Guards the peer itself: if Prism stopped validating (or the registry
    // were reached directly), the registry would accept this empty list.
    let client = octocrab::Octocrab::builder()
        .base_uri(prism_url())
        .unwrap()
        .build()
        .unwrap();
    let resp = client
        ._post("/credentials/revoke", Some(&json!({"credentials": []})))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 422);
    let body = client.body_to_string(resp).await.unwrap();
    assert!(body.contains("minItems"), "{body}");
}

#[tokio::test]
async fn revoke_token_contain_cycle_with_probing() {
    let reg = Registry::new();
    let tag = unique("cycle");
    let token = canary("ghp_");
    reg.seed_tokens(&tag, "octocat", &[&token], json!({})).await;
    let s = connector(true, CordonCredentials::default());
    let step = token_step(Action::GithubRevokeToken, "token", &token, json!({}));
    let c = ctx(&step, Some(&token));
    let mut seen = Seen::default();

    let before = s.connector.describe(&c).await.unwrap();
    seen.add("evidence", before.evidence.to_string());
    assert!(!before.contained);
    assert_eq!(before.evidence["fingerprint"], json!(token.fingerprint()));
    assert_eq!(before.evidence["owner"]["login"], json!("octocat"));
    assert_eq!(before.evidence["scopes"], json!(["repo", "read:org"]));
    assert_eq!(before.evidence["token_type"], json!("classic-pat"));

    check_contain_cycle(&s.connector, &c).await.unwrap();
    let after = s.connector.describe(&c).await.unwrap();
    seen.add("evidence after", after.evidence.to_string());
    assert!(after.contained);

    // One revocation request: the second execute saw the token dead first.
    assert_eq!(reg.count(&tag, "POST /credentials/revoke").await, 1);
    let budget = std::fs::read_to_string(&s.budget_file).unwrap();
    seen.add("budget file", budget.clone());
    let recorded: Value = serde_json::from_str(&budget).unwrap();
    assert_eq!(recorded["requests"].as_array().unwrap().len(), 1);
    seen.debug("connector", &s.connector);
    seen.assert_clean(&[&token]);
}

#[tokio::test]
async fn execute_reports_done_pending_verification() {
    let reg = Registry::new();
    let tag = unique("done");
    let token = fine_grained_canary();
    reg.seed_tokens(&tag, "octocat", &[&token], json!({})).await;
    let s = connector(false, CordonCredentials::default());
    let step = token_step(Action::GithubRevokeToken, "token", &token, json!({}));
    let out = s
        .connector
        .execute(&ctx(&step, Some(&token)))
        .await
        .unwrap();
    match &out {
        Outcome::Done { detail } => assert!(detail.contains("verification decides"), "{detail}"),
        other => panic!("expected done, got {other:?}"),
    }
    let mut seen = Seen::default();
    seen.debug("outcome", &out);
    seen.assert_clean(&[&token]);
}

#[tokio::test]
async fn describe_without_probing_never_uses_the_token() {
    let reg = Registry::new();
    let tag = unique("noprobe");
    let token = canary("ghp_");
    reg.seed_tokens(&tag, "octocat", &[&token], json!({})).await;
    let s = connector(false, CordonCredentials::default());
    let step = token_step(Action::GithubRevokeToken, "token", &token, json!({}));
    let state = s
        .connector
        .describe(&ctx(&step, Some(&token)))
        .await
        .unwrap();
    assert!(!state.contained);
    assert_eq!(state.evidence["probed"], json!(false));
    assert_eq!(state.evidence["fingerprint"], json!(token.fingerprint()));
    assert!(state.evidence.get("owner").is_none());
    // Without the token (planning before it is supplied): evidence by fingerprint only.
    let state = s.connector.describe(&ctx(&step, None)).await.unwrap();
    assert!(!state.contained);
    assert_eq!(state.evidence["fingerprint"], json!(token.fingerprint()));
    assert_eq!(reg.count(&tag, "GET /user").await, 0);
}

#[tokio::test]
async fn a_plan_of_1500_tokens_makes_exactly_two_revocation_requests() {
    let reg = Registry::new();
    let tag = unique("bulk");
    let tokens: Vec<Secret> = (0..1500).map(|_| canary("ghp_")).collect();
    let refs: Vec<&Secret> = tokens.iter().collect();
    reg.seed_tokens(&tag, "bulk-owner", &refs, json!({})).await;
    let s = connector(false, CordonCredentials::default());
    assert_eq!(
        s.connector.batch_limit(Action::GithubRevokeToken),
        REVOKE_BATCH_LIMIT
    );
    assert_eq!(s.connector.batch_limit(Action::GithubDeleteDeployKey), 1);

    let steps: Vec<PlanStep> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut st = token_step(Action::GithubRevokeToken, "token", t, json!({}));
            st.id = format!("s{}", i + 1);
            st
        })
        .collect();
    let ctxs: Vec<StepContext<'_>> = steps
        .iter()
        .zip(&tokens)
        .map(|(st, t)| ctx(st, Some(t)))
        .collect();
    // As the engine does: batches of at most `batch_limit` steps.
    let mut results = Vec::new();
    for chunk in ctxs.chunks(s.connector.batch_limit(Action::GithubRevokeToken)) {
        results.extend(s.connector.execute_batch(chunk).await);
    }
    assert_eq!(results.len(), 1500);
    for r in &results {
        assert!(matches!(r, Ok(Outcome::Done { .. })), "{r:?}");
    }
    assert_eq!(reg.count(&tag, "POST /credentials/revoke").await, 2);

    // A single call with all 1,500 is split the same way.
    let more: Vec<Secret> = (0..1500).map(|_| canary("gho_")).collect();
    let tag2 = unique("bulk2");
    reg.seed_tokens(
        &tag2,
        "bulk-owner",
        &more.iter().collect::<Vec<_>>(),
        json!({}),
    )
    .await;
    let steps2: Vec<PlanStep> = more
        .iter()
        .map(|t| token_step(Action::GithubRevokeToken, "token", t, json!({})))
        .collect();
    let ctxs2: Vec<StepContext<'_>> = steps2
        .iter()
        .zip(&more)
        .map(|(st, t)| ctx(st, Some(t)))
        .collect();
    let results2 = s.connector.execute_batch(&ctxs2).await;
    assert!(results2
        .iter()
        .all(|r| matches!(r, Ok(Outcome::Done { .. }))));
    assert_eq!(reg.count(&tag2, "POST /credentials/revoke").await, 2);

    // The first and the last token of the plan are dead. Verifying calls
    // GitHub with the token, which only a probe decision allows (issue 17).
    let verifier = connector(true, CordonCredentials::default());
    for i in [0, 1499] {
        let v = verifier.connector.verify(&ctxs[i]).await.unwrap();
        assert!(matches!(v, Verification::Dead { .. }), "{v:?}");
    }
    let budget = std::fs::read_to_string(&s.budget_file).unwrap();
    let recorded: Value = serde_json::from_str(&budget).unwrap();
    assert_eq!(recorded["requests"].as_array().unwrap().len(), 4);
    let mut seen = Seen::default();
    seen.add("budget", budget);
    seen.debug("results", &results);
    seen.assert_clean(&[&tokens[0], &tokens[1499], &more[0]]);
}

#[tokio::test]
async fn server_errors_are_retryable_and_refusals_permanent() {
    let reg = Registry::new();
    let tag = unique("errors");
    let token = canary("ghp_");
    reg.seed_tokens(&tag, "octocat", &[&token], json!({})).await;
    let s = connector(false, CordonCredentials::default());
    let step = token_step(Action::GithubRevokeToken, "token", &token, json!({}));
    let c = ctx(&step, Some(&token));
    let mut seen = Seen::default();

    reg.fail_next(&tag, 1, 503, Some("POST /credentials/revoke"))
        .await;
    let e = s.connector.execute(&c).await.unwrap_err();
    seen.debug("503", &e);
    assert_eq!(e.class, ErrorClass::Retryable, "{e:?}");
    assert!(e.message.contains("503"), "{}", e.message);

    reg.fail_next(&tag, 1, 422, Some("POST /credentials/revoke"))
        .await;
    let e = s.connector.execute(&c).await.unwrap_err();
    seen.debug("422", &e);
    assert_eq!(e.class, ErrorClass::Permanent, "{e:?}");
    assert!(
        e.message.contains("422") && e.message.contains("spammed"),
        "{}",
        e.message
    );

    reg.fail_next(&tag, 1, 403, Some("POST /credentials/revoke"))
        .await;
    let e = s.connector.execute(&c).await.unwrap_err();
    seen.debug("403", &e);
    assert_eq!(e.class, ErrorClass::Permanent, "{e:?}");
    assert!(
        e.message.contains("without authentication"),
        "{}",
        e.message
    );

    // The injected failures are spent: the next attempt goes through.
    assert!(matches!(
        s.connector.execute(&c).await,
        Ok(Outcome::Done { .. })
    ));
    assert_eq!(reg.count(&tag, "POST /credentials/revoke").await, 4);
    seen.assert_clean(&[&token]);
}

#[tokio::test]
async fn an_authenticated_revocation_call_is_refused_by_the_peer() {
    // cordon never authenticates this call; the peer enforces GitHub's rule so
    // that a regression (or a proxy adding credentials) would show.
    let reg = Registry::new();
    let tag = unique("authrevoke");
    let token = canary("ghp_");
    reg.seed_tokens(&tag, "octocat", &[&token], json!({})).await;
    let client = octocrab::Octocrab::builder()
        .base_uri(prism_url())
        .unwrap()
        .personal_token(token.expose().to_owned())
        .build()
        .unwrap();
    let resp = client
        ._post(
            "/credentials/revoke",
            Some(&json!({"credentials": [token.expose()]})),
        )
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
}

#[tokio::test]
async fn verify_waits_for_asynchronous_revocation() {
    let reg = Registry::new();
    let tag = unique("async");
    let token = canary("ghu_");
    reg.seed_tokens(&tag, "octocat", &[&token], json!({})).await;
    reg.call(
        "POST",
        "/revoke-delay",
        Some(json!({"tag": tag, "ms": 250})),
    )
    .await;
    // Verification uses the token: only with the probe decision (issue 17).
    let s = connector(true, CordonCredentials::default());
    let step = token_step(Action::GithubRevokeToken, "token", &token, json!({}));
    let c = ctx(&step, Some(&token));
    assert!(matches!(
        s.connector.execute(&c).await,
        Ok(Outcome::Done { .. })
    ));
    let v = s.connector.verify(&c).await.unwrap();
    assert!(matches!(v, Verification::Dead { .. }), "{v:?}");
    // Not on the first check: the loop waited for GitHub.
    assert!(reg.count(&tag, "GET /user").await >= 2);
}

#[tokio::test]
async fn verify_reports_not_verified_when_the_token_stays_alive() {
    let reg = Registry::new();
    let tag = unique("alive");
    let token = canary("ghp_");
    reg.seed_tokens(&tag, "octocat", &[&token], json!({})).await;
    // Verification uses the token: only with the probe decision (issue 17).
    let s = connector(true, CordonCredentials::default());
    let step = token_step(Action::GithubRevokeToken, "token", &token, json!({}));
    let started = Instant::now();
    let v = s.connector.verify(&ctx(&step, Some(&token))).await.unwrap();
    let elapsed = started.elapsed();
    match &v {
        Verification::NotVerified { detail } => {
            assert!(detail.contains("4 checks"), "{detail}")
        }
        other => panic!("expected not-verified, got {other:?}"),
    }
    // 4 attempts, pauses 50 + 100 + 200 ms.
    assert_eq!(reg.count(&tag, "GET /user").await, 4);
    assert!(elapsed >= Duration::from_millis(350), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    let mut seen = Seen::default();
    seen.debug("verification", &v);
    seen.assert_clean(&[&token]);
}

#[tokio::test]
async fn spent_budget_is_reported_with_what_else_can_be_done() {
    let reg = Registry::new();
    let tag = unique("budget");
    let token = canary("ghp_");
    reg.seed_tokens(&tag, "octocat", &[&token], json!({})).await;
    let s = connector(false, CordonCredentials::default());
    // 60 requests in the last hour, recorded by earlier cordon runs.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let oldest = now - 600;
    let mut requests = vec![oldest];
    requests.extend(std::iter::repeat_n(now - 5, 59));
    std::fs::create_dir_all(s.budget_file.parent().unwrap()).unwrap();
    std::fs::write(&s.budget_file, json!({ "requests": requests }).to_string()).unwrap();

    let status = s.connector.revocation_budget().unwrap();
    assert_eq!((status.used, status.remaining()), (60, 0));

    let step = token_step(Action::GithubRevokeToken, "token", &token, json!({}));
    let e = s
        .connector
        .execute(&ctx(&step, Some(&token)))
        .await
        .unwrap_err();
    let until = cordon_github::hhmm_utc(oldest + 3600);
    assert!(
        e.message.contains(&format!("wait until {until}")),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("github:revoke-installation-token"),
        "{}",
        e.message
    );
    // Each alternative named is reachable: a command exists for it (issue 17).
    assert!(
        e.message.contains("cordon revoke github-deploy-key"),
        "{}",
        e.message
    );
    assert_eq!(e.class, ErrorClass::Retryable);
    let wait = e.retry_after.unwrap();
    assert!(
        wait > Duration::from_secs(2900) && wait <= Duration::from_secs(3000),
        "{wait:?}"
    );
    // Nothing was sent.
    assert_eq!(reg.count(&tag, "POST /credentials/revoke").await, 0);
    let mut seen = Seen::default();
    seen.debug("error", &e);
    seen.add("budget", std::fs::read_to_string(&s.budget_file).unwrap());
    seen.assert_clean(&[&token]);
}

#[tokio::test]
async fn tokens_the_revocation_api_does_not_take_are_refused_without_a_request() {
    let s = connector(false, CordonCredentials::default());
    let ghs = canary("ghs_");
    let step = token_step(Action::GithubRevokeToken, "token", &ghs, json!({}));
    let e = s
        .connector
        .execute(&ctx(&step, Some(&ghs)))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Permanent);
    assert!(
        e.message.contains("github:revoke-installation-token"),
        "{}",
        e.message
    );
    // A token other than the one the plan names.
    let other = canary("ghp_");
    let e = s
        .connector
        .execute(&ctx(&step, Some(&other)))
        .await
        .unwrap_err();
    assert!(
        e.message.contains("does not match fingerprint"),
        "{}",
        e.message
    );
    // No token at all.
    let e = s.connector.execute(&ctx(&step, None)).await.unwrap_err();
    assert!(e.message.contains("needs the token"), "{}", e.message);
    let mut seen = Seen::default();
    seen.debug("error", &e);
    seen.assert_clean(&[&ghs, &other]);
}

/// A GitHub App in the registry: (app id, installation id, private key PEM).
async fn seed_app(
    reg: &Registry,
    tag: &str,
    org: &str,
    can_revoke_pats: bool,
) -> (u64, u64, Secret) {
    let v = reg
        .call(
            "POST",
            "/apps",
            Some(json!({"tag": tag, "org": org, "can_revoke_pats": can_revoke_pats})),
        )
        .await;
    (
        v["app_id"].as_u64().unwrap(),
        v["installation_id"].as_u64().unwrap(),
        Secret::new(v["private_key_pem"].as_str().unwrap().to_owned()),
    )
}

#[tokio::test]
async fn installation_token_contain_cycle() {
    let reg = Registry::new();
    let tag = unique("inst");
    let org = unique("org-");
    let (app_id, installation, pem) = seed_app(&reg, &tag, &org, true).await;
    // Mint a real installation token the way an app does (JWT → token), through Prism.
    let app = octocrab::Octocrab::builder()
        .base_uri(prism_url())
        .unwrap()
        .app(
            octocrab::models::AppId(app_id),
            octocrab::EncodingKey::from_rsa_pem(pem.expose().as_bytes()).unwrap(),
        )
        .build()
        .unwrap();
    let (_, minted) = app
        .installation_and_token(octocrab::models::InstallationId(installation))
        .await
        .unwrap();
    let token = Secret::new(octocrab::secrecy::ExposeSecret::expose_secret(&minted).to_owned());
    drop(minted);
    assert!(token.expose().starts_with("ghs_"));

    let s = connector(true, CordonCredentials::default());
    let step = token_step(
        Action::GithubRevokeInstallationToken,
        "installation-token",
        &token,
        json!({}),
    );
    let c = ctx(&step, Some(&token));
    check_contain_cycle(&s.connector, &c).await.unwrap();
    assert_eq!(reg.count(&tag, "DELETE /installation/token").await, 2);
    let state = s.connector.describe(&c).await.unwrap();
    let mut seen = Seen::default();
    seen.add("evidence", state.evidence.to_string());
    seen.assert_clean(&[&token, &pem]);
}

#[tokio::test]
async fn oauth_token_contain_cycle_and_whole_grant() {
    let reg = Registry::new();
    let tag = unique("oauth");
    let client_id = unique("Iv1.");
    let client_secret = Secret::new(unique("secret"));
    reg.call(
        "POST",
        "/oauth-apps",
        Some(json!({"tag": tag, "client_id": client_id, "client_secret": client_secret.expose()})),
    )
    .await;
    let token = canary("gho_");
    reg.seed_tokens(
        &tag,
        "oauth-user",
        &[&token],
        json!({"client_id": client_id}),
    )
    .await;
    let creds = || CordonCredentials {
        oauth: Some(OauthClient {
            client_id: client_id.clone(),
            client_secret: client_secret.duplicate(),
        }),
        ..CordonCredentials::default()
    };
    // Probing off: the app's token check does not use the token's privileges.
    let s = connector(false, creds());
    let step = token_step(
        Action::GithubRevokeOauthToken,
        "oauth-token",
        &token,
        json!({"client_id": client_id}),
    );
    let c = ctx(&step, Some(&token));
    let before = s.connector.describe(&c).await.unwrap();
    assert_eq!(before.evidence["owner"]["login"], json!("oauth-user"));
    let mut seen = Seen::default();
    seen.add("evidence", before.evidence.to_string());
    check_contain_cycle(&s.connector, &c).await.unwrap();
    assert_eq!(
        reg.count(&tag, "DELETE /applications/{client_id}/token")
            .await,
        1
    );

    // The grant: every token of the user's authorization dies with it.
    let t1 = canary("gho_");
    let t2 = canary("gho_");
    reg.seed_tokens(
        &tag,
        "grant-user",
        &[&t1, &t2],
        json!({"client_id": client_id}),
    )
    .await;
    let grant = token_step(
        Action::GithubRevokeOauthGrant,
        "oauth-token",
        &t1,
        json!({"client_id": client_id}),
    );
    let out = s.connector.execute(&ctx(&grant, Some(&t1))).await.unwrap();
    assert!(matches!(out, Outcome::Done { .. }), "{out:?}");
    let step2 = token_step(
        Action::GithubRevokeOauthGrant,
        "oauth-token",
        &t2,
        json!({"client_id": client_id}),
    );
    let v = s.connector.verify(&ctx(&step2, Some(&t2))).await.unwrap();
    assert!(matches!(v, Verification::Dead { .. }), "{v:?}");

    // Without the app's client credentials: a clear, permanent error.
    let bare = connector(false, CordonCredentials::default());
    let e = bare.connector.execute(&c).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Permanent);
    assert!(
        e.message.contains("CORDON_GITHUB_OAUTH_CLIENT_ID"),
        "{}",
        e.message
    );
    seen.debug("error", &e);
    seen.debug("connector", &s.connector);
    seen.assert_clean(&[&token, &t1, &t2, &client_secret]);
}

#[tokio::test]
async fn deploy_key_contain_cycle() {
    let reg = Registry::new();
    let tag = unique("dk");
    let owner = unique("owner-");
    let repo = "service";
    let cordon_token = canary("ghp_");
    reg.seed_tokens(&tag, "cordon-bot", &[&cordon_token], json!({}))
        .await;
    // A neighbour key that must survive.
    let keep = reg
        .call(
            "POST",
            "/deploy-keys",
            Some(json!({"tag": tag, "owner": owner, "repo": repo, "key": ed25519_public_key()})),
        )
        .await;
    let leaked = reg
        .call(
            "POST",
            "/deploy-keys",
            Some(json!({"tag": tag, "owner": owner, "repo": repo, "key": ed25519_public_key(), "title": "ci"})),
        )
        .await;
    let fingerprint = leaked["fingerprint"].as_str().unwrap().to_owned();

    let s = connector(
        false,
        CordonCredentials {
            token: Some(cordon_token.duplicate()),
            ..CordonCredentials::default()
        },
    );
    let step = PlanStep {
        id: "s1".into(),
        action: Action::GithubDeleteDeployKey,
        target: Target::new(Provider::Github, "deploy-key", fingerprint.clone()),
        secret: None,
        params: serde_json::from_value(
            json!({"owner": owner, "repo": repo, "fingerprint": fingerprint}),
        )
        .unwrap(),
    };
    let c = ctx(&step, None);
    let before = s.connector.describe(&c).await.unwrap();
    assert_eq!(before.evidence["key_id"], leaked["id"]);
    assert_eq!(before.evidence["title"], json!("ci"));
    check_contain_cycle(&s.connector, &c).await.unwrap();
    assert_eq!(
        reg.count(&tag, "DELETE /repos/{owner}/{repo}/keys/{key_id}")
            .await,
        1
    );
    let left = reg
        .call(
            "GET",
            &format!("/deploy-keys?owner={owner}&repo={repo}"),
            None,
        )
        .await;
    assert_eq!(
        left,
        json!([{"id": keep["id"], "fingerprint": keep["fingerprint"]}])
    );

    // Without cordon's token: permanent, and says what to set.
    let bare = connector(false, CordonCredentials::default());
    let e = bare.connector.describe(&c).await.unwrap_err();
    assert!(e.message.contains("GITHUB_TOKEN"), "{}", e.message);
    let mut seen = Seen::default();
    seen.add("evidence", before.evidence.to_string());
    seen.debug("connector", &s.connector);
    seen.assert_clean(&[&cordon_token]);
}

#[tokio::test]
async fn org_pat_access_contain_cycle_and_missing_permission() {
    let reg = Registry::new();
    let tag = unique("orgpat");
    let org = unique("org-");
    let (app_id, _, pem) = seed_app(&reg, &tag, &org, true).await;
    let grant = reg
        .call(
            "POST",
            "/org-pats",
            Some(json!({"tag": tag, "org": org, "owner": "pat-owner"})),
        )
        .await;
    let pat_id = grant["id"].as_u64().unwrap();
    let creds = |id: u64, pem: &Secret| CordonCredentials {
        app: Some(AppCredentials {
            app_id: id,
            private_key_pem: pem.duplicate(),
        }),
        ..CordonCredentials::default()
    };
    let s = connector(false, creds(app_id, &pem));
    let step = PlanStep {
        id: "s1".into(),
        action: Action::GithubRevokeOrgPatAccess,
        target: Target::new(Provider::Github, "org-pat", pat_id.to_string()),
        secret: None,
        params: serde_json::from_value(json!({"org": org, "pat_id": pat_id})).unwrap(),
    };
    let c = ctx(&step, None);
    let before = s.connector.describe(&c).await.unwrap();
    assert_eq!(before.evidence["owner"]["login"], json!("pat-owner"));
    check_contain_cycle(&s.connector, &c).await.unwrap();
    assert_eq!(
        reg.count(&tag, "POST /orgs/{org}/personal-access-tokens/{pat_id}")
            .await,
        1
    );
    assert!(
        reg.count(
            &tag,
            "POST /app/installations/{installation_id}/access_tokens"
        )
        .await
            >= 1
    );

    // An app installed without the permission: GitHub's 403, permanent, explained.
    let tag2 = unique("orgpat403");
    let org2 = unique("org-");
    let (app2, _, pem2) = seed_app(&reg, &tag2, &org2, false).await;
    let grant2 = reg
        .call(
            "POST",
            "/org-pats",
            Some(json!({"tag": tag2, "org": org2, "owner": "x"})),
        )
        .await;
    let s2 = connector(false, creds(app2, &pem2));
    let step2 = PlanStep {
        params: serde_json::from_value(json!({"org": org2, "pat_id": grant2["id"]})).unwrap(),
        ..step.clone()
    };
    let e = s2.connector.execute(&ctx(&step2, None)).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Permanent, "{e:?}");
    assert!(
        e.message.contains("403") && e.message.contains("permission"),
        "{}",
        e.message
    );

    // 5xx on the org endpoint: retryable.
    reg.fail_next(
        &tag2,
        1,
        502,
        Some("GET /orgs/{org}/personal-access-tokens"),
    )
    .await;
    let e = s2.connector.describe(&ctx(&step2, None)).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Retryable, "{e:?}");

    let mut seen = Seen::default();
    seen.add("evidence", before.evidence.to_string());
    seen.debug("connector", &s.connector);
    seen.debug("error", &e);
    seen.assert_clean(&[&pem, &pem2]);
}

#[tokio::test]
async fn secret_scanning_alert_is_fetched_with_its_secret_and_locations() {
    let reg = Registry::new();
    let tag = unique("ssa");
    let owner = unique("owner-");
    let repo = "app";
    let cordon_token = canary("ghp_");
    let leaked = canary("ghp_");
    reg.seed_tokens(&tag, "cordon-bot", &[&cordon_token], json!({}))
        .await;
    let commit = hex(&Sha256::digest(unique("commit"))[..20]);
    // 101 locations: the list is read across two pages of 100.
    let mut locations =
        vec![json!({"path": "deploy/config.env", "start_line": 4, "commit_sha": commit})];
    for i in 0..100 {
        locations.push(
            json!({"path": format!("copies/{i}.env"), "start_line": i + 1, "commit_sha": commit}),
        );
    }
    let planted = reg
        .call(
            "POST",
            "/secret-scanning-alerts",
            Some(json!({
                "tag": tag, "owner": owner, "repo": repo,
                "secret": leaked.expose(),
                "secret_type": "github_personal_access_token",
                "display_name": "GitHub Personal Access Token",
                "locations": locations,
            })),
        )
        .await;
    let number = planted["number"].as_u64().unwrap();

    let s = connector(
        false,
        CordonCredentials {
            token: Some(cordon_token.duplicate()),
            ..CordonCredentials::default()
        },
    );
    // Through Prism: request and both answers are checked against GitHub's description.
    let alert = s
        .connector
        .fetch_secret_scanning_alert(&owner, repo, number)
        .await
        .unwrap();
    assert_eq!(alert.secret.expose(), leaked.expose());
    assert_eq!(alert.secret_type, "github_personal_access_token");
    assert_eq!(alert.number, number);
    assert_eq!(
        alert.html_url.as_deref(),
        Some(
            format!("https://github.com/{owner}/{repo}/security/secret-scanning/{number}").as_str()
        )
    );
    assert_eq!(alert.locations.len(), 101);
    let first = &alert.locations[0];
    assert_eq!(first.kind, "commit");
    assert_eq!(first.path.as_deref(), Some("deploy/config.env"));
    assert_eq!(first.line, Some(4));
    assert_eq!(first.commit.as_deref(), Some(commit.as_str()));
    assert_eq!(alert.locations[100].path.as_deref(), Some("copies/99.env"));
    assert_eq!(
        reg.count(
            &tag,
            "GET /repos/{owner}/{repo}/secret-scanning/alerts/{alert_number}"
        )
        .await,
        1
    );
    assert_eq!(
        reg.count(
            &tag,
            "GET /repos/{owner}/{repo}/secret-scanning/alerts/{alert_number}/locations"
        )
        .await,
        2
    );

    // An alert that does not exist: permanent, names it.
    let e = s
        .connector
        .fetch_secret_scanning_alert(&owner, repo, number + 50)
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Permanent, "{}", e.message);
    assert!(e.message.contains("404"), "{}", e.message);
    // A path trick in the owner never reaches GitHub.
    let e = s
        .connector
        .fetch_secret_scanning_alert("../user", repo, number)
        .await
        .unwrap_err();
    assert!(
        e.message.contains("not a valid github owner"),
        "{}",
        e.message
    );
    // Without cordon's own token: says what to set.
    let bare = connector(false, CordonCredentials::default());
    let e = bare
        .connector
        .fetch_secret_scanning_alert(&owner, repo, number)
        .await
        .unwrap_err();
    assert!(e.message.contains("GITHUB_TOKEN"), "{}", e.message);
    // A server error is retryable.
    reg.fail_next(
        &tag,
        1,
        503,
        Some("GET /repos/{owner}/{repo}/secret-scanning/alerts/{alert_number}"),
    )
    .await;
    let e = s
        .connector
        .fetch_secret_scanning_alert(&owner, repo, number)
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Retryable, "{}", e.message);

    let mut seen = Seen::default();
    seen.debug("alert", &alert);
    seen.debug("connector", &s.connector);
    seen.assert_clean(&[&leaked, &cordon_token]);
}
