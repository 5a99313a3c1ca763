//! Hostile input and concurrent use (issue 21), against the binary and the
//! real peers: a report naming files outside the scanned tree, a policy
//! someone else could write, huge fields and control characters in what is
//! printed, rates that would hang, evidence edited after it was taken,
//! concurrent applies of one plan, a log cut below its own checkpoint, and
//! canary secrets typed into every free-text flag.

use std::os::unix::fs::PermissionsExt;

use super::{plant_token, revoke_requests, token_live};
use crate::peers::peer;
use crate::support::{all_files, Env};

const CI_SECRET: &str = "cordon-example-ci-secret-replace-me";

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The first finding: a detect-secrets baseline whose `filename`
/// leaves `--root` (`../`, an absolute path, a symlink in the tree) names a
/// line holding a live GitHub token. Nothing outside is read, nothing is
/// revoked, and each finding says why.
#[test]
fn report_paths_outside_the_root_are_refused_per_finding_and_nothing_is_revoked() {
    let env = Env::new();
    let tag = format!("hostile-escape-{}", std::process::id());
    let tok = plant_token("ghp_", &tag, &tag);
    let repo = env.dir.path().join("repo");
    let outside = env.dir.path().join("outside");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("hosts.yml"), format!("token: {tok}\n")).unwrap();
    std::os::unix::fs::symlink(outside.join("hosts.yml"), repo.join("linked.yml")).unwrap();
    let abs = outside.join("hosts.yml").display().to_string();
    let names = ["../outside/hosts.yml", abs.as_str(), "linked.yml"];
    let mut results = serde_json::Map::new();
    for n in names {
        results.insert(
            n.to_owned(),
            serde_json::json!([{"type": "GitHub Token", "filename": n, "line_number": 1,
                "hashed_secret": "e175c6f5f2a92e8623bd9a4820edb4e8c1b0fd10", "is_verified": false}]),
        );
    }
    let baseline = serde_json::json!({
        "version": "1.5.0", "plugins_used": [{"name": "GitHubTokenDetector"}],
        "filters_used": [], "results": results,
    });
    let report = env.dir.path().join("baseline.json");
    std::fs::write(&report, baseline.to_string()).unwrap();
    let o = env
        .cmd()
        .args(["--json", "respond", "--root"])
        .arg(&repo)
        .arg("--report")
        .arg(&report)
        .env("CI", "true")
        .env("CORDON_CI_SECRET", CI_SECRET)
        .env("CORDON_GITHUB_API_URL", peer("CORDON_TEST_GITHUB_URL"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(6), "{}{}", stdout(&o), stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let f = v["findings"].as_array().unwrap();
    assert_eq!(f.len(), 3, "{v:#}");
    for row in f {
        assert_eq!(row["status"], "not-containable");
        let d = row["detail"].as_str().unwrap();
        assert!(d.contains("outside the scan root"), "{d}");
    }
    assert_eq!(revoke_requests(&tag), 0);
    assert!(token_live(&tok));
    assert!(!stdout(&o).contains(&tok[4..]) && !stderr(&o).contains(&tok[4..]));
}

/// A copy of the shipped policy with a permit-all rule added.
fn permissive_policy(env: &Env) -> std::path::PathBuf {
    let dir = env.dir.path().join("ext-policy");
    std::fs::create_dir_all(&dir).unwrap();
    for f in [
        "authority.cedar",
        "authority.cedarschema",
        "roster.toml",
        "allowed_signers",
    ] {
        std::fs::copy(env.home.join("policy").join(f), dir.join(f)).unwrap();
    }
    let p = dir.join("authority.cedar");
    let mut text = std::fs::read_to_string(&p).unwrap();
    text.push_str("\n@id(\"planted-permit-all\")\npermit(principal, action, resource);\n");
    std::fs::write(&p, text).unwrap();
    dir
}

#[test]
fn an_external_policy_others_can_write_or_own_is_refused_by_every_command() {
    let env = Env::new();
    let dir = permissive_policy(&env);
    let d = dir.to_str().unwrap();
    // Loads as is (owned by this user, not writable by others), and the
    // permit-all rule draws a warning from `policy check`.
    let o = env.run(&["policy", "check", d]);
    assert!(
        stdout(&o).contains("permits every action on every target"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    let id = env.plan_test(&["ext"], &["--restore"]);
    for break_it in ["world-writable dir", "group-writable file", "foreign owner"] {
        match break_it {
            "world-writable dir" => {
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap()
            }
            "group-writable file" => {
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
                std::fs::set_permissions(
                    dir.join("authority.cedar"),
                    std::fs::Permissions::from_mode(0o664),
                )
                .unwrap();
            }
            _ => {
                std::fs::set_permissions(
                    dir.join("authority.cedar"),
                    std::fs::Permissions::from_mode(0o644),
                )
                .unwrap();
                // The suite runs as root in CI; as another user chown fails,
                // and this case is covered by the unit test of the check.
                let st = std::process::Command::new("chown")
                    .args(["65534", dir.join("authority.cedar").to_str().unwrap()])
                    .status()
                    .unwrap();
                if !st.success() {
                    continue;
                }
            }
        }
        let o = env.run(&["apply", &id, "--as", "amara", "--policy", d]);
        assert_eq!(
            o.status.code(),
            Some(9),
            "{break_it}: {}{}",
            stdout(&o),
            stderr(&o)
        );
        let o = env.run(&["policy", "check", d]);
        assert_eq!(o.status.code(), Some(9), "{break_it}: {}", stdout(&o));
        let shown = stdout(&o) + &stderr(&o);
        assert!(
            shown.contains("writable by group or others") || shown.contains("owned by uid"),
            "{break_it}: {shown}"
        );
    }
    // Nothing was restored or contained by the planted rule.
    assert_eq!(env.items(), serde_json::json!({}));
}

#[test]
fn a_roster_error_stops_apply_as_it_fails_policy_check() {
    let env = Env::new();
    let roster = env.home.join("policy/roster.toml");
    let mut text = std::fs::read_to_string(&roster).unwrap();
    text.push_str("\n[people.mallory]\nroles = [\"no-such-role\"]\n");
    std::fs::write(&roster, text).unwrap();
    let id = env.plan_test(&["roster"], &[]);
    let o = env.run(&["apply", &id, "--as", "amara"]);
    assert_eq!(o.status.code(), Some(9), "{}{}", stdout(&o), stderr(&o));
    assert!(
        (stdout(&o) + &stderr(&o)).contains("no-such-role"),
        "{}",
        stdout(&o)
    );
    assert_eq!(env.items(), serde_json::json!({}));
}

#[test]
fn a_field_over_65535_characters_is_printed_not_a_panic_after_acting() {
    let env = Env::new();
    let long = "x".repeat(70_000);
    let id = env.plan_test(&[&long], &[]);
    let o = env.run(&["apply", &id]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert!(stdout(&o).contains(&long));
    assert_eq!(env.items()[&long]["changes"], 1);
    env.ok(&["plan", "show", &id]);
    env.ok(&["log", "show"]);
}

#[test]
fn numeric_flags_that_would_hang_or_panic_are_refused_before_anything() {
    let env = Env::new();
    let id = env.plan_test(&["rate"], &[]);
    let before = env.records().len();
    for (flag, value) in [
        ("--rate", "0"),
        ("--rate", "NaN"),
        ("--rate", "1e-30"),
        ("--rate", "inf"),
        ("--concurrency", "18446744073709551615"),
        ("--concurrency", "0"),
    ] {
        let o = env.run(&["apply", &id, flag, value]);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}: {}", stderr(&o));
        assert!(stderr(&o).contains(flag), "{}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"));
    }
    let o = env.run(&["status", "--watch", "--interval", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        env.records().len(),
        before,
        "a refused flag recorded something"
    );
    assert_eq!(env.items(), serde_json::json!({}));
}

#[test]
fn evidence_edited_after_it_was_taken_is_refused_by_restore() {
    let env = Env::new();
    let id = env.plan_test(&["evid"], &[]);
    env.ok(&["apply", &id]);
    let ev = all_files(&env.home.join("evidence"));
    assert_eq!(ev.len(), 1, "{ev:?}");
    // Still JSON, but no longer the bytes its name is the hash of.
    let text = std::fs::read_to_string(&ev[0]).unwrap();
    std::fs::write(&ev[0], format!("{text} ")).unwrap();
    let o = env.run(&["restore", &id, "--as", "amara"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("was modified after it was taken"),
        "{}",
        stderr(&o)
    );
    assert_eq!(env.items()["evid"]["contained"], true);
}

#[test]
fn control_characters_from_a_report_or_a_name_never_reach_the_terminal() {
    let env = Env::new();
    let evil = "\u{1b}[2J\u{1b}[H\rALL CONTAINED OK\u{7}\u{9b}31m\u{202e}";
    let report = serde_json::json!([{
        "RuleID": format!("rule{evil}"),
        "Secret": "xoxb-not-a-credential-cordon-handles",
        "File": format!("src/{evil}.env"),
        "StartLine": 3, "StartColumn": 1, "Commit": "", "Link": "",
    }]);
    let p = env.dir.path().join("evil.json");
    std::fs::write(&p, report.to_string()).unwrap();
    let o = env
        .cmd()
        .args(["respond", "--format", "gitleaks", "--report"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    let id = env.plan_test(&[&format!("item{evil}")], &[]);
    let shown = [
        o,
        env.run(&["apply", &id]),
        env.run(&["plan", "show", &id]),
        env.run(&["log", "show"]),
        env.run(&["plan", "list"]),
    ];
    for o in &shown {
        for stream in [&o.stdout, &o.stderr] {
            let bad: Vec<u8> = stream
                .iter()
                .copied()
                .filter(|b| (*b < 0x20 && *b != b'\n' && *b != b'\t') || *b == 0x7f)
                .collect();
            assert!(
                bad.is_empty(),
                "raw control bytes {bad:?} in {}",
                String::from_utf8_lossy(stream)
            );
            let text = String::from_utf8_lossy(stream);
            assert!(
                !text.contains('\u{9b}') && !text.contains('\u{202e}'),
                "{text}"
            );
        }
    }
    // Escaped, not dropped: the reader still sees what the report said.
    assert!(
        stdout(&shown[0]).contains("\\u{1b}[2J"),
        "{}",
        stdout(&shown[0])
    );
}

#[test]
fn ten_concurrent_applies_of_one_plan_write_one_intent_and_one_change_per_step() {
    let env = Env::new();
    let items = ["c1", "c2", "c3"];
    let id = env.plan_test(&items, &[]);
    let children: Vec<std::process::Child> = (0..10)
        .map(|_| {
            let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("cordon"));
            for (k, _) in std::env::vars() {
                if k.starts_with("CORDON_") || k == "RUST_LOG" || k == "CI" {
                    c.env_remove(k);
                }
            }
            c.env("CORDON_HOME", &env.home)
                .env("NO_COLOR", "1")
                .env("CORDON_DEMO", "1")
                .args(["apply", &id])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    let recs = env.records();
    for step in ["s1", "s2", "s3"] {
        let intents = recs
            .iter()
            .filter(|r| r["kind"] == "intent" && r["step"] == step)
            .count();
        assert_eq!(intents, 1, "step {step}");
    }
    let got = env.items();
    for i in items {
        assert_eq!(got[i]["changes"], 1, "{got:#}");
    }
    env.ok(&["log", "verify"]);
}

#[test]
fn a_log_cut_below_its_own_checkpoint_is_not_intact_and_not_discarded() {
    let env = Env::new();
    let id = env.plan_test(&["cut-a", "cut-b"], &[]);
    env.ok(&["apply", &id]);
    let log = env.home.join("audit.log");
    let data = std::fs::read(&log).unwrap();
    // Whole records removed from the end: the chain left still verifies,
    // but the state's own signed checkpoint covers more.
    let lines: Vec<&[u8]> = data.split_inclusive(|b| *b == b'\n').collect();
    let cut: Vec<u8> = lines[..lines.len() - 2].concat();
    std::fs::write(&log, &cut).unwrap();
    let o = env.run(&["log", "verify"]);
    assert_eq!(o.status.code(), Some(7), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("records were removed"),
        "{}",
        stdout(&o)
    );
    // A record cut mid-line that the checkpoint covers: tampering, and the
    // next command does not discard it as a crash's torn tail.
    std::fs::write(&log, &data[..data.len() - 30]).unwrap();
    let o = env.run(&["log", "verify"]);
    assert_eq!(o.status.code(), Some(7), "{}", stdout(&o));
    let o = env.run(&["incident", "open", "--title", "after the cut"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("signed checkpoint covers"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(&log).unwrap(), &data[..data.len() - 30]);
    assert!(!env.home.join("audit.torn").exists());
}

#[test]
fn canary_secrets_typed_into_free_text_flags_are_kept_only_as_fingerprints() {
    let env = Env::new();
    let tok = cordon::intake::classify::make_classic_token("ghp_", "free-text-canary");
    let aws = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYFREETEXT01";
    let id = env.plan_test(
        &[&tok, "fine"],
        &["--reason", &format!("leaked {aws} here")],
    );
    let o = env.run(&["apply", &id, "--as", &tok]);
    assert!(o.status.code().is_some());
    let inc = env.ok(&[
        "--json",
        "incident",
        "open",
        "--title",
        &format!("token {tok}"),
    ]);
    let inc: serde_json::Value = serde_json::from_str(&inc).unwrap();
    let inc_id = inc["id"].as_str().unwrap_or_default().to_owned();
    let _ = env.run(&["task", "add", &tok, "--incident", &inc_id]);
    let _ = env.run(&[
        "task",
        "add",
        "rotate",
        "--owner",
        &tok,
        "--incident",
        &inc_id,
    ]);
    let mut outputs = vec![o];
    for args in [
        vec!["log", "show"],
        vec!["plan", "show", &id],
        vec!["report", &inc_id, "--format", "md"],
        vec!["status", &inc_id],
    ] {
        outputs.push(env.run(&args));
    }
    for o in &outputs {
        for s in [stdout(o), stderr(o)] {
            assert!(!s.contains(&tok[4..]), "canary in output: {s}");
            assert!(!s.contains(&aws[..30]), "canary in output: {s}");
        }
    }
    for f in all_files(&env.home) {
        let b = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
        assert!(!b.contains(&tok[4..]), "canary in {}", f.display());
        assert!(!b.contains(&aws[..30]), "canary in {}", f.display());
    }
    // The fingerprint stands in for it.
    assert!(
        stdout(&outputs[1]).contains("[redacted sha256:"),
        "{}",
        stdout(&outputs[1])
    );
}

/// `scripts/ci-respond` (the GitHub Action's body) over `report` with the
/// given environment; returns (exit code, the `exit-code` output, stdout).
fn ci_respond(
    env: &Env,
    report: &std::path::Path,
    envs: &[(&str, String)],
) -> (Option<i32>, String, String) {
    let outputs = env.dir.path().join("github-output");
    let _ = std::fs::remove_file(&outputs);
    let mut c =
        std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ci-respond"));
    for (k, _) in std::env::vars() {
        if k.starts_with("CORDON_") || k.starts_with("AWS_") {
            c.env_remove(k);
        }
    }
    let o = c
        .env("CORDON_BIN", assert_cmd::cargo::cargo_bin("cordon"))
        .env("CORDON_DEMO", "1")
        .env("CORDON_HOME", env.dir.path().join("ci-home"))
        .env("CORDON_REPORT", report)
        .env("GITHUB_OUTPUT", &outputs)
        .env("CORDON_GITHUB_API_URL", peer("CORDON_TEST_GITHUB_URL"))
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let outs = std::fs::read_to_string(&outputs).unwrap_or_default();
    let code = outs
        .lines()
        .find_map(|l| l.strip_prefix("exit-code="))
        .unwrap_or("")
        .to_owned();
    (o.status.code(), code, stdout(&o) + &stderr(&o))
}

#[test]
fn a_broken_ci_setup_fails_the_job_instead_of_passing() {
    let env = Env::new();
    // No AWS credentials at all: the leaked key cannot even be identified.
    // That is a failure to act (1), not "nothing containable" (6).
    let report = env.dir.path().join("aws.txt");
    std::fs::write(
        &report,
        "AKIAHOSTILEBROKEN234 wJalrXUtnFEMI/K7MDENG/bPxRfiCYHOSTILE01\n",
    )
    .unwrap();
    let no_aws = [
        ("CORDON_CI_SECRET", CI_SECRET.to_owned()),
        ("CORDON_AWS_ENDPOINT_URL", peer("CORDON_TEST_AWS_ENDPOINT")),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ("AWS_CONFIG_FILE", "/dev/null".to_owned()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".to_owned()),
    ];
    let (job, code, shown) = ci_respond(&env, &report, &no_aws);
    assert_eq!(code, "1", "{shown}");
    assert_eq!(job, Some(1), "the action passed on a broken setup: {shown}");
    // A wrong CI secret: the `ci` principal is not proven, so nothing it asks
    // for is allowed. That is a refusal (3), not "awaiting approval" (5).
    let tag = format!("hostile-ci-{}", std::process::id());
    let tok = plant_token("ghp_", &tag, &tag);
    let report = env.dir.path().join("gh.txt");
    std::fs::write(&report, format!("{tok}\n")).unwrap();
    let (job, code, shown) = ci_respond(
        &env,
        &report,
        &[("CORDON_CI_SECRET", "not-the-ci-secret".to_owned())],
    );
    assert_eq!(code, "3", "{shown}");
    assert_eq!(job, Some(3), "the action passed on a wrong secret: {shown}");
    assert!(shown.contains("did not prove itself"), "{shown}");
    assert_eq!(revoke_requests(&tag), 0);
    assert!(token_live(&tok));
    assert!(!shown.contains(&tok[4..]));
}
