//! CLI behaviour and output (insta snapshots, times, ids and paths filtered).

use crate::support::{all_files, filters, Env};

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    for (re, rep) in filters() {
        s.add_filter(re, rep);
    }
    s
}

#[test]
fn plan_apply_log_end_to_end_on_the_test_connector() {
    let env = Env::new();
    let id = env.plan_test(&["build-cache", "staging-db"], &["--reason", "drill"]);
    let shown = env.ok(&["plan", "show", &id]);
    // one step at a time, so that the log snapshot has a fixed order
    let applied = env.ok(&["apply", &id, "--concurrency", "1"]);
    let again = env.ok(&["apply", &id]);
    let log = env.ok(&["log", "show"]);
    let verify = env.ok(&["log", "verify"]);
    settings().bind(|| {
        insta::assert_snapshot!("plan_show", shown);
        insta::assert_snapshot!("apply_first", applied);
        insta::assert_snapshot!("apply_again", again);
        insta::assert_snapshot!("log_show", log);
        insta::assert_snapshot!("log_verify", verify);
    });
    let items = env.items();
    assert_eq!(items["build-cache"]["changes"], 1);
    assert_eq!(items["staging-db"]["changes"], 1);
}

#[test]
fn plans_are_immutable_an_edited_plan_is_refused() {
    let env = Env::new();
    let id = env.plan_test(&["x"], &[]);
    let path = env.home.join(format!("plans/{id}.json"));
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("\"x\"", "\"y\"")).unwrap();
    let o = env.run(&["apply", &id]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("was modified after it was written"), "{err}");
    assert!(env.items().get("y").is_none() && env.items().get("x").is_none());
}

#[test]
fn exit_codes_tell_denied_awaiting_approval_and_nothing_containable_apart() {
    let env = Env::new();
    // Restoring needs an approval from someone else: awaiting approval (5).
    let id = env.plan_test(&["r"], &["--restore"]);
    let o = env.run(&["apply", &id]);
    assert_eq!(
        o.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("awaiting approval"));
    // A policy that does not load denies everything (fail closed), and says
    // so with 9, policy invalid (issue 21: it was 3, denied, which the
    // README does not say).
    let o = env
        .cmd()
        .args(["apply", &id, "--as", "amara"])
        .env("CORDON_POLICY", env.dir.path().join("no-such-policy"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(9));
    // Nothing recognisable on stdin.
    let o = env
        .cmd()
        .arg("classify")
        .write_stdin("hello\nworld\n")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(6));
    // Usage.
    assert_eq!(env.run(&["apply"]).status.code(), Some(2));
}

#[test]
fn log_verify_exit_codes_for_tamper_and_torn_tail() {
    let env = Env::new();
    let id = env.plan_test(&["a", "b", "c"], &[]);
    env.ok(&["apply", &id]);
    let log = env.home.join("audit.log");
    let data = std::fs::read(&log).unwrap();
    // Flip one byte inside record 4.
    let starts: Vec<usize> = std::iter::once(0)
        .chain(
            data.iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        )
        .collect();
    let mut bad = data.clone();
    bad[starts[3] + 10] ^= 0x20;
    std::fs::write(&log, &bad).unwrap();
    let o = env.run(&["log", "verify"]);
    assert_eq!(o.status.code(), Some(7));
    assert!(String::from_utf8_lossy(&o.stdout).contains("TAMPERED at seq 4"));
    // Torn tail: a crash cuts short a record being appended after the last
    // checkpoint.
    let mut torn = data.clone();
    torn.extend_from_slice(&data[starts[3]..starts[3] + 40]);
    std::fs::write(&log, &torn).unwrap();
    let o = env.run(&["--json", "log", "verify"]);
    assert_eq!(o.status.code(), Some(8));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status"], "torn-tail");
}

#[test]
fn classify_and_revoke_never_echo_a_canary_secret() {
    let env = Env::new();
    let canary_gh = "ghp_CANARYxCANARYxCANARYxCANARYx";
    // complete the canary with a correct checksum
    let tok = cordon::intake::classify::make_classic_token("ghp_", canary_gh);
    let aws = "AKIAIOSFODNN7CANARY7 wJalrXUtnFEMI/K7MDENG/bPxRfiCANARYCANARY";
    let input = format!("{tok}\n{aws}\n");
    let o = env
        .cmd()
        .args(["classify"])
        .write_stdin(input.clone())
        .output()
        .unwrap();
    assert!(o.status.success());
    let o2 = env
        .cmd()
        .args(["--json", "classify"])
        .write_stdin(input)
        .output()
        .unwrap();
    // revoke with no GitHub peer configured: it must fail cleanly, still without echo
    let o3 = env
        .cmd()
        .args(["revoke", "github-token", "--env", "LEAK", "--as", "amara"])
        .env("LEAK", &tok)
        .env("CORDON_GITHUB_API_URL", "http://127.0.0.1:9")
        .output()
        .unwrap();
    let secret_part = &tok[4..];
    for (name, bytes) in [
        ("stdout", &o.stdout),
        ("stderr", &o.stderr),
        ("json stdout", &o2.stdout),
        ("revoke stdout", &o3.stdout),
        ("revoke stderr", &o3.stderr),
    ] {
        let s = String::from_utf8_lossy(bytes);
        assert!(!s.contains(secret_part), "canary in {name}: {s}");
        assert!(!s.contains("CANARYCANARY"), "aws canary in {name}");
    }
    for f in all_files(&env.home) {
        let b = std::fs::read(&f).unwrap();
        let s = String::from_utf8_lossy(&b);
        assert!(!s.contains(secret_part), "canary in {}", f.display());
    }
}

#[test]
fn completions_and_version() {
    let env = Env::new();
    assert!(env.ok(&["completions", "bash"]).contains("cordon"));
    assert!(env.ok(&["--version"]).starts_with("cordon "));
}

#[test]
fn break_glass_only_for_an_incident_commander_and_listed_for_review() {
    let (env, amara) = crate::support::env_with_signer();
    let bruno = amara.with_file_name("bruno");
    // Restoring a test item normally needs an approval; break-glass skips it,
    // but only for a verified incident commander (amara, not bruno).
    let key = amara.to_str().unwrap();
    let id = env.plan_test(&["bg"], &["--restore", "--key", key]);
    let o = env.run(&["apply", &id, "--break-glass", "--reason", "prod down"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let listed = env.ok(&["--json", "log", "show", "--break-glass"]);
    let v: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    assert!(v.iter().any(|r| r["kind"] == "decision"
        && r["break_glass"] == "prod down"
        && r["decision"]["break_glass"] == true));
    assert!(v.iter().any(|r| r["kind"] == "outcome"));
    let mut args = vec![
        "--json",
        "plan",
        "test",
        "bg2",
        "--restore",
        "--as",
        "bruno",
        "--key",
    ];
    args.push(bruno.to_str().unwrap());
    let out = env.ok(&args);
    let id2 = serde_json::from_str::<serde_json::Value>(&out).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let o = env.run(&["apply", &id2, "--break-glass", "--reason", "me too"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(env.items().get("bg2").is_none());
    // --break-glass without --reason is a usage error.
    assert_eq!(
        env.run(&["apply", &id2, "--break-glass"]).status.code(),
        Some(2)
    );
}

/// Regression (issue 15): a `--json` document lost to a full disk exited 0,
/// so a script took the lost summary for success. A write that fails is exit
/// 1 with the reason on stderr; a reader that closes the pipe early (`| head`)
/// is not an error.
#[test]
fn a_failed_write_to_stdout_is_exit_1_and_a_closed_pipe_is_not_an_error() {
    let env = Env::new();
    env.plan_test(&["a", "b"], &[]);
    // A std command (assert_cmd captures stdout), with the same clean environment.
    let cordon = || {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("cordon"));
        for (k, _) in std::env::vars() {
            if k.starts_with("CORDON_") || k == "RUST_LOG" || k == "CI" {
                c.env_remove(k);
            }
        }
        c.env("CORDON_HOME", &env.home).env("NO_COLOR", "1");
        c
    };
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let o = cordon()
        .args(["--json", "plan", "list"])
        .stdout(full)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cannot write the output to stdout"), "{err}");

    // The same kind of command into a pipe whose reader has gone: its normal code.
    let mut child = cordon()
        .args(["--json", "log", "show"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("error"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
