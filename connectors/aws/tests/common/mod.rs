//! Helpers for the tests against the moto peer (started by `scripts/test`, or by hand with
//! `eval "$(peers/moto/start | sed 's/^/export /')"`).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_iam::Client as IamClient;
use cordon_aws::{AwsConfig, AwsConnector};
use cordon_connector::{Action, PlanStep, Provider, Secret, Target};
use serde_json::Value;

pub fn env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: these tests need the moto peer; run `scripts/test` (which \
             starts it), or `peers/moto/install && eval \"$(peers/moto/start | sed 's/^/export /')\"`"
        ),
    }
}

pub fn endpoint() -> String {
    env("CORDON_TEST_AWS_ENDPOINT")
}

pub fn admin_secret() -> Secret {
    Secret::new(env("CORDON_TEST_AWS_SECRET_ACCESS_KEY"))
}

pub fn config_for(endpoint: &str) -> AwsConfig {
    AwsConfig {
        endpoint_url: Some(endpoint.to_owned()),
        region: "us-east-1".into(),
        // A 1 s margin on session cut-offs (30 s by default), so a test can show a session
        // issued after the cut-off working without waiting half a minute.
        cutoff_margin: Duration::from_secs(1),
        // Verification polls a credential that still works for up to a minute by
        // default; a test that expects "alive" should not wait that long.
        verify_deadline: Duration::from_secs(3),
        ..AwsConfig::default()
    }
}

pub async fn connector_with(config: AwsConfig) -> AwsConnector {
    AwsConnector::with_static_credentials(
        config,
        &env("CORDON_TEST_AWS_ACCESS_KEY_ID"),
        &admin_secret(),
    )
    .await
    .unwrap()
}

pub async fn connector() -> AwsConnector {
    connector_with(config_for(&endpoint())).await
}

/// Admin IAM client in the default account, for fixtures.
pub async fn admin_iam(conn: &AwsConnector) -> IamClient {
    conn.clients_for(None).await.unwrap().iam
}

/// A name no other test (or earlier run against the same moto) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

pub const ALLOW_ALL: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;

pub struct UserKey {
    pub key_id: String,
    pub secret: Secret,
}

/// An IAM user allowed everything, with `keys` access keys.
pub async fn user_with_keys(iam: &IamClient, name: &str, keys: usize) -> Vec<UserKey> {
    iam.create_user().user_name(name).send().await.unwrap();
    iam.put_user_policy()
        .user_name(name)
        .policy_name("app-allow-all")
        .policy_document(ALLOW_ALL)
        .send()
        .await
        .unwrap();
    let mut out = Vec::new();
    for _ in 0..keys {
        let k = iam
            .create_access_key()
            .user_name(name)
            .send()
            .await
            .unwrap();
        let k = k.access_key().unwrap();
        out.push(UserKey {
            key_id: k.access_key_id().to_owned(),
            secret: Secret::new(k.secret_access_key().to_owned()),
        });
    }
    out
}

pub fn aws_target(kind: &str, id: &str, account: Option<&str>) -> Target {
    let mut t = Target::new(Provider::Aws, kind, id);
    t.account = account.map(str::to_owned);
    t
}

pub fn step(action: Action, target: Target, params: &[(&str, Value)]) -> PlanStep {
    PlanStep {
        id: "s1".into(),
        action,
        target,
        secret: None,
        params: params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// Everything a test printed or got back, checked at the end for the leaked secret.
#[derive(Default)]
pub struct Canary {
    seen: Mutex<Vec<(String, String)>>,
}

impl Canary {
    pub fn note(&self, what: &str, text: impl Into<String>) {
        self.seen
            .lock()
            .unwrap()
            .push((what.to_owned(), text.into()));
    }

    pub fn debug(&self, what: &str, v: &impl std::fmt::Debug) {
        self.note(what, format!("{v:?}"));
    }

    /// Fails when `secret` occurs anywhere that was noted.
    pub fn assert_clean(&self, secret: &Secret) {
        let seen = self.seen.lock().unwrap();
        assert!(
            !seen.is_empty(),
            "the canary saw nothing: the test noted no output"
        );
        let pairs: Vec<(&str, &str)> = seen.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        cordon_connector::testkit::assert_no_canary(secret.expose(), &pairs).unwrap();
    }
}

/// `peers/faultproxy/proxy.py` in front of `upstream`, killed on drop.
pub struct FaultProxy {
    child: Child,
    pub endpoint: String,
}

impl FaultProxy {
    pub fn start(upstream: &str, args: &[&str]) -> FaultProxy {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../peers/faultproxy/proxy.py"
        );
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--listen-port", "0", "--upstream", upstream, "--quiet"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 must be on PATH to run peers/faultproxy/proxy.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("faultproxy printed `{line}` instead of its port")
        });
        FaultProxy {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    pub async fn stats(&self) -> Value {
        let ep = self.endpoint.clone();
        tokio::task::spawn_blocking(move || {
            let addr = ep.trim_start_matches("http://");
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            use std::io::{Read, Write};
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            write!(
                s,
                "GET /__faultproxy/stats HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut buf = String::new();
            s.read_to_string(&mut buf).unwrap();
            let body = buf.split("\r\n\r\n").nth(1).unwrap_or("{}").to_owned();
            serde_json::from_str(&body).unwrap()
        })
        .await
        .unwrap()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
