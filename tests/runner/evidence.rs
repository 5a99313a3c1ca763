//! Issue 16 item 7, the evidence rule, against moto with IAM auth enforced: a
//! snapshot that cannot be taken does not stop containment unless the policy
//! says so. cordon runs as a responder whose policy is the shipped one
//! without [`DENIED`], the read a key's kill takes its evidence from (issue 19:
//! a key's snapshot is the user's credentials, no longer a full user snapshot
//! that begins with `iam:GetUser`).

use std::process::Command as Std;

use crate::peers::{aws_env, key_statuses, no_canary, peer, seed_aws};
use crate::support::{env_with_signer, Env};

/// The read the narrow responder may not make.
const DENIED: &str = "iam:ListAccessKeys";

const IAM: &str = "import boto3,os,sys\nc=boto3.client('iam',endpoint_url=os.environ['E'],aws_access_key_id=os.environ['A'],aws_secret_access_key=os.environ['S'],region_name='us-east-1')\n";

/// A moto user holding the shipped responder policy minus `drop`; returns its key.
pub(crate) fn narrow_responder(name: &str, drop: &str) -> (String, String) {
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/policies/cordon-responder-iam.json"
    ))
    .unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&shipped).unwrap();
    let mut dropped = false;
    for st in doc["Statement"].as_array_mut().unwrap() {
        if let Some(a) = st["Action"].as_array_mut() {
            let before = a.len();
            a.retain(|x| x != drop);
            dropped |= a.len() != before;
        }
    }
    assert!(dropped, "`{drop}` is not in the shipped responder policy");
    let py = concat!(env!("CARGO_MANIFEST_DIR"), "/.peers/moto-venv/bin/python");
    let o = Std::new(py)
        .args(["-c", &format!("{IAM}c.create_user(UserName=sys.argv[1]); c.put_user_policy(UserName=sys.argv[1], PolicyName='p', PolicyDocument=sys.argv[2]); k=c.create_access_key(UserName=sys.argv[1])['AccessKey']; print(k['AccessKeyId'], k['SecretAccessKey'])")])
        .args([name, &doc.to_string()])
        .env("E", peer("CORDON_TEST_AWS_ENDPOINT"))
        .env("A", peer("CORDON_TEST_AWS_ACCESS_KEY_ID"))
        .env("S", peer("CORDON_TEST_AWS_SECRET_ACCESS_KEY"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).unwrap();
    let mut w = out.split_whitespace();
    (w.next().unwrap().to_owned(), w.next().unwrap().to_owned())
}

/// `cordon revoke aws-key` as the narrow responder; returns (exit, json, stdout, stderr).
fn revoke_as(
    env: &Env,
    signer: &std::path::Path,
    responder: &(String, String),
    key_id: &str,
    secret: &str,
) -> (Option<i32>, serde_json::Value, Vec<u8>, Vec<u8>) {
    let o = env
        .cmd()
        .envs(aws_env(&peer("CORDON_TEST_AWS_ENDPOINT")))
        .env("AWS_ACCESS_KEY_ID", &responder.0)
        .env("AWS_SECRET_ACCESS_KEY", &responder.1)
        .env("CORDON_AWS_VERIFY_DEADLINE_SECS", "5")
        .env("LEAKED", secret)
        .args([
            "--json",
            "revoke",
            "aws-key",
            key_id,
            "--secret-env",
            "LEAKED",
            "--as",
            "amara",
            "--key",
        ])
        .arg(signer)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| {
        panic!(
            "{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    (o.status.code(), v, o.stdout, o.stderr)
}

fn key_step(v: &serde_json::Value) -> &serde_json::Value {
    v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["action"] == "aws:disable-access-key")
        .unwrap()
}

#[test]
fn issue_16_a_snapshot_denied_to_the_responder_does_not_stop_the_key_being_disabled() {
    let (env, signer) = env_with_signer();
    let responder = narrow_responder(&format!("blind-{}", std::process::id()), DENIED);
    let user = format!("blindleak-{}", std::process::id());
    let (key_id, secret, spare) = seed_aws(&user);
    let (code, v, out, err) = revoke_as(&env, &signer, &responder, &key_id, &secret);
    let step = key_step(&v);
    // The key is disabled and proven dead with a call signed by it.
    assert_eq!(step["outcome"]["status"], "done", "{v:#}");
    assert_eq!(step["verification"]["status"], "dead", "{v:#}");
    assert!(step["evidence"].is_null(), "{v:#}");
    let why = step["no_evidence"].as_str().unwrap_or_default();
    assert!(
        why.contains("evidence snapshot could not be taken") && why.contains(DENIED),
        "the reason names the refused read: {v:#}"
    );
    let statuses = key_statuses(&user);
    assert!(
        statuses.contains(&format!("('{key_id}', 'Inactive')")),
        "{statuses}"
    );
    assert!(
        statuses.contains(&format!("('{spare}', 'Active')")),
        "{statuses}"
    );
    assert!(code.is_some_and(|c| c == 0 || c == 4), "{code:?} {v:#}");
    // The records: the policy was asked and allowed it; intent and outcome say no-evidence + why.
    let recs = env.records();
    let s1: Vec<&serde_json::Value> = recs
        .iter()
        .filter(|r| r["action"] == "aws:disable-access-key" && r["step"] == step["step"])
        .collect();
    assert!(s1.iter().any(|r| r["kind"] == "decision"
        && r["decision"]["effect"] == "allow"
        && r["message"]
            .as_str()
            .is_some_and(|m| m.contains("without evidence? allowed"))));
    assert!(
        !s1.iter().any(|r| r["kind"] == "evidence"),
        "no evidence record"
    );
    for kind in ["intent", "outcome"] {
        assert!(
            s1.iter().any(|r| r["kind"] == kind
                && r["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("no-evidence: ") && m.contains(DENIED))),
            "{kind} record does not say no-evidence and why: {s1:#?}"
        );
    }
    no_canary(&env, &secret, &[&out, &err]);
    assert!(env.run(&["log", "verify"]).status.success());
}

#[test]
fn issue_16_where_the_policy_forbids_acting_without_evidence_nothing_changes() {
    let (env, signer) = env_with_signer();
    let policy = env.home.join("policy/authority.cedar");
    let mut text = std::fs::read_to_string(&policy).unwrap();
    text.push_str(
        "\n@id(\"no-change-without-evidence\")\n@description(\"refuse every change cordon could not snapshot first\")\nforbid (principal, action in Action::\"contain\", resource is Target)\nwhen { context.without_evidence };\n",
    );
    std::fs::write(&policy, text).unwrap();
    let responder = narrow_responder(&format!("blindno-{}", std::process::id()), DENIED);
    let user = format!("blindkeep-{}", std::process::id());
    let (key_id, secret, _) = seed_aws(&user);
    let (code, v, out, err) = revoke_as(&env, &signer, &responder, &key_id, &secret);
    let step = key_step(&v);
    assert_eq!(step["outcome"]["status"], "failed", "{v:#}");
    let error = step["outcome"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(DENIED)
            && error.contains("forbidden by `no-change-without-evidence`")
            && error.contains("nothing was changed"),
        "{error}"
    );
    assert!(step["no_evidence"].is_null(), "{v:#}");
    assert_ne!(code, Some(0), "{v:#}");
    // Nothing changed: the key still works.
    assert!(key_statuses(&user).contains(&format!("('{key_id}', 'Active')")));
    let recs = env.records();
    assert!(
        !recs
            .iter()
            .any(|r| r["kind"] == "intent" && r["action"] == "aws:disable-access-key"),
        "an intent was recorded"
    );
    assert!(recs.iter().any(|r| r["kind"] == "decision"
        && r["decision"]["effect"] == "deny"
        && r["message"]
            .as_str()
            .is_some_and(|m| m.contains("without evidence? refused"))));
    no_canary(&env, &secret, &[&out, &err]);
}
