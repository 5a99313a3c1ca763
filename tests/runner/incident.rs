//! Incidents, tasks, status and report (issue 7): a scripted incident on the
//! built-in test connector — two findings (one contained and verified, one
//! that fails), a restore that waits for an approval, one break-glass — then
//! the status screen, the report in every format, and the HTML report in a
//! real headless Chromium.

use std::path::Path;
use std::process::Command as Proc;

use crate::support::{env_with_signer, filters, Env};

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    for (re, rep) in filters() {
        s.add_filter(re, rep);
    }
    // Durations between milestones and SSH key fingerprints change per run.
    s.add_filter(r"\(\+[0-9hms. -]+\)", "(+[DUR])");
    s.add_filter(r"SHA256:[A-Za-z0-9+/]{43}", "[KEYFP]");
    s
}

fn json(env: &Env, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    serde_json::from_str(&env.ok(&a)).unwrap()
}

fn log_len(env: &Env) -> usize {
    env.records().len()
}

/// Run the scripted incident; returns the env and the ids of its plans:
/// contained, failed, restore awaiting approval, break-glass restore.
fn scripted_incident() -> (Env, [String; 4]) {
    let (env, amara) = env_with_signer();
    let bruno = amara.with_file_name("bruno");
    let opened = env.ok(&[
        "incident",
        "open",
        "--title",
        "CI credentials leaked in a build log",
        "--severity",
        "critical",
        "--as",
        "amara",
    ]);
    assert!(opened.contains("opened incident INC-1"), "{opened}");
    for (role, who) in [
        ("commander", "amara"),
        ("technical-lead", "bruno"),
        ("communications", "gwen"),
        ("legal", "hiro"),
    ] {
        env.ok(&["incident", "assign", role, who, "--as", "amara"]);
    }
    // Finding 1: contained and verified. `--incident` names the incident.
    let contained = env.plan_test(
        &["ci-token"],
        &[
            "--incident",
            "inc-1",
            "--reason",
            "gitleaks: CI token in build log",
        ],
    );
    env.ok(&["apply", &contained, "--concurrency", "1"]);
    // Finding 2: the provider refuses every call. CORDON_INCIDENT attaches it.
    let o = env
        .cmd()
        .args([
            "--json",
            "plan",
            "test",
            "fail-permanent-deploy-key",
            "--as",
            "amara",
        ])
        .env("CORDON_INCIDENT", "INC-1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let failed = serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(env.run(&["apply", &failed]).status.code(), Some(1));
    // A restore requested by bruno (signed) waits for someone else's approval.
    let out = env.ok(&[
        "--json",
        "plan",
        "test",
        "build-cache",
        "--restore",
        "--as",
        "bruno",
        "--incident",
        "INC-1",
        "--key",
        bruno.to_str().unwrap(),
        "--reason",
        "build cache needed for the hotfix",
    ]);
    let waiting = serde_json::from_str::<serde_json::Value>(&out).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(env.run(&["apply", &waiting]).status.code(), Some(5));
    // Break-glass: the incident commander restores prod-db without approval.
    let bg = env.plan_test(
        &["prod-db"],
        &[
            "--restore",
            "--incident",
            "INC-1",
            "--key",
            amara.to_str().unwrap(),
            "--reason",
            "production is down without it",
        ],
    );
    env.ok(&[
        "apply",
        &bg,
        "--break-glass",
        "--reason",
        "prod down, no second approver awake",
    ]);
    // Manual tasks: one blocked, one overdue, one done; a step gets an owner.
    env.ok(&[
        "task",
        "add",
        "notify affected customers",
        "--owner",
        "gwen",
        "--due",
        "2h",
        "--incident",
        "INC-1",
        "--as",
        "amara",
    ]);
    env.ok(&[
        "task",
        "block",
        "t1",
        "--reason",
        "legal review of the wording",
        "--incident",
        "INC-1",
        "--as",
        "gwen",
    ]);
    env.ok(&[
        "task",
        "add",
        "rotate the deploy key by hand",
        "--owner",
        "bruno",
        "--due",
        "2020-01-01T00:00:00Z",
        "--incident",
        "INC-1",
        "--as",
        "amara",
    ]);
    env.ok(&[
        "task",
        "add",
        "preserve the build log",
        "--incident",
        "INC-1",
        "--as",
        "amara",
    ]);
    env.ok(&["task", "done", "t3", "--incident", "INC-1", "--as", "bruno"]);
    let step = format!("{}:s1", &failed[..8]);
    env.ok(&[
        "task",
        "assign",
        &step,
        "chen",
        "--incident",
        "INC-1",
        "--as",
        "amara",
    ]);
    (env, [contained, failed, waiting, bg])
}

#[test]
fn issue_7_a_scripted_incident_gives_the_expected_status_and_report() {
    let (env, [contained, failed, waiting, bg]) = scripted_incident();
    let status = env.ok(&["status", "INC-1"]);
    let st = json(&env, &["status", "INC-1"]);
    assert_eq!(st["verified"].as_array().unwrap().len(), 1);
    assert_eq!(st["failed"].as_array().unwrap().len(), 1);
    assert_eq!(st["blocked"].as_array().unwrap().len(), 1);
    let waiting_items: Vec<String> = st["waiting"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| format!("{} {} {}", i["task"], i["what"], i["detail"]))
        .collect();
    assert!(
        waiting_items.iter().any(|w| w.contains(&waiting)
            && w.contains("waiting for approval: it needs 1 more approval")),
        "{waiting_items:?}"
    );
    assert!(waiting_items
        .iter()
        .any(|w| w.contains("role executive-owner")));
    // The step of the failed plan is a task by itself, with the owner given.
    let tasks = st["tasks"].as_array().unwrap();
    let step = tasks
        .iter()
        .find(|t| t["id"] == format!("{failed}:s1"))
        .unwrap();
    assert_eq!(step["status"], "failed");
    assert_eq!(step["owner"], "chen");
    // Derived, not duplicated: one task per step of each attached plan.
    let step_tasks = tasks
        .iter()
        .filter(|t| t["source"]["kind"] == "step")
        .count();
    assert_eq!(step_tasks, 4, "one step in each of the 4 plans: {tasks:?}");

    env.ok(&[
        "incident",
        "close",
        "INC-1",
        "--summary",
        "CI token revoked and verified; deploy key rotation handed to platform",
        "--as",
        "amara",
    ]);
    let md = env.ok(&["report", "INC-1", "--format", "md"]);
    let report = json(&env, &["report", "INC-1", "--format", "json"]);
    settings().bind(|| {
        insta::assert_snapshot!("incident_status", status);
        insta::assert_snapshot!("incident_report_md", md);
    });

    let inc = &report["incident"];
    assert_eq!(inc["state"], "closed");
    assert_eq!(report["log_verify"]["status"], "intact");
    // Time to contain: every milestone for the verified token, in order.
    let creds = inc["credentials"].as_array().unwrap();
    let tok = creds
        .iter()
        .find(|c| c["target"] == "test:item/ci-token")
        .unwrap();
    assert_eq!(tok["status"], "verified");
    let at = |m: &str| tok[m]["at"].as_str().unwrap().to_owned();
    let ms = ["detected", "planned", "approved", "contained", "verified"].map(at);
    assert!(ms.windows(2).all(|w| w[0] <= w[1]), "{ms:?}");
    assert!(tok["policy_hash"].as_str().unwrap().len() == 64);
    let dk = creds
        .iter()
        .find(|c| c["target"] == "test:item/fail-permanent-deploy-key")
        .unwrap();
    assert_eq!(dk["status"], "failed");
    assert!(dk["contained"].is_null() && dk["verified"].is_null());
    // Break-glass: the one use, by the commander, with its reason.
    let bgs = inc["break_glass"].as_array().unwrap();
    assert_eq!(bgs.len(), 1, "{bgs:?}");
    assert_eq!(bgs[0]["plan"], bg.as_str());
    assert_eq!(bgs[0]["actor"], "amara");
    assert_eq!(bgs[0]["actor_verified"], true);
    assert_eq!(bgs[0]["reason"], "prod down, no second approver awake");
    // Evidence: every snapshot the engine took, each intact in the store.
    let ev = inc["evidence"].as_array().unwrap();
    assert!(!ev.is_empty());
    assert!(ev.iter().all(|e| e["check"] == "intact"), "{ev:?}");
    assert!(ev.iter().any(|e| e["plan"] == contained.as_str()));
    // Every record of the incident is in the timeline, with its hash.
    let log = env.records();
    let mine = log.iter().filter(|r| r["incident"] == "INC-1").count();
    assert!(inc["timeline"].as_array().unwrap().len() >= mine);
    // Open items: the failed step, the blocked and the overdue task, the
    // restore still waiting (an unassigned role no longer is, once closed).
    let open: Vec<String> = report["open_items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{} {}",
                i["task"].as_str().unwrap(),
                i["what"].as_str().unwrap()
            )
        })
        .collect();
    for want in [
        format!("{failed}:s1"),
        "t1 notify".into(),
        "t2 rotate".into(),
        format!("{waiting}:s1"),
    ] {
        assert!(open.iter().any(|o| o.contains(&want)), "{want} in {open:?}");
    }
    assert!(!open.iter().any(|o| o.starts_with("t3 ")), "{open:?}");
}

#[test]
fn issue_7_the_html_report_renders_in_headless_chromium_without_errors() {
    let (env, _) = scripted_incident();
    let html_path = env.dir.path().join("report.html");
    env.ok(&[
        "report",
        "INC-1",
        "--format",
        "html",
        "--output",
        html_path.to_str().unwrap(),
    ]);
    let html = std::fs::read_to_string(&html_path).unwrap();
    // One self-contained file: no scripts, no external assets.
    assert!(
        !html.contains("<script"),
        "the report must not need scripts"
    );
    for bad in ["src=\"http", "href=\"http", "@import", "url("] {
        assert!(!html.contains(bad), "external asset `{bad}` in the report");
    }
    let chromium = which_chromium();
    let url = format!("file://{}", html_path.display());
    let profile = env.dir.path().join("chromium-profile");
    let base = |p: &mut Proc| {
        p.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()));
    };
    // Screenshot.
    let png = env.dir.path().join("report.png");
    let mut shot = Proc::new(&chromium);
    base(&mut shot);
    let o = shot
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1280,2400")
        .arg(&url)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    no_page_errors(&String::from_utf8_lossy(&o.stderr));
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((width, height), (1280, 2400));
    // A blank page of that size compresses to a few kilobytes; a page full
    // of tables does not.
    assert!(bytes.len() > 40_000, "screenshot is {} bytes", bytes.len());
    // The DOM as Chromium parsed it: every section, the log verification.
    let mut dom = Proc::new(&chromium);
    base(&mut dom);
    let o = dom.arg("--dump-dom").arg(&url).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    no_page_errors(&String::from_utf8_lossy(&o.stderr));
    let dom = String::from_utf8_lossy(&o.stdout);
    for id in [
        "summary",
        "log-verify",
        "roles",
        "time-to-contain",
        "open-items",
        "break-glass",
        "tasks",
        "evidence",
        "timeline",
    ] {
        assert!(
            dom.contains(&format!("id=\"{id}\"")),
            "section `{id}` missing"
        );
    }
    assert!(dom.contains("intact: "), "log verification missing");
    assert!(dom.contains("prod down, no second approver awake"));
    assert!(
        !dom.contains("id=\"problems\""),
        "the replay reported problems"
    );
}

/// Chromium from Debian (`chromium`), installed by scripts/system-deps (run by scripts/test).
fn which_chromium() -> std::path::PathBuf {
    for name in ["chromium", "chromium-browser"] {
        for dir in std::env::var("PATH").unwrap_or_default().split(':') {
            let p = Path::new(dir).join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("headless Chromium is needed for this test: `apt-get install chromium` (scripts/test installs it: scripts/system-deps)");
}

/// Chromium logs page problems (console errors, uncaught exceptions, failed
/// loads) as `CONSOLE` lines and network errors on stderr with logging on.
fn no_page_errors(stderr: &str) {
    let bad: Vec<&str> = stderr
        .lines()
        .filter(|l| {
            l.contains("CONSOLE")
                || l.contains("Uncaught")
                || l.contains("net::ERR_")
                || l.contains("Failed to load resource")
        })
        .collect();
    assert!(bad.is_empty(), "page errors: {bad:#?}");
}

#[test]
fn issue_7_bad_requests_are_refused_clearly_and_record_nothing() {
    let env = Env::new();
    let refuse = |args: &[&str], code: i32, want: &str| {
        let before = log_len(&env);
        let o = env.run(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: want `{want}` in {err}");
        assert_eq!(log_len(&env), before, "{args:?} recorded something");
        err.into_owned()
    };
    // Nothing open yet.
    refuse(&["status"], 2, "no incident is open");
    env.ok(&["incident", "open", "--title", "drill", "--as", "amara"]);
    // Unknown incident ids, wherever they are named.
    let e = refuse(&["status", "INC-9"], 1, "no incident `INC-9`");
    assert!(e.contains("known incidents: INC-1"), "{e}");
    refuse(
        &["task", "add", "x", "--incident", "INC-9", "--as", "amara"],
        1,
        "no incident `INC-9`",
    );
    refuse(
        &["plan", "test", "x", "--incident", "INC-9", "--as", "amara"],
        1,
        "no incident `INC-9`",
    );
    refuse(&["report", "INC-9"], 1, "no incident `INC-9`");
    // respond checks before its `finding` record: nothing at all is written.
    let tok = cordon::intake::classify::make_classic_token("ghp_", "incident-respond");
    let before = log_len(&env);
    let o = env
        .cmd()
        .args([
            "respond",
            "--report",
            "-",
            "--incident",
            "INC-9",
            "--as",
            "amara",
        ])
        .write_stdin(format!("GITHUB_TOKEN={tok}\n"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("no incident `INC-9`"), "{err}");
    assert!(!err.contains(&tok[4..]) && !String::from_utf8_lossy(&o.stdout).contains(&tok[4..]));
    assert_eq!(log_len(&env), before);
    // People not in the roster, and people not eligible for the role.
    let e = refuse(
        &["incident", "assign", "commander", "zoe"],
        1,
        "`zoe` is not in the roster",
    );
    assert!(e.contains("hint: people in the roster: amara"), "{e}");
    let e = refuse(
        &["incident", "assign", "commander", "gwen"],
        1,
        "`gwen` cannot be commander",
    );
    assert!(e.contains("eligible for commander: amara, dana"), "{e}");
    refuse(
        &["incident", "assign", "communications", "ci"],
        1,
        "automation principal",
    );
    refuse(
        &["task", "add", "x", "--owner", "zoe"],
        1,
        "`zoe` is not in the roster",
    );
    refuse(&["task", "add", "x", "--due", "soon"], 2, "due time `soon`");
    // Task state rules.
    env.ok(&["task", "add", "collect logs", "--as", "amara"]);
    env.ok(&["task", "done", "t1", "--as", "amara"]);
    refuse(
        &["task", "block", "t1", "--reason", "waiting"],
        1,
        "task t1 of INC-1 is already done: nothing to block",
    );
    refuse(&["task", "done", "t1"], 1, "already done");
    refuse(&["task", "unblock", "t1"], 1, "is not blocked");
    refuse(&["task", "assign", "t7", "bruno"], 1, "has no task `t7`");
    let id = env.plan_test(&["item"], &["--incident", "INC-1"]);
    let e = refuse(
        &["task", "done", &format!("{id}:s1")],
        1,
        "is a step of plan",
    );
    assert!(e.contains(&format!("hint: run `cordon apply {id}`")), "{e}");
    // Closing twice; then nothing more is recorded on the closed incident.
    env.ok(&["incident", "close", "INC-1", "--summary", "drill over"]);
    refuse(
        &["incident", "close", "INC-1", "--summary", "again"],
        1,
        "incident INC-1 is already closed",
    );
    refuse(
        &["task", "add", "late", "--incident", "INC-1"],
        1,
        "is closed",
    );
    refuse(
        &["plan", "test", "y", "--incident", "INC-1", "--as", "amara"],
        1,
        "is closed",
    );
    refuse(
        &["incident", "close", "--summary", "which?"],
        2,
        "no incident is open",
    );
    // A second incident gets the next id.
    let o = json(
        &env,
        &["incident", "open", "--title", "second", "--as", "dana"],
    );
    assert_eq!(o["incident"], "INC-2");
    assert_eq!(o["actor"]["verified"], false);
}

#[test]
fn issue_7_the_automation_secret_proves_the_actor_and_status_watch_redraws_on_change() {
    let env = Env::new();
    let o = env
        .cmd()
        .args([
            "--json",
            "incident",
            "open",
            "--title",
            "scanner hit",
            "--as",
            "ci",
        ])
        .env("CORDON_CI_SECRET", "cordon-example-ci-secret-replace-me")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["actor"]["verified"], true);
    assert_eq!(v["actor"]["proof"], "automation-secret:CORDON_CI_SECRET");
    // A wrong secret leaves a claim.
    let o = env
        .cmd()
        .args(["--json", "task", "add", "triage", "--as", "ci"])
        .env("CORDON_CI_SECRET", "wrong")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["actor"]["verified"], false);

    let mut watch = Proc::new(assert_cmd::cargo::cargo_bin("cordon"));
    for (k, _) in std::env::vars() {
        if k.starts_with("CORDON_") {
            watch.env_remove(k);
        }
    }
    let mut child = watch
        .env("CORDON_HOME", &env.home)
        .env("CORDON_DEMO", "1")
        .args(["--json", "status", "--watch", "--interval", "0.1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    env.ok(&["task", "add", "second task", "--as", "amara"]);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // One document at start, one after the change, none while idle.
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(lines[1]["tasks"].as_array().unwrap().len(), 2);
}
