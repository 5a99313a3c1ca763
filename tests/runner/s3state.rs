//! The shared state on S3 (`--state s3://BUCKET/PREFIX`) against moto's S3
//! (started by scripts/test, authentication enforced): many machines append
//! to one log, two applies of one plan change each target once, an approval
//! given on one machine lets the apply go on on another, a machine killed
//! while holding a plan is taken over after its lease, faults between cordon
//! and the store fail closed or are resolved, and `state migrate`.
//!
//! A "machine" is a cordon process with its own local home (its policy and
//! keys) and the same `--state`.

use std::io::BufRead;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command as Std, Stdio};

use crate::fire::Proxy;
use crate::peers::{aws_env, key_statuses, peer, seed_aws};
use crate::support::{env_with_signer, Env};

fn python() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/.peers/moto-venv/bin/python")
}

/// A fresh bucket on moto (with the tests' admin credentials), unique to
/// this test.
fn bucket(tag: &str) -> String {
    let name = format!("cordon-{tag}-{}-{:x}", std::process::id(), rand_suffix());
    let st = Std::new(python())
        .args([
            "-c",
            "import boto3,os,sys\n\
             boto3.client('s3',endpoint_url=os.environ['CORDON_TEST_AWS_ENDPOINT'],\
             aws_access_key_id=os.environ['CORDON_TEST_AWS_ACCESS_KEY_ID'],\
             aws_secret_access_key=os.environ['CORDON_TEST_AWS_SECRET_ACCESS_KEY'],\
             region_name='us-east-1').create_bucket(Bucket=sys.argv[1])",
            &name,
        ])
        .status()
        .unwrap();
    assert!(st.success());
    name
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

/// Keys under `prefix` in `bucket`, listed by the admin (not by cordon).
fn keys(bucket: &str, prefix: &str) -> Vec<String> {
    let out = Std::new(python())
        .args([
            "-c",
            "import boto3,os,sys\n\
             c=boto3.client('s3',endpoint_url=os.environ['CORDON_TEST_AWS_ENDPOINT'],\
             aws_access_key_id=os.environ['CORDON_TEST_AWS_ACCESS_KEY_ID'],\
             aws_secret_access_key=os.environ['CORDON_TEST_AWS_SECRET_ACCESS_KEY'],\
             region_name='us-east-1')\n\
             for p in c.get_paginator('list_objects_v2').paginate(Bucket=sys.argv[1],Prefix=sys.argv[2]):\n\
             \x20 [print(o['Key']) for o in p.get('Contents',[])]",
            bucket,
            prefix,
        ])
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
        .map(str::to_owned)
        .collect()
}

/// The state's environment: the S3 endpoint (moto, or a proxy in front of
/// it) and the admin credentials as the state's credentials.
fn state_env(url: &str, endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CORDON_STATE", url.to_owned()),
        ("AWS_ENDPOINT_URL_S3", endpoint.to_owned()),
        ("AWS_ACCESS_KEY_ID", peer("CORDON_TEST_AWS_ACCESS_KEY_ID")),
        (
            "AWS_SECRET_ACCESS_KEY",
            peer("CORDON_TEST_AWS_SECRET_ACCESS_KEY"),
        ),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_CONFIG_FILE", "/dev/null".into()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
    ]
}

fn on(env: &Env, url: &str) -> assert_cmd::Command {
    let mut c = env.cmd();
    c.envs(state_env(url, &peer("CORDON_TEST_AWS_ENDPOINT")));
    c
}

fn ok(c: &mut assert_cmd::Command) -> String {
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "failed ({:?}):\n{}\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// `cordon` for `env` as a std Command (to spawn several at once).
fn spawnable(env: &Env, envs: Vec<(&'static str, String)>) -> Std {
    let mut c = Std::new(assert_cmd::cargo::cargo_bin("cordon"));
    for (k, _) in std::env::vars() {
        if k.starts_with("CORDON_") || k == "RUST_LOG" || k == "CI" {
            c.env_remove(k);
        }
    }
    c.env("CORDON_HOME", &env.home)
        .env("NO_COLOR", "1")
        .env("CORDON_DEMO", "1")
        .envs(envs);
    c
}

fn records(env: &Env, url: &str) -> Vec<serde_json::Value> {
    serde_json::from_str(&ok(on(env, url).args(["--json", "log", "show"]))).unwrap()
}

fn verify(env: &Env, url: &str) -> serde_json::Value {
    serde_json::from_str(&ok(on(env, url).args(["--json", "log", "verify"]))).unwrap()
}

/// The fault proxy in front of moto (S3 and IAM alike).
fn proxy(args: &[&str]) -> Proxy {
    Proxy::start(&peer("CORDON_TEST_AWS_ENDPOINT"), args)
}

#[test]
fn four_machines_append_250_records_each_into_one_chain() {
    let url = format!("s3://{}/team", bucket("log"));
    let machines: Vec<Env> = (0..4).map(|_| Env::new()).collect();
    let children: Vec<_> = machines
        .iter()
        .enumerate()
        .map(|(i, env)| {
            let notes: String = (1..=250).map(|n| format!("m{i} note {n}\n")).collect();
            let mut c = spawnable(env, state_env(&url, &peer("CORDON_TEST_AWS_ENDPOINT")));
            // Runs of 100 are sealed by whichever writer completes one,
            // while the others keep appending.
            c.env("CORDON_STATE_SEGMENT_RECORDS", "100");
            let mut child = c
                .args(["log", "note", "-", "--as", &format!("m{i}")])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            std::thread::spawn(move || {
                use std::io::Write;
                stdin.write_all(notes.as_bytes()).unwrap();
            });
            child
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // Exactly 1,000 objects, one per sequence number, and one chain.
    let keys = keys(url[5..].split('/').next().unwrap(), "team/log/records/");
    assert_eq!(keys.len(), 1000);
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(k, &format!("team/log/records/{:020}.json", i + 1));
    }
    // Every machine reads the same log back; nothing lost, nothing doubled.
    let recs = records(&machines[3], &url);
    assert_eq!(recs.len(), 1000);
    for i in 0..4 {
        let mine: Vec<&str> = recs
            .iter()
            .filter(|r| r["actor"]["name"] == format!("m{i}").as_str())
            .map(|r| r["message"].as_str().unwrap())
            .collect();
        let want: Vec<String> = (1..=250).map(|n| format!("m{i} note {n}")).collect();
        assert_eq!(mine, want, "machine {i}'s notes, in its order");
    }
    let v = verify(&machines[0], &url);
    assert_eq!(v["status"], "intact", "{v}");
    assert_eq!(v["records"], 1000);
    // Ten sealed segments of 100, whoever sealed them.
    let segs = self::keys(url[5..].split('/').next().unwrap(), "team/log/segments/");
    let want: Vec<String> = (0..10)
        .map(|k| {
            format!(
                "team/log/segments/{:020}-{:020}.jsonl",
                k * 100 + 1,
                k * 100 + 100
            )
        })
        .collect();
    assert_eq!(segs, want);
}

#[test]
fn two_machines_apply_one_plan_at_once_and_each_target_changes_once_at_moto() {
    let (a, key) = env_with_signer();
    let b = Env::new();
    let url = format!("s3://{}/p", bucket("apply"));
    let user = format!("s3apply-{}", std::process::id());
    let (key_id, _secret, spare) = seed_aws(&user);
    // The state's credentials come from their own profile: containment runs
    // with the least-privilege responder key from the environment.
    let creds = a.dir.path().join("state-credentials");
    std::fs::write(
        &creds,
        format!(
            "[cordon-state]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            peer("CORDON_TEST_AWS_ACCESS_KEY_ID"),
            peer("CORDON_TEST_AWS_SECRET_ACCESS_KEY")
        ),
    )
    .unwrap();
    // Every IAM change goes through a counting proxy (no faults).
    let iam = proxy(&["--mode", "none", "--match", "Action=UpdateAccessKey"]);
    let machine_env = || {
        let mut e = aws_env(&iam.url);
        e.extend([
            ("CORDON_STATE", url.clone()),
            ("CORDON_STATE_PROFILE", "cordon-state".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", creds.display().to_string()),
            ("AWS_ENDPOINT_URL_S3", peer("CORDON_TEST_AWS_ENDPOINT")),
            // Both machines hold the same authority policy.
            ("CORDON_POLICY", a.home.join("policy").display().to_string()),
        ]);
        e
    };
    let machine = |env: &Env| {
        let mut c = env.cmd();
        c.envs(machine_env());
        c
    };
    let out = ok(machine(&a)
        .args([
            "--json",
            "revoke",
            "aws-key",
            &key_id,
            "--dry-run",
            "--as",
            "amara",
            "--key",
        ])
        .arg(&key));
    let plan = serde_json::from_str::<serde_json::Value>(&out).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let spawn = |env: &Env| {
        let mut c = spawnable(env, machine_env());
        c.args(["--json", "apply", &plan])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (pa, pb) = (spawn(&a), spawn(&b));
    let (oa, ob) = (
        pa.wait_with_output().unwrap(),
        pb.wait_with_output().unwrap(),
    );
    for o in [&oa, &ob] {
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // One UpdateAccessKey reached moto, though two machines applied.
    assert_eq!(iam.stats()["matched_forwarded"], 1, "{}", iam.stats());
    let statuses = key_statuses(&user);
    assert!(
        statuses.contains(&format!("('{key_id}', 'Inactive')")),
        "{statuses}"
    );
    assert!(
        statuses.contains(&format!("('{spare}', 'Active')")),
        "{statuses}"
    );
    // One intent and one outcome for the step, in the one shared log.
    let recs = records(&b, &url);
    let steps: std::collections::BTreeSet<&str> = recs
        .iter()
        .filter(|r| r["kind"] == "intent" && r["plan"] == plan.as_str())
        .map(|r| r["step"].as_str().unwrap())
        .collect();
    assert!(!steps.is_empty());
    for step in steps {
        for kind in ["intent", "outcome"] {
            let n = recs
                .iter()
                .filter(|r| r["kind"] == kind && r["plan"] == plan.as_str() && r["step"] == step)
                .count();
            assert_eq!(n, 1, "{kind} of {step}: {recs:#?}");
        }
    }
    assert_eq!(verify(&a, &url)["status"], "intact");
}

#[test]
fn an_approval_given_on_one_machine_lets_the_apply_go_on_on_another() {
    let (a, key) = env_with_signer();
    let b = Env::new();
    let url = format!("s3://{}/p", bucket("approve"));
    let policy = a.home.join("policy");
    let id = {
        let out =
            ok(on(&a, &url).args(["--json", "plan", "test", "r", "--restore", "--as", "amara"]));
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // The requester signs on the first machine; a restore needs a second
    // person's approval too.
    ok(on(&a, &url).args(["approve", &id, "--key"]).arg(&key));
    let o = on(&a, &url).args(["apply", &id]).output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // The second machine sees the plan waiting, and approves it.
    let p: serde_json::Value = serde_json::from_str(&ok(on(&b, &url)
        .env("CORDON_POLICY", &policy)
        .args(["--json", "pending"])))
    .unwrap();
    assert_eq!(p["pending"][0]["plan"], id.as_str(), "{p:#}");
    ok(on(&b, &url)
        .env("CORDON_POLICY", &policy)
        .args(["approve", &id, "--key"])
        .arg(key.with_file_name("bruno")));
    // No file passed by hand: the first machine's apply now goes through.
    ok(on(&a, &url).args(["apply", &id]));
    let recs = records(&a, &url);
    assert!(recs
        .iter()
        .any(|r| r["kind"] == "approval" && r["plan"] == id.as_str()));
    assert!(
        recs.iter()
            .any(|r| r["kind"] == "outcome" && r["plan"] == id.as_str()),
        "{recs:#?}"
    );
    assert_eq!(verify(&b, &url)["status"], "intact");
    // The local homes hold no plan, approval or log.
    for env in [&a, &b] {
        assert!(!env.home.join("audit.log").exists());
        assert!(
            !env.home.join("plans").exists()
                || std::fs::read_dir(env.home.join("plans"))
                    .unwrap()
                    .next()
                    .is_none()
        );
    }
}

#[test]
fn a_machine_killed_holding_a_plan_is_taken_over_after_its_lease_and_the_takeover_is_recorded() {
    // Both processes use one local home so that they act on the same test
    // connector items; the plan's claim is the S3 lease, not the local lock.
    let env = Env::new();
    let url = format!("s3://{}/p", bucket("lease"));
    let id = {
        let out =
            ok(on(&env, &url).args(["--json", "plan", "test", "i1", "i2", "i3", "--as", "amara"]));
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let o = on(&env, &url)
        .args(["apply", &id, "--concurrency", "1"])
        .env("CORDON_CRASHPOINT", "after-call:s2")
        .env("CORDON_STATE_LEASE_SECONDS", "3")
        .output()
        .unwrap();
    assert_eq!(
        o.status.signal(),
        Some(9),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let started = std::time::Instant::now();
    let out = ok(on(&env, &url)
        .args(["--json", "apply", &id])
        .env("CORDON_STATE_LEASE_SECONDS", "3"));
    // It waited for the dead holder's lease to expire (3 s from its last
    // renewal), not for ever and not at all.
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["steps"].as_array().unwrap().len(), 3);
    let recs = records(&env, &url);
    let takeovers: Vec<_> = recs
        .iter()
        .filter(|r| {
            r["kind"] == "note"
                && r["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("took over the lease")
        })
        .collect();
    assert_eq!(takeovers.len(), 1, "{recs:#?}");
    for item in ["i1", "i2", "i3"] {
        assert_eq!(env.items()[item]["changes"], 1, "{item}: {}", env.items());
    }
    for step in ["s1", "s2", "s3"] {
        assert_eq!(
            recs.iter()
                .filter(|r| r["kind"] == "outcome" && r["step"] == step)
                .count(),
            1,
            "{step}"
        );
    }
    assert_eq!(verify(&env, &url)["status"], "intact");
    // A third apply waits for nobody: the lease was released.
    let started = std::time::Instant::now();
    ok(on(&env, &url)
        .args(["apply", &id])
        .env("CORDON_STATE_LEASE_SECONDS", "30"));
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn a_dropped_answer_after_a_successful_put_is_read_back_not_written_twice() {
    let env = Env::new();
    let url = format!("s3://{}/p", bucket("drop"));
    ok(on(&env, &url).args(["log", "note", "first", "--as", "amara"]));
    // The next record PUT reaches moto, then the connection is closed
    // without an answer: the SDK retries, gets 412, cordon reads its own
    // bytes back.
    let proxy = proxy(&[
        "--mode",
        "drop-after-forward",
        "--fail-first",
        "1",
        "--match",
        "PUT /",
    ]);
    let mut c = env.cmd();
    c.envs(state_env(&url, &proxy.url));
    ok(c.args(["log", "note", "second", "--as", "amara"]));
    assert!(proxy.stats()["matched_forwarded"].as_u64().unwrap() >= 1);
    let recs = records(&env, &url);
    let msgs: Vec<_> = recs
        .iter()
        .map(|r| r["message"].as_str().unwrap())
        .collect();
    assert_eq!(msgs, ["first", "second"]);
    assert_eq!(verify(&env, &url)["status"], "intact");
}

#[test]
fn a_store_that_keeps_failing_stops_the_apply_before_any_change_and_names_bucket_and_key() {
    let env = Env::new();
    let url = format!("s3://{}/p", bucket("fail"));
    let id = {
        let out = ok(on(&env, &url).args(["--json", "plan", "test", "z", "--as", "amara"]));
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // Brief faults are retried: two SlowDowns, one reset, then through.
    for (mode, n) in [("slowdown", "2"), ("reset", "1")] {
        let proxy = proxy(&["--mode", mode, "--fail-first", n, "--match", "PUT /"]);
        let mut c = env.cmd();
        c.envs(state_env(&url, &proxy.url));
        ok(c.args(["log", "note", mode, "--as", "amara"]));
    }
    // Every record PUT answered 503 SlowDown: the apply's first record (the
    // decision, before the intent) cannot be made durable, so nothing is
    // done, and the error says where and what to do.
    let proxy = proxy(&["--mode", "slowdown", "--rate", "1.0", "--match", "PUT /"]);
    let mut c = env.cmd();
    c.envs(state_env(&url, &proxy.url));
    let o = c.args(["apply", &id]).output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    let bucket = url[5..].split('/').next().unwrap();
    assert!(err.contains(&format!("s3://{bucket}/p/")), "{err}");
    assert!(err.contains("SlowDown"), "{err}");
    assert!(err.contains("run the command again"), "{err}");
    assert!(env.items().get("z").is_none(), "{}", env.items());
    // The store unreachable altogether: the same, naming the bucket.
    let mut c = env.cmd();
    c.envs(state_env(&url, "http://127.0.0.1:9"));
    let o = c.args(["apply", &id]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("s3://{bucket}/p/")), "{err}");
    assert!(err.contains("unreachable"), "{err}");
    assert!(env.items().get("z").is_none());
    // Once the store answers again the same apply goes through.
    ok(on(&env, &url).args(["apply", &id]));
    assert_eq!(env.items()["z"]["changes"], 1);
    assert_eq!(verify(&env, &url)["status"], "intact");
}

#[test]
fn migrate_copies_a_local_state_and_proves_nothing_was_lost() {
    let env = Env::new();
    let id = env.plan_test(&["m1", "m2"], &[]);
    env.ok(&["apply", &id]);
    let local = env.records();
    let url = format!("s3://{}/migrated", bucket("migrate"));
    let mut c = env.cmd();
    c.envs(state_env(&url, &peer("CORDON_TEST_AWS_ENDPOINT")))
        .env_remove("CORDON_STATE");
    let out = ok(c.args(["--json", "state", "migrate", "--to", &url]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["records"], local.len() as u64);
    assert!(v["objects"].as_u64().unwrap() >= 1, "{v}");
    // The shared log is the local one, record for record, and the plan is
    // there: a second run changes nothing and says so.
    assert_eq!(records(&env, &url), local);
    let again = ok(on(&env, &url).args(["--json", "apply", &id]));
    let a: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert!(
        a["steps"][0]["from_earlier_run"].as_bool().unwrap(),
        "{a:#}"
    );
    // Migrating again is a no-op; into a log holding other records, refused.
    let mut c = env.cmd();
    c.envs(state_env(&url, &peer("CORDON_TEST_AWS_ENDPOINT")))
        .env_remove("CORDON_STATE");
    ok(c.args(["state", "migrate", "--to", &url]));
    let other = Env::new();
    other.ok(&["log", "note", "something else", "--as", "bruno"]);
    let mut c = other.cmd();
    c.envs(state_env(&url, &peer("CORDON_TEST_AWS_ENDPOINT")))
        .env_remove("CORDON_STATE");
    let o = c.args(["state", "migrate", "--to", &url]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already holds a different record 1"));
}

#[test]
fn a_halt_set_on_one_machine_holds_on_another_until_a_person_resumes_it_there() {
    let (a, key) = env_with_signer();
    let b = Env::new();
    let url = format!("s3://{}/p", bucket("halt"));
    let policy = a.home.join("policy");
    ok(on(&a, &url)
        .args(["halt", "--reason", "scanner feed looks poisoned", "--key"])
        .arg(&key));
    // No local file on a shared state: the log's record is the switch.
    assert!(!a.home.join("halt.json").exists());
    // The second machine sees it: a second halt is refused as already set.
    let o = on(&b, &url)
        .env("CORDON_POLICY", &policy)
        .args(["halt", "--reason", "again", "--key"])
        .arg(key.with_file_name("bruno"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("already halted by `amara`"), "{err}");
    // A person resumes on the second machine; the first can halt again.
    ok(on(&b, &url)
        .env("CORDON_POLICY", &policy)
        .args(["resume", "--reason", "feed checked", "--key"])
        .arg(key.with_file_name("bruno")));
    ok(on(&a, &url)
        .args(["halt", "--reason", "second look", "--key"])
        .arg(&key));
    let halts: Vec<_> = records(&b, &url)
        .into_iter()
        .filter(|r| r["kind"] == "halt")
        .map(|r| r["data"]["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(halts, ["halt", "resume", "halt"]);
}

/// Run a Python snippet with boto3 as the admin (`c` is the S3 client,
/// `B` the bucket); returns its stdout.
fn admin_py(bucket: &str, code: &str) -> String {
    let out = Std::new(python())
        .args([
            "-c",
            &format!(
                "import boto3,os,sys,json,hashlib\n\
                 c=boto3.client('s3',endpoint_url=os.environ['CORDON_TEST_AWS_ENDPOINT'],\
                 aws_access_key_id=os.environ['CORDON_TEST_AWS_ACCESS_KEY_ID'],\
                 aws_secret_access_key=os.environ['CORDON_TEST_AWS_SECRET_ACCESS_KEY'],\
                 region_name='us-east-1')\n\
                 B=sys.argv[1]\n{code}"
            ),
            bucket,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn seg_key(prefix: &str, first: u64, last: u64) -> String {
    format!("{prefix}/log/segments/{first:020}-{last:020}.jsonl")
}

/// `log note` of `n` notes through `endpoint`, sealing runs of `size`.
fn notes_via(env: &Env, url: &str, endpoint: &str, n: usize, size: &str) {
    let notes: String = (1..=n).map(|i| format!("note {i}\n")).collect();
    let mut c = env.cmd();
    c.envs(state_env(url, endpoint))
        .env("CORDON_STATE_SEGMENT_RECORDS", size)
        .args(["log", "note", "-", "--as", "amara"])
        .write_stdin(notes);
    ok(&mut c);
}

#[test]
fn the_log_is_read_back_from_sealed_segments_not_one_get_per_record() {
    let b = bucket("seg");
    let url = format!("s3://{b}/s");
    let env = Env::new();
    notes_via(&env, &url, &peer("CORDON_TEST_AWS_ENDPOINT"), 205, "50");
    // The writer sealed each run of 50 as it completed it.
    assert_eq!(
        keys(&b, "s/log/segments/"),
        (0..4)
            .map(|k| seg_key("s", k * 50 + 1, k * 50 + 50))
            .collect::<Vec<_>>()
    );
    // A segment holds exactly the records' bytes.
    let joined = admin_py(
        &b,
        "print(''.join(c.get_object(Bucket=B,Key='s/log/records/%020d.json'%i)['Body'].read().decode() for i in range(51,101)),end='')\n\
         print('===')\n\
         print(c.get_object(Bucket=B,Key='s/log/segments/%020d-%020d.jsonl'%(51,100))['Body'].read().decode(),end='')",
    );
    let (recs, seg) = joined.split_once("===\n").unwrap();
    assert_eq!(recs, seg);
    // Verification through a counting proxy: four segments, five records
    // and the listings, not 205 GETs.
    let proxy = proxy(&["--mode", "none"]);
    let mut c = env.cmd();
    c.envs(state_env(&url, &proxy.url))
        .args(["--json", "log", "verify"]);
    let v: serde_json::Value = serde_json::from_str(&ok(&mut c)).unwrap();
    assert_eq!(v["status"], "intact", "{v}");
    assert_eq!(v["records"], 205);
    let n = proxy.stats()["requests"].as_u64().unwrap();
    assert!(n <= 15, "{n} requests to verify 205 records");
    // A new writer finds the head after the sealed run and chains on it.
    notes_via(&env, &url, &peer("CORDON_TEST_AWS_ENDPOINT"), 3, "50");
    let v = verify(&env, &url);
    assert_eq!(
        (v["status"].as_str(), v["records"].as_u64()),
        (Some("intact"), Some(208))
    );
}

#[test]
fn a_torn_forged_or_missing_segment_is_never_taken_over_the_records() {
    let b = bucket("segbad");
    let url = format!("s3://{b}/s");
    let env = Env::new();
    notes_via(&env, &url, &peer("CORDON_TEST_AWS_ENDPOINT"), 35, "10");
    let messages = |env: &Env| -> Vec<String> {
        let mut c = on(env, &url);
        c.env("CORDON_STATE_SEGMENT_RECORDS", "10")
            .args(["--json", "log", "show"]);
        serde_json::from_str::<Vec<serde_json::Value>>(&ok(&mut c))
            .unwrap()
            .iter()
            .map(|r| r["message"].as_str().unwrap().to_owned())
            .collect()
    };
    let want: Vec<String> = (1..=35).map(|i| format!("note {i}")).collect();
    let check = |what: &str| {
        assert_eq!(messages(&env), want, "{what}");
        let v = verify(&env, &url);
        assert_eq!(v["status"], "intact", "{what}: {v}");
        assert_eq!(v["records"], 35, "{what}");
    };
    // Torn: a segment cut in the middle of a record.
    admin_py(
        &b,
        "k='s/log/segments/%020d-%020d.jsonl'%(11,20)\n\
         d=c.get_object(Bucket=B,Key=k)['Body'].read()\n\
         c.put_object(Bucket=B,Key=k,Body=d[:len(d)//2])",
    );
    check("torn segment");
    // Forged: records 11-20 re-chained with record 15 changed. The segment
    // checks on its own and chains on record 10; only record 21, which
    // chains on the true record 20, shows it is not the records.
    admin_py(
        &b,
        "canon=lambda o: json.dumps(o,separators=(',',':'),ensure_ascii=False)\n\
         lines=[c.get_object(Bucket=B,Key='s/log/records/%020d.json'%i)['Body'].read().decode() for i in range(11,21)]\n\
         recs=[json.loads(l) for l in lines]\n\
         assert all(canon(r)+'\\n'==l for r,l in zip(recs,lines)), 'canonical form differs'\n\
         recs[4]['message']='forged'\n\
         prev=recs[0]['prev']\n\
         out=''\n\
         for r in recs:\n\
         \x20 r['prev']=prev; r.pop('hash')\n\
         \x20 r['hash']=hashlib.sha256(canon(r).encode()).hexdigest(); prev=r['hash']\n\
         \x20 out+=canon(r)+'\\n'\n\
         c.put_object(Bucket=B,Key='s/log/segments/%020d-%020d.jsonl'%(11,20),Body=out.encode())",
    );
    check("forged segment");
    // Missing: the reader falls back to the records and seals the run again.
    admin_py(
        &b,
        "c.delete_object(Bucket=B,Key='s/log/segments/%020d-%020d.jsonl'%(21,30))",
    );
    check("missing segment");
    assert!(keys(&b, "s/log/segments/").contains(&seg_key("s", 21, 30)));
    // Ahead of the log: a segment for records 31-40 (the log holds 35),
    // made of records 26-35 renumbered, is not taken for them, and an
    // append still lands on record 36.
    admin_py(
        &b,
        "canon=lambda o: json.dumps(o,separators=(',',':'),ensure_ascii=False)\n\
         recs=[json.loads(c.get_object(Bucket=B,Key='s/log/records/%020d.json'%i)['Body'].read()) for i in range(26,36)]\n\
         prev=c.get_object(Bucket=B,Key='s/log/records/%020d.json'%30)\n\
         prev=json.loads(prev['Body'].read())['hash']\n\
         out=''\n\
         for n,r in enumerate(recs):\n\
         \x20 r['seq']=31+n; r['prev']=prev; r.pop('hash')\n\
         \x20 r['hash']=hashlib.sha256(canon(r).encode()).hexdigest(); prev=r['hash']\n\
         \x20 out+=canon(r)+'\\n'\n\
         c.put_object(Bucket=B,Key='s/log/segments/%020d-%020d.jsonl'%(31,40),Body=out.encode())",
    );
    check("segment ahead of the log");
    notes_via(&env, &url, &peer("CORDON_TEST_AWS_ENDPOINT"), 1, "10");
    let v = verify(&env, &url);
    assert_eq!(
        (v["status"].as_str(), v["records"].as_u64()),
        (Some("intact"), Some(36)),
        "{v}"
    );
    // The records themselves altered: the chain breaks there, segments or not.
    admin_py(
        &b,
        "k='s/log/records/%020d.json'%33\n\
         d=c.get_object(Bucket=B,Key=k)['Body'].read().replace(b'note 33',b'note 99')\n\
         c.put_object(Bucket=B,Key=k,Body=d)",
    );
    let o = on(&env, &url)
        .args(["--json", "log", "verify"])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["seq"], 33, "{v}");
}

#[test]
fn the_signed_checkpoint_is_kept_beside_the_shared_log_and_a_log_cut_below_it_fails() {
    let b = bucket("ckpt");
    let url = format!("s3://{b}/c");
    let (m1, m2) = (Env::new(), Env::new());
    notes_via(&m1, &url, &peer("CORDON_TEST_AWS_ENDPOINT"), 12, "1000");
    let exported = m1.dir.path().join("exported.checkpoint");
    ok(on(&m1, &url)
        .args(["log", "checkpoint", "--out"])
        .arg(&exported));
    // Kept in the bucket, byte for byte what was exported.
    let stored = admin_py(
        &b,
        "print(c.get_object(Bucket=B,Key='c/log/checkpoint')['Body'].read().decode(),end='')",
    );
    assert_eq!(stored, std::fs::read_to_string(&exported).unwrap());
    assert!(stored.lines().nth(1) == Some("12"), "{stored}");
    // Another machine appends and checkpoints: the object is replaced (its
    // signature is checked with the key that machine published), and the
    // first machine's `log verify` checks the log against it.
    notes_via(&m2, &url, &peer("CORDON_TEST_AWS_ENDPOINT"), 3, "1000");
    ok(on(&m2, &url).args(["log", "checkpoint"]));
    let v = verify(&m1, &url);
    assert_eq!(v["status"], "intact", "{v}");
    assert_eq!(v["checkpoint"]["size"], 15, "{v}");
    assert_eq!(v["checkpoint"]["contained"], true, "{v}");
    // The export still checks with the first machine's key.
    let key = ok(on(&m1, &url).args(["log", "key"]));
    ok(on(&m1, &url)
        .args(["log", "verify", "--checkpoint"])
        .arg(&exported)
        .args(["--key", key.trim()]));
    // Cut the log back below the checkpoint (the last two records gone):
    // what is left chains, but verification fails, and no new checkpoint
    // is signed over the cut.
    admin_py(
        &b,
        "[c.delete_object(Bucket=B,Key='c/log/records/%020d.json'%i) for i in (14,15)]",
    );
    let o = on(&m1, &url)
        .args(["--json", "log", "verify"])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["checkpoint"]["contained"], false, "{v}");
    assert!(
        v["checkpoint"]["reason"]
            .as_str()
            .unwrap()
            .contains("records were removed"),
        "{v}"
    );
    let o = on(&m2, &url).args(["log", "checkpoint"]).output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let after = admin_py(
        &b,
        "print(c.get_object(Bucket=B,Key='c/log/checkpoint')['Body'].read().decode(),end='')",
    );
    assert_eq!(after.lines().nth(1), Some("15"));
}

#[test]
fn a_person_releases_a_dead_machines_lease_by_hand_and_it_is_recorded_with_who() {
    let env = Env::new();
    let url = format!("s3://{}/p", bucket("release"));
    let id = {
        let out = ok(on(&env, &url).args(["--json", "plan", "test", "i1", "i2", "--as", "amara"]));
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // A machine dies holding the plan with a long lease.
    let o = on(&env, &url)
        .args(["apply", &id, "--concurrency", "1"])
        .env("CORDON_CRASHPOINT", "after-call:s1")
        .env("CORDON_STATE_LEASE_SECONDS", "600")
        .output()
        .unwrap();
    assert_eq!(
        o.status.signal(),
        Some(9),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Not expired: refused without --force, naming the lease and its holder.
    let o = on(&env, &url)
        .args([
            "state",
            "release-lease",
            &id,
            "--reason",
            "x",
            "--as",
            "bruno",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("claims/{id}.lease")) && err.contains("--force"),
        "{err}"
    );
    // Another machine's apply waits, and says which lease and how to release it.
    let mut apply = spawnable(&env, state_env(&url, &peer("CORDON_TEST_AWS_ENDPOINT")))
        .args(["--json", "apply", &id])
        .env("CORDON_STATE_LEASE_SECONDS", "600")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(apply.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("release-lease") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "apply ended without waiting"
        );
    }
    assert!(line.contains(&format!("claims/{id}.lease")), "{line}");
    let out = ok(on(&env, &url).args([
        "--json",
        "state",
        "release-lease",
        &id,
        "--reason",
        "the machine that held it was terminated",
        "--as",
        "bruno",
        "--force",
    ]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["released"], true, "{v}");
    let o = apply.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    for item in ["i1", "i2"] {
        assert_eq!(env.items()[item]["changes"], 1, "{item}: {}", env.items());
    }
    let recs = records(&env, &url);
    let rel: Vec<_> = recs
        .iter()
        .filter(|r| {
            r["kind"] == "note"
                && r["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("released by hand by bruno")
        })
        .collect();
    assert_eq!(rel.len(), 1, "{recs:#?}");
    assert_eq!(rel[0]["actor"]["name"], "bruno");
    assert_eq!(rel[0]["plan"], id.as_str());
    assert!(rel[0]["message"]
        .as_str()
        .unwrap()
        .contains("the machine that held it was terminated"));
    assert_eq!(verify(&env, &url)["status"], "intact");
}

#[test]
fn an_emergency_local_log_is_imported_into_the_shared_one_and_both_chains_verify() {
    let b = bucket("emerg");
    let url = format!("s3://{b}/t");
    let team = Env::new();
    notes_via(&team, &url, &peer("CORDON_TEST_AWS_ENDPOINT"), 2, "1000");
    // The store is down: a responder starts an emergency local state and
    // works in it (a note, a plan applied with the test connector).
    let emerg = Env::new();
    let e = |args: &[&str]| emerg.ok(args);
    let init: serde_json::Value =
        serde_json::from_str(&e(&["--json", "init", "--emergency", &url])).unwrap();
    assert_eq!(init["emergency_for"], url.as_str());
    e(&["log", "note", "store down, acting locally", "--as", "amara"]);
    let plan: serde_json::Value =
        serde_json::from_str(&e(&["--json", "plan", "test", "x1", "--as", "amara"])).unwrap();
    let id = plan["id"].as_str().unwrap().to_owned();
    e(&["apply", &id]);
    let local: Vec<serde_json::Value> =
        serde_json::from_str(&e(&["--json", "log", "show"])).unwrap();
    assert!(local.len() >= 5, "{local:#?}");
    // A home that is not an emergency state is refused.
    let o = on(&team, &url)
        .args(["log", "import"])
        .arg(&team.home)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The store is back: import.
    let out = ok(on(&team, &url)
        .args(["--json", "log", "import"])
        .arg(&emerg.home));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["imported"], local.len(), "{v}");
    assert!(v["objects"].as_u64().unwrap() >= 1, "{v}");
    assert!(keys(&b, "t/plans/").contains(&format!("t/plans/{id}.json")));
    let shared = records(&team, &url);
    assert_eq!(shared.len(), 2 + local.len() + 1);
    let chain = local[0]["hash"].as_str().unwrap();
    for (l, s) in local.iter().zip(&shared[2..]) {
        // The same record, at its place in the shared chain, saying which
        // local record it is.
        assert_eq!(s["imported"]["log"], chain);
        assert_eq!(s["imported"]["seq"], l["seq"]);
        assert_eq!(s["imported"]["hash"], l["hash"]);
        let strip = |r: &serde_json::Value| {
            let mut r = r.clone();
            for k in ["seq", "prev", "hash", "imported"] {
                r.as_object_mut().unwrap().remove(k);
            }
            r
        };
        assert_eq!(strip(l), strip(s));
    }
    let last = shared.last().unwrap();
    assert_eq!(last["data"]["local_head"], local.last().unwrap()["hash"]);
    // The shared log sees the emergency apply's outcome.
    assert!(shared
        .iter()
        .any(|r| r["kind"] == "outcome" && r["plan"] == id.as_str()));
    // Both chains verify, each on its own.
    assert_eq!(verify(&team, &url)["status"], "intact");
    let lv: serde_json::Value = serde_json::from_str(&e(&["--json", "log", "verify"])).unwrap();
    assert_eq!(lv["status"], "intact");
    assert_eq!(lv["records"], local.len());
    // Again: nothing is copied twice.
    let v: serde_json::Value = serde_json::from_str(&ok(on(&team, &url)
        .args(["--json", "log", "import"])
        .arg(&emerg.home)))
    .unwrap();
    assert_eq!(
        (v["imported"].as_u64(), v["already_imported"].as_u64()),
        (Some(0), Some(local.len() as u64))
    );
    assert_eq!(records(&team, &url).len(), shared.len());
}

#[test]
fn every_put_carries_sse_kms_and_evidence_gets_the_object_lock_retention_asked_for() {
    // A bucket created with Object Lock, and a KMS key, at moto.
    let b = format!("cordon-lock-{}-{:x}", std::process::id(), rand_suffix());
    let kms = admin_py(
        &b,
        "c.create_bucket(Bucket=B,ObjectLockEnabledForBucket=True)\n\
         k=boto3.client('kms',endpoint_url=os.environ['CORDON_TEST_AWS_ENDPOINT'],\
         aws_access_key_id=os.environ['CORDON_TEST_AWS_ACCESS_KEY_ID'],\
         aws_secret_access_key=os.environ['CORDON_TEST_AWS_SECRET_ACCESS_KEY'],\
         region_name='us-east-1')\n\
         print(k.create_key()['KeyMetadata']['Arn'])",
    );
    let kms = kms.trim().to_owned();
    let url = format!("s3://{b}/k");
    let env = Env::new();
    let with = |c: &mut assert_cmd::Command| {
        c.env("CORDON_STATE_SSE_KMS_KEY_ID", &kms)
            .env("CORDON_STATE_OBJECT_LOCK_DAYS", "2");
    };
    let mut c = on(&env, &url);
    with(&mut c);
    let plan: serde_json::Value = serde_json::from_str(&ok(
        c.args(["--json", "plan", "test", "e1", "--as", "amara"])
    ))
    .unwrap();
    let id = plan["id"].as_str().unwrap().to_owned();
    let mut c = on(&env, &url);
    with(&mut c);
    ok(c.args(["apply", &id]));
    let evidence: Vec<String> = keys(&b, "k/evidence/");
    assert!(
        !evidence.is_empty(),
        "the test connector's step took no evidence"
    );
    let some_record = keys(&b, "k/log/records/").remove(0);
    let out = Std::new(python())
        .args([
            "-c",
            "import boto3,os,sys,json,datetime\n\
             c=boto3.client('s3',endpoint_url=os.environ['CORDON_TEST_AWS_ENDPOINT'],\
             aws_access_key_id=os.environ['CORDON_TEST_AWS_ACCESS_KEY_ID'],\
             aws_secret_access_key=os.environ['CORDON_TEST_AWS_SECRET_ACCESS_KEY'],\
             region_name='us-east-1')\n\
             for k in sys.argv[2:]:\n\
             \x20 h=c.head_object(Bucket=sys.argv[1],Key=k)\n\
             \x20 u=h.get('ObjectLockRetainUntilDate')\n\
             \x20 d=(u-datetime.datetime.now(datetime.timezone.utc)).total_seconds()/86400 if u else None\n\
             \x20 print(json.dumps([k,h.get('ServerSideEncryption'),h.get('SSEKMSKeyId'),h.get('ObjectLockMode'),d]))",
            &b,
        ])
        .args(&evidence)
        .arg(&some_record)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for r in &rows {
        assert_eq!(r[1], "aws:kms", "{r}");
        assert_eq!(r[2], kms.as_str(), "{r}");
    }
    for r in &rows[..evidence.len()] {
        assert_eq!(r[3], "COMPLIANCE", "{r}");
        let days = r[4].as_f64().unwrap();
        assert!((1.9..=2.01).contains(&days), "{r}");
    }
    // The log's records are not retained by cordon (the bucket's default
    // retention, when set, covers them).
    assert_eq!(rows.last().unwrap()[3], serde_json::Value::Null);
    // A bad setting is refused before anything is written.
    let o = on(&env, &url)
        .env("CORDON_STATE_OBJECT_LOCK_DAYS", "soon")
        .args(["log", "note", "x", "--as", "amara"])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("CORDON_STATE_OBJECT_LOCK_DAYS"));
}

#[test]
fn a_writer_killed_mid_append_leaves_a_log_another_machine_appends_to_and_that_verifies() {
    let b = bucket("killapp");
    let url = format!("s3://{b}/k");
    let (m1, m2) = (Env::new(), Env::new());
    let run = |env: &Env, n: usize, crash: Option<&str>| {
        let notes: String = (1..=n).map(|i| format!("note {i}\n")).collect();
        let mut c = env.cmd();
        c.envs(state_env(&url, &peer("CORDON_TEST_AWS_ENDPOINT")))
            .env("CORDON_STATE_SEGMENT_RECORDS", "10")
            .args(["log", "note", "-", "--as", "amara"])
            .write_stdin(notes);
        if let Some(p) = crash {
            c.env("CORDON_CRASHPOINT", p);
        }
        c.output().unwrap()
    };
    // Killed once record 10 is durable, before its append returned and
    // before the writer sealed records 1-10.
    let o = run(&m1, 15, Some("s3-after-put:10"));
    assert_eq!(
        o.status.signal(),
        Some(9),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(keys(&b, "k/log/records/").len(), 10);
    assert!(keys(&b, "k/log/segments/").is_empty());
    // Killed with record 13 sealed in memory but not yet written.
    let o = run(&m1, 5, Some("s3-before-put:13"));
    assert_eq!(
        o.status.signal(),
        Some(9),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(keys(&b, "k/log/records/").len(), 12);
    // The other machine appends on what is there: no gap, no fork.
    let o = run(&m2, 10, None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_str(&ok(on(&m2, &url)
        .env("CORDON_STATE_SEGMENT_RECORDS", "10")
        .args(["--json", "log", "verify"])))
    .unwrap();
    assert_eq!(v["status"], "intact", "{v}");
    assert_eq!(v["records"], 22);
    // The run the dead writer did not seal was sealed by a reader, the one
    // the other machine completed by that machine.
    let segs = keys(&b, "k/log/segments/");
    assert!(segs.contains(&seg_key("k", 1, 10)), "{segs:?}");
    assert!(segs.contains(&seg_key("k", 11, 20)), "{segs:?}");
}

#[test]
fn a_put_that_times_out_fails_closed_before_the_side_effect_and_the_rerun_changes_once() {
    let env = Env::new();
    let url = format!("s3://{}/t", bucket("timeout"));
    let id = {
        let out = ok(on(&env, &url).args(["--json", "plan", "test", "t1", "--as", "amara"]));
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // Every request on the log's records (the PUT of the next record and
    // its read-back) is applied by moto but answered 3 s late: each attempt
    // times out after 0.5 s, so the fate of the PUT is never learnt.
    let proxy = proxy(&[
        "--mode",
        "slow",
        "--slow-ms",
        "3000",
        "--fail-first",
        "100000",
        "--match",
        "/log/records/",
    ]);
    let o = env
        .cmd()
        .envs(state_env(&url, &proxy.url))
        .env("CORDON_STATE_TIMEOUT_MS", "500")
        .args(["apply", &id])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("{}/log/records/", &url)), "{err}");
    assert!(proxy.stats()["matched"].as_u64().unwrap() >= 1);
    // No side effect: nothing was changed without a record known durable.
    assert_eq!(
        env.items()["t1"]["changes"].as_u64().unwrap_or(0),
        0,
        "{}",
        env.items()
    );
    drop(proxy);
    // With the store answering again the same apply goes on and changes
    // the item once; the log (with whatever the timed-out PUT wrote) verifies.
    ok(on(&env, &url).args(["apply", &id]));
    assert_eq!(env.items()["t1"]["changes"], 1, "{}", env.items());
    let recs = records(&env, &url);
    assert_eq!(
        recs.iter()
            .filter(|r| r["kind"] == "outcome" && r["plan"] == id.as_str())
            .count(),
        1,
        "{recs:#?}"
    );
    assert_eq!(verify(&env, &url)["status"], "intact");
}

/// The `seq` of every record object's first and last line, in key order.
fn group_ranges(bucket: &str, prefix: &str) -> Vec<(u64, u64)> {
    admin_py(
        bucket,
        &format!(
            "for p in c.get_paginator('list_objects_v2').paginate(Bucket=B,Prefix='{prefix}/log/records/'):\n\
             \x20 for o in p.get('Contents',[]):\n\
             \x20   ls=c.get_object(Bucket=B,Key=o['Key'])['Body'].read().decode().splitlines()\n\
             \x20   assert int(o['Key'][-25:-5])==json.loads(ls[0])['seq'], o['Key']\n\
             \x20   print(json.loads(ls[0])['seq'], json.loads(ls[-1])['seq'])"
        ),
    )
    .lines()
    .map(|l| {
        let (a, b) = l.split_once(' ').unwrap();
        (a.parse().unwrap(), b.parse().unwrap())
    })
    .collect()
}

#[test]
fn steps_in_flight_share_one_write_per_round_trip_and_readers_cut_groups_back_into_records() {
    let (a, key) = env_with_signer();
    let b = bucket("group");
    let url = format!("s3://{b}/g");
    let ids: Vec<String> = (0..6)
        .map(|i| seed_aws(&format!("s3group-{i}-{}", std::process::id())).0)
        .collect();
    // The store 30 ms away: records of the steps in flight queue behind
    // each write and go out together in the next.
    let far = proxy(&["--mode", "none", "--delay-ms", "30"]);
    let mut c = a.cmd();
    c.envs(aws_env(&peer("CORDON_TEST_AWS_ENDPOINT")))
        .envs(state_env(&url, &far.url))
        .env("CORDON_STATE_SEGMENT_RECORDS", "5")
        .args(["--json", "revoke", "aws-key"])
        .args(&ids)
        .args(["--quarantine-user", "--severity", "critical"])
        .args(["--as", "amara", "--key"])
        .arg(&key);
    let o = c.output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for s in out["steps"].as_array().unwrap() {
        assert_eq!(s["outcome"]["status"], "done", "{s}");
    }
    let recs = records(&a, &url);
    let groups = group_ranges(&b, "g");
    // Fewer objects than records: appends were grouped. The groups tile the
    // log: each starts where the one before ended.
    assert!(
        groups.len() < recs.len(),
        "{} groups, {} records",
        groups.len(),
        recs.len()
    );
    assert_eq!(groups.first().unwrap().0, 1);
    assert_eq!(groups.last().unwrap().1, recs.len() as u64);
    for w in groups.windows(2) {
        assert_eq!(w[1].0, w[0].1 + 1, "{groups:?}");
    }
    // Segments end where groups end, and follow one another from record 1.
    let ends: std::collections::BTreeSet<u64> = groups.iter().map(|g| g.1).collect();
    let segs: Vec<(u64, u64)> = keys(&b, "g/log/segments/")
        .iter()
        .map(|k| {
            let name = k.rsplit('/').next().unwrap().trim_end_matches(".jsonl");
            let (x, y) = name.split_once('-').unwrap();
            (x.parse().unwrap(), y.parse().unwrap())
        })
        .collect();
    assert!(!segs.is_empty(), "nothing sealed");
    let mut next = 1;
    for (x, y) in &segs {
        assert_eq!(*x, next, "{segs:?}");
        assert!(
            ends.contains(y),
            "segment {x}-{y} ends inside a group: {groups:?}"
        );
        next = y + 1;
    }
    let v = verify(&a, &url);
    assert_eq!(
        (v["status"].as_str(), v["records"].as_u64()),
        (Some("intact"), Some(recs.len() as u64)),
        "{v}"
    );
    // With every segment gone, a reader cuts the groups back into the same
    // records, and another machine chains a note on the last group.
    admin_py(
        &b,
        "[c.delete_object(Bucket=B,Key=o['Key']) for o in c.list_objects_v2(Bucket=B,Prefix='g/log/segments/').get('Contents',[])]",
    );
    let other = Env::new();
    assert_eq!(records(&other, &url), recs);
    notes_via(&other, &url, &peer("CORDON_TEST_AWS_ENDPOINT"), 1, "5");
    let v = verify(&a, &url);
    assert_eq!(
        (v["status"].as_str(), v["records"].as_u64()),
        (Some("intact"), Some(recs.len() as u64 + 1)),
        "{v}"
    );
}

#[test]
fn an_agent_on_the_shared_state_holds_its_queue_for_a_halt_set_on_another_machine() {
    let (a, key) = env_with_signer();
    let b = Env::new();
    let url = format!("s3://{}/h", bucket("agenthalt"));
    let policy = a.home.join("policy");
    let user = format!("s3agenthalt-{}", std::process::id());
    let (key_id, _secret, _spare) = seed_aws(&user);
    let mut agent_env: Vec<(&str, String)> = aws_env(&peer("CORDON_TEST_AWS_ENDPOINT"));
    agent_env.extend(state_env(&url, &peer("CORDON_TEST_AWS_ENDPOINT")));
    let agent = crate::agent::Agent::start(&a, &agent_env);
    // A person halts on the other machine: nothing is written on the
    // agent's machine, only the record in the shared log.
    ok(on(&b, &url)
        .env("CORDON_POLICY", &policy)
        .args(["halt", "--reason", "drill on the shared state", "--key"])
        .arg(key.with_file_name("bruno")));
    assert!(!a.home.join("halt.json").exists());
    let gd = serde_json::json!({
        "version": "0", "id": format!("gd-shared-halt-{}", std::process::id()), "detail-type": "GuardDuty Finding", "source": "aws.guardduty",
        "account": peer("CORDON_TEST_AWS_ACCOUNT_ID"),
        "detail": {"id": "f-shared", "type": "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS", "severity": 8.0,
                   "accountId": peer("CORDON_TEST_AWS_ACCOUNT_ID"),
                   "resource": {"resourceType": "AccessKey", "accessKeyDetails": {"accessKeyId": key_id, "userName": user, "userType": "IAMUser"}}}
    })
    .to_string();
    let (c, body) = agent.post(
        "/aws",
        &[("Authorization", "Bearer eventbridge-token-for-tests")],
        gd.as_bytes(),
    );
    assert_eq!(c, 202, "{body}");
    // Queued, and not acted on: no plan in the shared log, the key active.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let (c, body) = crate::agent::http(&agent.addr, "GET", "/healthz", &[], b"");
    assert_eq!(c, 200);
    let hz: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (hz["halted"].as_bool(), hz["queued"].as_u64()),
        (Some(true), Some(1)),
        "{hz}"
    );
    assert!(records(&b, &url).iter().all(|r| r["kind"] != "plan"));
    assert!(key_statuses(&user).contains(&format!("('{key_id}', 'Active')")));
    // Resumed on the other machine: the agent acts on the delivery, once.
    ok(on(&b, &url)
        .env("CORDON_POLICY", &policy)
        .args(["resume", "--reason", "drill over", "--key"])
        .arg(key.with_file_name("bruno")));
    let t = std::time::Instant::now();
    while !key_statuses(&user).contains(&format!("('{key_id}', 'Inactive')")) {
        assert!(t.elapsed().as_secs() < 90, "not processed after the resume");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (code, out, err) = agent.stop();
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("1 events processed, 0 failed, 0 left"),
        "{out}"
    );
    let plans = records(&b, &url)
        .iter()
        .filter(|r| r["kind"] == "plan")
        .count();
    assert_eq!(plans, 1);
}
