//! Secret canaries of every format through every input path, then every
//! place a secret could land is searched for the secret part (never the
//! public prefix): stdout, stderr, the whole state dir (audit log, plans,
//! evidence, agent inbox and done records), the files created in a private
//! TMPDIR, with RUST_BACKTRACE=1 so that any panic output is searched too.
//!
//! Inputs: `classify` (stdin), `revoke github-token --stdin` and `--env`,
//! `revoke aws-key --secret-env`, `apply --secrets-stdin` and
//! `--secret-env`, `respond --report` for every report format (the fixtures
//! with their canaries replaced by fresh ones; detect-secrets keeps only
//! hashes and re-reads the scanned files, so it runs on the fixture canaries),
//! and the agent's webhook path (an alert fetched from the API, a payload
//! carrying a secret where none belongs, and a malformed one).

use std::path::{Path, PathBuf};
use std::process::{Command as Std, Output};

use crate::agent::{http, sign, Agent};
use crate::peers::{aws_cmd, peer};
use crate::support::{all_files, env_with_signer, Env};

use super::{plant_token, seed_keys};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/reports");
/// The fixtures' own canaries (tests/fixtures/reports/README.md), replaced below.
const FIX_GHP: &str = "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";
const FIX_GHP_BAD: &str = "ghp_v9qIEiUBItsW3eHWss4aVA0Op2Hqna15pyhA";
const FIX_GHP2: &str = "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";
const FIX_AWS1: &str = "CordonCanarySecret/DoNotUse/0123456789ab";
const FIX_AWS2: &str = "CordonCanarySecret/DoNotUse/Second000000";

struct Canaries {
    /// (label, full value, the secret part searched for)
    all: Vec<(String, String, String)>,
}

impl Canaries {
    fn new(run: &str) -> Canaries {
        let mut all = Vec::new();
        for p in ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"] {
            let t = cordon::intake::classify::make_classic_token(p, &format!("{run}-{p}"));
            all.push((p.to_owned(), t.clone(), t[4..].to_owned()));
        }
        let g = cordon::intake::classify::make_classic_token("ghp_", &format!("{run}-bad"));
        let last = if g.ends_with('Q') { 'R' } else { 'Q' };
        let bad = format!("{}{last}", &g[..g.len() - 1]);
        all.push(("invalid-checksum".into(), bad.clone(), bad[4..].to_owned()));
        let a = cordon::intake::classify::make_classic_token("ghp_", &format!("{run}-pat-a"));
        let b = cordon::intake::classify::make_classic_token("ghp_", &format!("{run}-pat-b"));
        let c = cordon::intake::classify::make_classic_token("ghp_", &format!("{run}-pat-c"));
        let pat = format!("github_pat_{}_{}{}", &a[4..26], &b[4..40], &c[4..27]);
        all.push(("github_pat_".into(), pat.clone(), pat[11..].to_owned()));
        let s1 = format!("FireCanary{}", &a[4..34]);
        let s2 = format!("FireCanary{}", &b[4..34]);
        all.push(("aws-secret".into(), s1.clone(), s1));
        all.push(("aws-secret-2".into(), s2.clone(), s2));
        Canaries { all }
    }
    fn get(&self, label: &str) -> &str {
        &self.all.iter().find(|c| c.0 == label).unwrap().1
    }
    fn github(&self) -> Vec<&str> {
        self.all
            .iter()
            .filter(|c| {
                c.0.starts_with("gh") || c.0.starts_with("github_pat_") || c.0 == "invalid-checksum"
            })
            .map(|c| c.1.as_str())
            .collect()
    }
    /// A text with every canary, as a leaked .env file would hold them.
    fn text(&self) -> String {
        format!(
            "AWS_ACCESS_KEY_ID=AKIAFIRECANARY234567\nAWS_SECRET_ACCESS_KEY={}\n\n{}\n",
            self.get("aws-secret"),
            self.github()
                .iter()
                .enumerate()
                .map(|(i, t)| format!("TOKEN_{i}={t}"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    }
    /// The secret parts to search for, the fixtures' own included.
    fn needles(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .all
            .iter()
            .map(|c| (c.0.clone(), c.2.clone()))
            .collect();
        for (l, f) in [
            ("fixture ghp", &FIX_GHP[4..]),
            ("fixture bad ghp", &FIX_GHP_BAD[4..]),
            ("fixture ghp 2", &FIX_GHP2[4..]),
            ("fixture aws", FIX_AWS1),
            ("fixture aws 2", FIX_AWS2),
        ] {
            v.push((l.into(), f.into()));
        }
        v
    }
}

struct Harness {
    env: Env,
    key: PathBuf,
    tmp: PathBuf,
    inputs: tempfile::TempDir,
    outputs: Vec<(String, Vec<u8>)>,
}

impl Harness {
    fn new() -> Harness {
        let (env, key) = env_with_signer();
        let tmp = env.dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        Harness {
            env,
            key,
            tmp,
            inputs: tempfile::tempdir().unwrap(),
            outputs: Vec::new(),
        }
    }

    /// A cordon command against moto and Prism with a private TMPDIR and
    /// backtraces on.
    fn cmd(&self) -> assert_cmd::Command {
        let mut c = aws_cmd(&self.env);
        c.env("CORDON_GITHUB_API_URL", peer("CORDON_TEST_GITHUB_URL"))
            .env("TMPDIR", &self.tmp)
            .env("RUST_BACKTRACE", "1")
            .env("RUST_LOG", "debug");
        c
    }

    fn keep(&mut self, what: &str, o: Output) -> Output {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("panicked"), "{what}: cordon panicked:\n{err}");
        assert!(o.status.code().is_some(), "{what}: killed by a signal");
        eprintln!("canary input `{what}`: exit {:?}", o.status.code());
        self.outputs
            .push((format!("{what} stdout"), o.stdout.clone()));
        self.outputs
            .push((format!("{what} stderr"), o.stderr.clone()));
        o
    }

    fn run(
        &mut self,
        what: &str,
        args: &[&str],
        stdin: Option<&str>,
        env: &[(&str, &str)],
    ) -> Output {
        let mut c = self.cmd();
        c.args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        if let Some(s) = stdin {
            c.write_stdin(s.as_bytes().to_vec());
        }
        let o = c.output().unwrap();
        self.keep(what, o)
    }

    fn input(&self, name: &str, body: &str) -> PathBuf {
        let p = self.inputs.path().join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    /// Zero hits for every needle in every output and every file under the
    /// test's directory (state dir, TMPDIR).
    fn search(&self, needles: &[(String, String)]) -> usize {
        let files = all_files(self.env.dir.path());
        for (label, n) in needles {
            for (what, bytes) in &self.outputs {
                assert!(
                    !String::from_utf8_lossy(bytes).contains(n.as_str()),
                    "{label} canary in {what}:\n{}",
                    String::from_utf8_lossy(bytes)
                );
            }
            for f in &files {
                let b = std::fs::read(f).unwrap_or_default();
                assert!(
                    !String::from_utf8_lossy(&b).contains(n.as_str()),
                    "{label} canary in {}",
                    f.display()
                );
            }
        }
        files.len()
    }
}

fn fixture_with(c: &Canaries, name: &str) -> String {
    let text = std::fs::read_to_string(Path::new(FIXTURES).join(name)).unwrap();
    let bad = c.get("invalid-checksum");
    text.replace(FIX_GHP_BAD, bad)
        .replace(FIX_GHP, c.get("ghp_"))
        .replace(FIX_GHP2, c.get("gho_"))
        .replace(FIX_AWS1, c.get("aws-secret"))
        .replace(FIX_AWS2, c.get("aws-secret-2"))
}

#[test]
fn fire_canaries_leave_no_trace_through_any_cli_input() {
    let run = format!("canary-{}", std::process::id());
    let c = Canaries::new(&run);
    let mut h = Harness::new();
    let key = h.key.to_str().unwrap().to_owned();
    let text = c.text();
    // The classic GitHub canaries are live tokens at the registry (the
    // invalid one is refused by cordon before any call; github_pat_ is
    // unknown to the registry, so the probe answers 401).
    for p in ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"] {
        let t = plant_token(p, &format!("{run}-{p}"), &format!("{run}-{p}"));
        assert_eq!(t, c.get(p));
    }
    // 1. classify.
    h.run("classify", &["--json", "classify"], Some(&text), &[]);
    h.run("classify text", &["classify"], Some(&text), &[]);
    // 2. revoke github-token, --stdin and --env, every GitHub format.
    for tok in c.github() {
        h.run(
            "revoke --stdin",
            &[
                "--json",
                "revoke",
                "github-token",
                "--stdin",
                "--dry-run",
                "--as",
                "amara",
                "--key",
                &key,
            ],
            Some(tok),
            &[],
        );
        h.run(
            "revoke --env",
            &[
                "--json",
                "revoke",
                "github-token",
                "--env",
                "LEAKED",
                "--as",
                "amara",
                "--key",
                &key,
            ],
            None,
            &[("LEAKED", tok)],
        );
    }
    // 3. revoke aws-key --secret-env: a real moto key (its secret is a
    // canary too) and an unknown key id with a canary secret.
    let (_, real_id, real_secret) = seed_keys(&run, 1).pop().unwrap();
    h.run(
        "revoke aws-key real",
        &[
            "--json",
            "revoke",
            "aws-key",
            &real_id,
            "--secret-env",
            "LEAKED",
            "--as",
            "amara",
            "--key",
            &key,
        ],
        None,
        &[("LEAKED", &real_secret)],
    );
    h.run(
        "revoke aws-key unknown",
        &[
            "--json",
            "revoke",
            "aws-key",
            "AKIAFIRECANARY234567",
            "--secret-env",
            "LEAKED",
            "--as",
            "amara",
            "--key",
            &key,
        ],
        None,
        &[("LEAKED", c.get("aws-secret"))],
    );
    // 4. apply --secrets-stdin / --secret-env on a planned GitHub revocation.
    let o = h.run(
        "plan for apply",
        &[
            "--json",
            "revoke",
            "github-token",
            "--env",
            "LEAKED",
            "--dry-run",
            "--as",
            "amara",
            "--key",
            &key,
        ],
        None,
        &[("LEAKED", c.get("ghr_"))],
    );
    let plan = serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    h.run(
        "apply --secrets-stdin",
        &["--json", "apply", &plan, "--secrets-stdin"],
        Some(&text),
        &[],
    );
    h.run(
        "apply --secret-env",
        &["--json", "apply", &plan, "--secret-env", "LEAKED"],
        None,
        &[("LEAKED", c.get("ghr_"))],
    );
    // 5. respond --report: plain text (file and stdin) and every fixture format.
    let plain = h.input("leaked.env", &text);
    h.run(
        "respond text",
        &[
            "--json",
            "respond",
            "--as",
            "ci",
            "--report",
            plain.to_str().unwrap(),
        ],
        None,
        &[],
    );
    h.run(
        "respond stdin",
        &["--json", "respond", "--as", "ci", "--report", "-"],
        Some(&text),
        &[],
    );
    let mut formats = 0;
    for f in std::fs::read_dir(FIXTURES).unwrap().flatten() {
        let name = f.file_name().to_string_lossy().into_owned();
        if f.path().is_dir() || name.ends_with(".md") || name == "detect-secrets.json" {
            continue;
        }
        let p = h.input(&name, &fixture_with(&c, &name));
        h.run(
            &format!("respond {name}"),
            &[
                "--json",
                "respond",
                "--as",
                "amara",
                "--key",
                &key,
                "--report",
                p.to_str().unwrap(),
            ],
            None,
            &[],
        );
        formats += 1;
    }
    let root = format!("{FIXTURES}/scanned");
    h.run(
        "respond detect-secrets",
        &[
            "--json",
            "respond",
            "--as",
            "ci",
            "--root",
            &root,
            "--report",
            &format!("{FIXTURES}/detect-secrets.json"),
        ],
        None,
        &[],
    );
    formats += 1;
    let mut needles = c.needles();
    needles.push(("moto secret".into(), real_secret.clone()));
    let files = h.search(&needles);
    eprintln!(
        "fire canaries: {} canaries, {} invocations, {formats} report formats, {files} files searched: zero hits",
        needles.len(),
        h.outputs.len() / 2
    );
}

#[test]
fn fire_canaries_leave_no_trace_through_the_agent() {
    let run = format!("canary-agent-{}", std::process::id());
    let c = Canaries::new(&run);
    let mut h = Harness::new();
    // An alert whose secret (a live token) the agent must fetch from the API.
    let reg = peer("CORDON_TEST_GITHUB_REGISTRY_URL");
    let agent_tok = plant_token("ghp_", &run, &format!("{run}-agent"));
    let leaked = plant_token("ghp_", &run, &format!("{run}-ghp_"));
    assert_eq!(leaked, c.get("ghp_"));
    let out = Std::new("curl")
        .args(["-fsS", "-X", "POST", &format!("{reg}/secret-scanning-alerts"), "-H", "content-type: application/json", "-d"])
        .arg(serde_json::json!({"tag": run, "owner": run, "repo": "app", "secret": leaked, "secret_type": "github_personal_access_token",
            "locations": [{"path": "ci/deploy.yml", "start_line": 3, "commit_sha": "6f1c0ffee6f1c0ffee6f1c0ffee6f1c0ffee6f1c"}]}).to_string())
        .output()
        .unwrap();
    assert!(out.status.success());
    let number = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["number"]
        .as_u64()
        .unwrap();
    let agent = Agent::start(
        &h.env,
        &[
            ("GITHUB_TOKEN", agent_tok.clone()),
            ("CORDON_GITHUB_API_URL", peer("CORDON_TEST_GITHUB_URL")),
            ("TMPDIR", h.tmp.to_string_lossy().into_owned()),
            ("RUST_BACKTRACE", "1".into()),
            ("RUST_LOG", "debug".into()),
        ],
    );
    let ev = ("X-GitHub-Event", "secret_scanning_alert");
    let post = |id: &str, body: &[u8]| {
        http(
            &agent.addr,
            "POST",
            "/github",
            &[
                ev,
                ("X-GitHub-Delivery", id),
                ("X-Hub-Signature-256", &sign(body)),
            ],
            body,
        )
    };
    let alert = serde_json::json!({"action": "created",
        "alert": {"number": number, "secret_type": "github_personal_access_token"},
        "repository": {"full_name": format!("{run}/app"), "name": "app", "owner": {"login": run}}});
    let (code, b1) = post("canary-1", alert.to_string().as_bytes());
    assert_eq!(code, 202, "{b1}");
    // A payload carrying secrets where GitHub never puts them.
    let mut carrying = alert.clone();
    carrying["alert"]["number"] = serde_json::json!(number + 1000);
    carrying["alert"]["secret"] = serde_json::json!(c.get("gho_"));
    carrying["sender"] = serde_json::json!({"login": c.get("aws-secret")});
    let (_, b2) = post("canary-2", carrying.to_string().as_bytes());
    // A malformed one with a secret in the field the error names.
    let malformed = serde_json::json!({"action": "created", "alert": {"number": c.get("ghu_")},
        "repository": {"full_name": c.get("github_pat_")}});
    let (code, b3) = post("canary-3", malformed.to_string().as_bytes());
    assert_eq!(code, 400, "{b3}");
    // EventBridge body with a secret in it, wrong token: refused, not echoed.
    let (_, b4) = http(
        &agent.addr,
        "POST",
        "/aws",
        &[("Authorization", &format!("Bearer {}", c.get("ghs_")))],
        format!("{{\"detail\":\"{}\"}}", c.get("aws-secret-2")).as_bytes(),
    );
    let t = std::time::Instant::now();
    while std::fs::read_dir(h.env.home.join("agent/done"))
        .map(|d| d.count())
        .unwrap_or(0)
        < 2
    {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(90),
            "the agent did not process both alerts"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (code, out, err) = agent.stop();
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // The fetched alert was acted on: the leaked token is dead.
    assert!(!super::token_live(&leaked), "{out}\n{err}");
    for (w, b) in [
        ("b1", b1),
        ("b2", b2),
        ("b3", b3),
        ("b4", b4),
        ("agent stdout", out),
        ("agent stderr", err),
    ] {
        h.outputs.push((w.into(), b.into_bytes()));
    }
    let mut needles = c.needles();
    needles.push(("agent's own token".into(), agent_tok[4..].to_owned()));
    let files = h.search(&needles);
    eprintln!("fire canaries through the agent: {files} files searched: zero hits");
}
