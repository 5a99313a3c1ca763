use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

pub struct Env {
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let e = Env { dir, home };
        e.ok(&["init"]);
        e
    }

    /// A cordon command with a clean environment pointed at this home.
    pub fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("cordon").unwrap();
        for (k, _) in std::env::vars() {
            if k.starts_with("CORDON_") || k == "RUST_LOG" {
                c.env_remove(k);
            }
        }
        // `CI` makes `respond` act as the `ci` principal: tests say so explicitly.
        c.env_remove("CI");
        // The shipped roster's published example secrets are refused outside
        // the demo switch; the tests use them (tests/runner/cli.rs checks the
        // refusal without it).
        c.env("CORDON_HOME", &self.home)
            .env("NO_COLOR", "1")
            .env("CORDON_DEMO", "1");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "cordon {args:?} failed ({:?}):\n{}\n{}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Write a test-connector plan and return its id.
    pub fn plan_test(&self, items: &[&str], extra: &[&str]) -> String {
        let mut args = vec!["--json", "plan", "test"];
        args.extend_from_slice(items);
        args.extend_from_slice(&["--as", "amara"]);
        args.extend_from_slice(extra);
        let out = self.ok(&args);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["id"].as_str().unwrap().to_owned()
    }

    pub fn items(&self) -> serde_json::Value {
        let p = self.home.join("connectors/test-items.json");
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).unwrap(),
            Err(_) => serde_json::json!({}),
        }
    }

    pub fn records(&self) -> Vec<serde_json::Value> {
        let out = self.ok(&["--json", "log", "show"]);
        serde_json::from_str(&out).unwrap()
    }
}

/// Every file under `dir`, recursively.
pub fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p);
                }
            }
        }
    }
    out
}

/// Replace ids, hashes, times and paths so that snapshots are stable.
pub fn filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", "[TIME]"),
        (r"\b[0-9a-f]{64}\b", "[SHA256]"),
        (r"\b[0-9a-f]{16}\b", "[PLAN]"),
        (r"/tmp/[^\s`\x22]+", "[PATH]"),
        // Times to dead vary run to run.
        (r"\b\d+\.\d{2} s\b", "[DURATION]"),
    ]
}

/// A home with the shipped policy plus signing keys for `amara` (security,
/// incident commander) and `bruno` (security); returns amara's key path
/// (bruno's is beside it).
pub fn env_with_signer() -> (Env, std::path::PathBuf) {
    let env = Env::new();
    let key = env.dir.path().join("amara");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "amara", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    let bruno = env.dir.path().join("bruno");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "bruno", "-f"])
        .arg(&bruno)
        .status()
        .unwrap();
    assert!(st.success());
    let signers = env.home.join("policy/allowed_signers");
    let mut text = std::fs::read_to_string(&signers).unwrap();
    for (who, k) in [("amara", &key), ("bruno", &bruno)] {
        let public = std::fs::read_to_string(k.with_extension("pub")).unwrap();
        text.push_str(&format!("{who} namespaces=\"cordon-plan\" {public}"));
    }
    std::fs::write(&signers, text).unwrap();
    (env, key)
}
