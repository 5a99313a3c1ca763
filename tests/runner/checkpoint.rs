//! Signed checkpoints through the CLI: written after a plan run, exported,
//! and checked against a log an insider cut short and re-chained.

use std::path::Path;

use crate::support::Env;

/// What an insider with write access does: drop the records `drop` names,
/// renumber the rest and recompute every prev and hash (the verifier's own
/// hashing rule), so that plain `log verify` passes.
fn rechain(log: &Path, drop: impl Fn(usize) -> bool) {
    let data = std::fs::read_to_string(log).unwrap();
    let mut prev = "0".repeat(64);
    let mut out = String::new();
    let mut seq = 0u64;
    for (i, line) in data.lines().enumerate() {
        if drop(i) {
            continue;
        }
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        seq += 1;
        v["seq"] = seq.into();
        v["prev"] = prev.clone().into();
        v.as_object_mut().unwrap().remove("hash");
        let h = cordon::plan::sha256_hex(&serde_json::to_vec(&v).unwrap());
        v["hash"] = h.clone().into();
        out.push_str(&serde_json::to_string(&v).unwrap());
        out.push('\n');
        prev = h;
    }
    std::fs::write(log, out).unwrap();
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn an_exported_checkpoint_catches_a_truncated_and_rechained_log() {
    let env = Env::new();
    let id = env.plan_test(&["build-cache", "staging-db"], &["--reason", "drill"]);
    env.ok(&["apply", &id]);
    // The run left a signed checkpoint and a private key (0600) behind.
    let latest = std::fs::read_to_string(env.home.join("audit.checkpoint")).unwrap();
    let key_md = std::fs::metadata(env.home.join("audit.key")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&key_md.permissions()) & 0o777,
        0o600
    );
    let vkey = env.ok(&["log", "key"]).trim().to_owned();
    assert!(vkey.starts_with("cordon.audit/"), "{vkey}");
    assert!(!vkey.contains("PRIVATE"));
    let records = env.records().len();
    assert!(latest.contains(&format!("\n{records}\n")), "{latest}");

    // Export a checkpoint (and the key) somewhere the insider cannot reach.
    let cp = env.dir.path().join("exported.checkpoint");
    let cp_s = cp.to_str().unwrap();
    env.ok(&["log", "checkpoint", "--out", cp_s]);
    let ok = env.ok(&["log", "verify", "--checkpoint", cp_s, "--key", &vkey]);
    assert!(ok.contains("verified"), "{ok}");

    // More work after the export: the checkpoint is a prefix, still fine.
    let id2 = env.plan_test(&["other"], &[]);
    env.ok(&["apply", &id2]);
    env.ok(&["log", "verify", "--checkpoint", cp_s, "--key", &vkey]);

    // The insider removes the two decision records of the first run and
    // re-chains everything after them.
    let log = env.home.join("audit.log");
    let recs = env.records();
    let decisions: Vec<usize> = recs
        .iter()
        .enumerate()
        .filter(|(_, r)| r["kind"] == "decision")
        .map(|(i, _)| i)
        .take(2)
        .collect();
    assert_eq!(decisions.len(), 2);
    rechain(&log, |i| decisions.contains(&i));
    // Plain `log verify` checks the state's own signed checkpoint too (issue
    // 21; it used to be fooled here): the cut is caught without an export.
    let plain = env.run(&["log", "verify"]);
    assert_eq!(plain.status.code(), Some(7), "{}", stdout(&plain));
    let o = env.run(&["log", "verify", "--checkpoint", cp_s, "--key", &vkey]);
    assert_eq!(o.status.code(), Some(7), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("no longer contains the checkpointed tree"),
        "{}",
        stdout(&o)
    );
    let o = env.run(&[
        "--json",
        "log",
        "verify",
        "--checkpoint",
        cp_s,
        "--key",
        &vkey,
    ]);
    assert_eq!(o.status.code(), Some(7));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status"], "intact");
    assert_eq!(v["checkpoint"]["contained"], false);

    // Cut to fewer records than the checkpoint covers: caught the same way.
    rechain(&log, |i| i >= 3);
    let o = env.run(&["log", "verify", "--checkpoint", cp_s, "--key", &vkey]);
    assert_eq!(o.status.code(), Some(7));
    assert!(
        stdout(&o).contains("records were removed"),
        "{}",
        stdout(&o)
    );

    // The insider also replaces the signing key and signs a new checkpoint:
    // it does not verify under the key exported before.
    std::fs::remove_file(env.home.join("audit.key")).unwrap();
    let forged = env.dir.path().join("forged.checkpoint");
    env.ok(&["log", "checkpoint", "--out", forged.to_str().unwrap()]);
    let o = env.run(&[
        "log",
        "verify",
        "--checkpoint",
        forged.to_str().unwrap(),
        "--key",
        &vkey,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("is not signed by the verifier key"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_altered_checkpoint_or_a_bad_key_is_its_own_error() {
    let env = Env::new();
    let id = env.plan_test(&["x"], &[]);
    env.ok(&["apply", &id]);
    let vkey_file = env.dir.path().join("audit.vkey");
    env.ok(&["log", "key", "--out", vkey_file.to_str().unwrap()]);
    let cp = env.dir.path().join("cp");
    env.ok(&["log", "checkpoint", "--out", cp.to_str().unwrap()]);
    let text = std::fs::read_to_string(&cp).unwrap();
    let mut lines: Vec<&str> = text.split('\n').collect();
    let bigger = (lines[1].parse::<u64>().unwrap() + 1).to_string();
    lines[1] = &bigger;
    std::fs::write(&cp, lines.join("\n")).unwrap();
    // The key from a file works the same as the key text.
    let o = env.run(&[
        "log",
        "verify",
        "--checkpoint",
        cp.to_str().unwrap(),
        "--key",
        vkey_file.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("does not verify"), "{}", stderr(&o));
    let o = env.run(&[
        "log",
        "verify",
        "--checkpoint",
        cp.to_str().unwrap(),
        "--key",
        "not-a-key",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("`--key`"), "{}", stderr(&o));
}
