//! Deny reasons and the messages of issue 21 item 13, through the binary:
//! a dry run a step would be denied in exits 3, an automation secret that
//! does not match is a note on stderr and in `--json` that calls it a
//! secret, and a foreign-owned state file is called a file.

use crate::support::Env;

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "not one JSON document on stdout ({e}):\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn forbid_everything(env: &Env) {
    let cedar = env.home.join("policy/authority.cedar");
    let mut text = std::fs::read_to_string(&cedar).unwrap();
    text.push_str("\n@id(\"drill-forbid-all\")\nforbid(principal, action, resource);\n");
    std::fs::write(&cedar, text).unwrap();
}

const ORG_PAT: [&str; 7] = [
    "revoke",
    "github-org-pat",
    "--org",
    "acme",
    "--pat-id",
    "7",
    "--dry-run",
];

/// Issue 21 item 13: a dry run whose steps would be denied exited 0.
#[test]
fn a_dry_run_whose_step_would_be_denied_exits_3_and_names_the_reason() {
    let env = Env::new();
    // Without the forbid the step would wait for a person (the requester is
    // a claim): exit 0, worded as a wait.
    let o = env.run(&[&ORG_PAT[..], &["--as", "amara"]].concat());
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("s1: would wait for a person: "), "{text}");

    forbid_everything(&env);
    let o = env.run(&[&ORG_PAT[..], &["--as", "amara"]].concat());
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("s1: would be denied: forbidden by `drill-forbid-all`"),
        "{text}"
    );
    assert!(text.contains("dry run: nothing was done"), "{text}");

    // `--json`: the same exit, and each reason with its stable code.
    let o = env.run(&[&["--json"][..], &ORG_PAT[..], &["--as", "amara"]].concat());
    assert_eq!(o.status.code(), Some(3));
    let v = json(&o);
    let reasons = v["decisions"][0]["decision"]["reasons"].as_array().unwrap();
    let codes: Vec<&str> = reasons.iter().filter_map(|r| r["code"].as_str()).collect();
    assert!(codes.contains(&"forbidden"), "{codes:?}");
    assert!(codes.contains(&"forbid-is-final"), "{codes:?}");
    let forbidden = reasons.iter().find(|r| r["code"] == "forbidden").unwrap();
    assert_eq!(forbidden["policy"], "drill-forbid-all");
    assert!(
        env.records().iter().all(|r| r["kind"] != "intent"),
        "a dry run acted"
    );
}

/// Issue 21 item 13: the secret-mismatch note went to stdout, was missing
/// with `--json` and called the automation secret "a signature".
#[test]
fn an_automation_secret_that_does_not_match_is_a_note_on_stderr_and_in_json_called_a_secret() {
    let env = Env::new();
    let out = env.ok(&["--json", "plan", "test", "mismatch-item", "--as", "ci"]);
    let id = serde_json::from_str::<serde_json::Value>(&out).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let o = env
        .cmd()
        .env("CORDON_CI_SECRET", "not-the-configured-secret")
        .args(["--json", "apply", &id, "--as", "ci"])
        .output()
        .unwrap();
    let v = json(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("note: the automation secret does not count (secret-mismatch)"),
        "{err}"
    );
    assert!(!err.contains("a signature does not count"), "{err}");
    let notes: Vec<&str> = v["notes"]
        .as_array()
        .unwrap_or_else(|| panic!("no notes in {v:#}"))
        .iter()
        .filter_map(|n| n.as_str())
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("the automation secret does not count (secret-mismatch)")),
        "{notes:?}"
    );
    assert_eq!(v["requester_verified"], false);
    // Without --json the note is on stderr only.
    let o = env
        .cmd()
        .env("CORDON_CI_SECRET", "not-the-configured-secret")
        .args(["apply", &id, "--as", "ci"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&o.stdout).contains("does not count"));
    assert!(String::from_utf8_lossy(&o.stderr).contains("(secret-mismatch)"));
}

/// Issue 21 item 13: a foreign-owned file was called a "state directory" and
/// got a `chown -R` hint. `chown` needs root, as CI runs.
#[test]
fn a_foreign_owned_state_file_is_called_a_file_with_a_file_fix() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new();
    let id = env.plan_test(&["file-item"], &[]);
    let me = std::fs::metadata(&env.home).unwrap().uid();
    let log = env.home.join("audit.log");
    std::os::unix::fs::chown(&log, Some(65534), None)
        .unwrap_or_else(|e| panic!("chown needs root (CI runs as root): {e}"));
    let o = env.run(&["apply", &id]);
    std::os::unix::fs::chown(&log, Some(me), None).unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("state file `"), "{err}");
    assert!(!err.contains("state directory"), "{err}");
    assert!(err.contains("chown ") && !err.contains("chown -R"), "{err}");
    // The directory keeps the directory's words and fix.
    std::os::unix::fs::chown(&env.home, Some(65534), None).unwrap();
    let o = env.run(&["apply", &id]);
    std::os::unix::fs::chown(&env.home, Some(me), None).unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("state directory `") && err.contains("chown -R"),
        "{err}"
    );
    assert!(env.items().get("file-item").is_none());
}
