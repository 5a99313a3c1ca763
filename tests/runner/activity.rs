//! Issue 16: what a leaked AWS key did. After `cordon respond` contains a key, its
//! CloudTrail events (looked up by the key's id) that look like persistence become tasks
//! of the incident, each naming what was created, by which event, and how to undo it.
//!
//! Gap of the peer, closed by Patch 8 of peers/moto/launcher.py: moto 5.2.5 records no
//! CloudTrail event and answers LookupEvents "not implemented". The patch records an
//! event for each IAM/STS request moto served, with the key that signed it, and answers
//! LookupEvents with AWS's filters and paging. A lookup that filtered by nothing (or by
//! the wrong key) would bring another key's activity into this incident: the tests
//! below have another key open doors at the same time, and fail if they show up.

use std::process::Command as Std;

use crate::peers::{aws_cmd, no_canary};
use crate::support::{env_with_signer, Env};

const CI_SECRET: &str = "cordon-example-ci-secret-replace-me";

/// Run `script` with the moto venv's boto3, the peer's admin credentials in `admin`
/// (an IAM client) and `mk(service, key, secret)`; returns its stdout KEY=VALUE lines.
fn boto(script: &str) -> std::collections::HashMap<String, String> {
    let prelude = r#"
import json, os, boto3
ep = os.environ["CORDON_TEST_AWS_ENDPOINT"]
def mk(svc, k, s):
    return boto3.client(svc, endpoint_url=ep, region_name="us-east-1",
                        aws_access_key_id=k, aws_secret_access_key=s)
admin = mk("iam", os.environ["CORDON_TEST_AWS_ACCESS_KEY_ID"], os.environ["CORDON_TEST_AWS_SECRET_ACCESS_KEY"])
IAM_ALL = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["iam:*", "sts:*"], "Resource": "*"}]})
def user_with_key(name, policy=IAM_ALL):
    admin.create_user(UserName=name)
    admin.put_user_policy(UserName=name, PolicyName="work", PolicyDocument=policy)
    return admin.create_access_key(UserName=name)["AccessKey"]
"#;
    let py = concat!(env!("CARGO_MANIFEST_DIR"), "/.peers/moto-venv/bin/python");
    let out = Std::new(py)
        .arg("-c")
        .arg(format!("{prelude}\n{script}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

fn report(env: &Env, name: &str, key_id: &str, secret: &str) -> std::path::PathBuf {
    let p = env.dir.path().join(name);
    std::fs::write(
        &p,
        format!("AWS_ACCESS_KEY_ID={key_id}\nAWS_SECRET_ACCESS_KEY={secret}\n"),
    )
    .unwrap();
    p
}

fn open_incident(env: &Env) -> String {
    let opened: serde_json::Value = serde_json::from_str(&env.ok(&[
        "--json",
        "incident",
        "open",
        "--title",
        "aws key leak",
        "--as",
        "amara",
    ]))
    .unwrap();
    opened["incident"].as_str().unwrap().to_owned()
}

/// The incident's tasks that name a leaked key's door (a plan's steps are tasks too).
fn task_titles(env: &Env, incident: &str) -> Vec<String> {
    let shown: serde_json::Value =
        serde_json::from_str(&env.ok(&["--json", "incident", "show", incident])).unwrap();
    shown["incident"]["tasks"]
        .as_array()
        .or_else(|| shown["tasks"].as_array())
        .unwrap_or_else(|| panic!("no tasks in {shown:#}"))
        .iter()
        .filter_map(|t| t["title"].as_str().map(str::to_owned))
        .filter(|t| t.contains("with the leaked key `"))
        .collect()
}

fn respond_as_ci(
    env: &Env,
    report: &std::path::Path,
    incident: Option<&str>,
) -> (i32, serde_json::Value, std::process::Output) {
    let mut c = aws_cmd(env);
    c.args(["--json", "respond", "--report"])
        .arg(report)
        .env("CI", "true")
        .env("CORDON_CI_SECRET", CI_SECRET);
    if let Some(i) = incident {
        c.args(["--incident", i]);
    }
    let o = c.output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    (o.status.code().unwrap_or(-1), v, o)
}

#[test]
fn issue_16_the_doors_a_leaked_key_opened_become_incident_tasks() {
    let (env, signer) = env_with_signer();
    let tag = format!("act-{}", std::process::id());
    // The leaked key creates a user and a key for it; at the same time another key (not
    // in the report) creates a user of its own, which must not show up here.
    let seeded = boto(&format!(
        r#"
leaked = user_with_key("{tag}-leaky")
other = user_with_key("{tag}-other")
li = mk("iam", leaked["AccessKeyId"], leaked["SecretAccessKey"])
oi = mk("iam", other["AccessKeyId"], other["SecretAccessKey"])
li.create_user(UserName="{tag}-backdoor")
oi.create_user(UserName="{tag}-elsewhere")
made = li.create_access_key(UserName="{tag}-backdoor")["AccessKey"]
oi.create_access_key(UserName="{tag}-elsewhere")
li.get_user()
print("KEY=" + leaked["AccessKeyId"])
print("SECRET=" + leaked["SecretAccessKey"])
print("MADE=" + made["AccessKeyId"])
print("MADE_SECRET=" + made["SecretAccessKey"])
"#
    ));
    let (key, secret, made) = (&seeded["KEY"], &seeded["SECRET"], &seeded["MADE"]);
    let incident = open_incident(&env);
    let rep = report(&env, "leak.env", key, secret);
    let (code, v, o) = respond_as_ci(&env, &rep, Some(&incident));
    assert_eq!(code, 0, "{v:#}\n{}", String::from_utf8_lossy(&o.stderr));
    let row = &v["findings"][0];
    assert_eq!(row["status"], "contained", "{v:#}");
    let act = &row["activity"];
    assert!(act.get("not_checked").is_none(), "{act:#}");
    // CreateUser, CreateAccessKey and GetUser by the leaked key (and nothing of the
    // other key's: it made as many calls).
    assert_eq!(act["events"], 3, "{act:#}");
    let doors: Vec<&str> = act["persistence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert_eq!(doors.len(), 2, "{doors:#?}");
    assert!(
        doors[0].contains(&format!("IAM user `{tag}-backdoor` was created"))
            && doors[0].contains("CreateUser at ")
            && doors[0].contains("aws iam delete-user --user-name"),
        "{doors:#?}"
    );
    assert!(
        doors[1].contains(&format!("access key `{made}` of IAM user `{tag}-backdoor`"))
            && doors[1].contains(&format!("cordon revoke aws-key {made}")),
        "{doors:#?}"
    );
    assert!(!format!("{act}").contains("elsewhere"), "{act:#}");
    // The same instructions are tasks of the incident.
    let titles = task_titles(&env, &incident);
    for d in &doors {
        assert!(titles.iter().any(|t| t == d), "{d} not in {titles:#?}");
    }
    assert!(
        !titles.iter().any(|t| t.contains("elsewhere")),
        "{titles:#?}"
    );
    // A re-run adds no second task.
    let (code, _, _) = respond_as_ci(&env, &rep, Some(&incident));
    assert_eq!(code, 0);
    assert_eq!(task_titles(&env, &incident).len(), titles.len());
    // The text summary says it too.
    let text = aws_cmd(&env)
        .args(["respond", "--report"])
        .arg(&rep)
        .env("CI", "true")
        .env("CORDON_CI_SECRET", CI_SECRET)
        .output()
        .unwrap();
    let text_out = String::from_utf8_lossy(&text.stdout);
    assert!(
        text_out.contains(&format!("activity of `{key}`: 3 events since"))
            && text_out.contains("2 look like persistence"),
        "{text_out}"
    );
    // `cordon revoke aws-key` (and `apply`) say it too, by key id.
    let rv = aws_cmd(&env)
        .args(["--json", "revoke", "aws-key", key, "--as", "amara", "--key"])
        .arg(&signer)
        .output()
        .unwrap();
    let rv_json: serde_json::Value = serde_json::from_slice(&rv.stdout).unwrap();
    let by_key = &rv_json["activity"][key.as_str()];
    assert_eq!(by_key["events"], 3, "{rv_json:#}");
    assert_eq!(
        by_key["persistence"].as_array().map(Vec::len),
        Some(2),
        "{rv_json:#}"
    );
    no_canary(
        &env,
        secret,
        &[&o.stdout, &o.stderr, &text.stdout, &text.stderr, &rv.stdout],
    );
    no_canary(&env, &seeded["MADE_SECRET"], &[&o.stdout, &o.stderr]);
}

#[test]
fn issue_16_a_quiet_key_gets_no_task_and_a_denied_lookup_never_stops_containment() {
    let env = Env::new();
    let tag = format!("quiet-{}", std::process::id());
    let policy = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/policies/cordon-responder-iam.json"
    ))
    .unwrap();
    // A quiet leaked key (never used), a busy one, and a responder holding cordon's
    // policy but denied cloudtrail:LookupEvents.
    let seeded = boto(&format!(
        r#"
quiet = user_with_key("{tag}-quiet")
busy = user_with_key("{tag}-busy")
mk("iam", busy["AccessKeyId"], busy["SecretAccessKey"]).create_user(UserName="{tag}-made")
responder = user_with_key("{tag}-responder", {policy:?})
admin.put_user_policy(UserName="{tag}-responder", PolicyName="no-trail", PolicyDocument=json.dumps(
    {{"Version": "2012-10-17", "Statement": [{{"Effect": "Deny", "Action": "cloudtrail:LookupEvents", "Resource": "*"}}]}}))
for k, v in (("QUIET", quiet), ("BUSY", busy), ("RESP", responder)):
    print(k + "=" + v["AccessKeyId"])
    print(k + "_SECRET=" + v["SecretAccessKey"])
"#
    ));
    let incident = open_incident(&env);
    let before = task_titles(&env, &incident).len();
    let rep = report(&env, "quiet.env", &seeded["QUIET"], &seeded["QUIET_SECRET"]);
    let (code, v, o) = respond_as_ci(&env, &rep, Some(&incident));
    assert_eq!(code, 0, "{v:#}\n{}", String::from_utf8_lossy(&o.stderr));
    let act = &v["findings"][0]["activity"];
    assert_eq!(act["events"], 0, "{act:#}");
    assert!(act.get("persistence").is_none(), "{act:#}");
    assert_eq!(task_titles(&env, &incident).len(), before);

    // LookupEvents denied: the busy key is still contained and verified; the finding
    // says its activity was not checked, and why.
    let rep = report(&env, "busy.env", &seeded["BUSY"], &seeded["BUSY_SECRET"]);
    let o = aws_cmd(&env)
        .args(["--json", "respond", "--report"])
        .arg(&rep)
        .args(["--incident", &incident])
        .env("CI", "true")
        .env("CORDON_CI_SECRET", CI_SECRET)
        .env("AWS_ACCESS_KEY_ID", &seeded["RESP"])
        .env("AWS_SECRET_ACCESS_KEY", &seeded["RESP_SECRET"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(o.status.code(), Some(0), "{v:#}");
    let row = &v["findings"][0];
    assert_eq!(row["status"], "contained", "{v:#}");
    let why = row["activity"]["not_checked"].as_str().unwrap_or_default();
    assert!(
        why.contains("cloudtrail:LookupEvents") && why.contains("AccessDenied"),
        "{v:#}"
    );
    assert!(row["activity"].get("events").is_none(), "{v:#}");
    assert_eq!(task_titles(&env, &incident).len(), before);
    let st = crate::peers::key_statuses(&format!("{tag}-busy"));
    assert!(st.contains("'Inactive'"), "{st}");
}
