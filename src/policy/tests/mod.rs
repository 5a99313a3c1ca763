#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod approvals;
mod bounds;
mod explain;
mod interop;
mod load;
mod matrix;
mod properties;
mod reasons;

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, Duration, TimeZone, Utc};
use cordon_connector::{Action, PlanStep, Provider, Target};

use super::{load as load_dir, Policy, FILES};
use crate::gate::{BreakGlass, Decision, GateInput, Principal, VerifiedApproval};
use crate::plan::{Plan, PrincipalKind, Requester, Severity, Source, PLAN_VERSION};

pub(super) fn shipped_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

pub(super) fn shipped() -> Policy {
    load_dir(&shipped_dir()).unwrap_or_else(|e| panic!("the shipped policy must load: {e}"))
}

/// A copy of the shipped policy directory to modify.
pub(super) fn copy_shipped() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for f in FILES {
        std::fs::copy(shipped_dir().join(f), d.path().join(f)).unwrap();
    }
    d
}

/// Sunday 2026-11-22, 03:00 UTC: the plans' creation time.
pub(super) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 3, 0, 0).unwrap()
}

pub(super) fn target(provider: Provider, kind: &str, id: &str, env: Option<&str>) -> Target {
    let mut t = Target::new(provider, kind, id);
    t.environment = env.map(str::to_owned);
    t
}

pub(super) fn plan(
    requester: &str,
    kind: PrincipalKind,
    source: Source,
    severity: Severity,
    action: Action,
    target: Target,
) -> Plan {
    Plan {
        version: PLAN_VERSION,
        created_at: t0(),
        requester: Requester {
            name: requester.into(),
            kind,
        },
        source,
        severity,
        incident: Some("INC-2041".into()),
        reason: Some("leaked credential".into()),
        steps: vec![PlanStep {
            id: "s1".into(),
            action,
            target,
            secret: None,
            params: Default::default(),
        }],
    }
}

pub(super) fn principal(name: &str, kind: PrincipalKind, verified: bool) -> Principal {
    Principal {
        name: name.into(),
        kind,
        verified,
        proof: verified.then(|| "test".to_owned()),
    }
}

pub(super) fn approvals(names: &[&str]) -> Vec<VerifiedApproval> {
    names
        .iter()
        .map(|n| VerifiedApproval {
            signer: (*n).into(),
            key_fingerprint: format!("SHA256:test-{n}"),
            signed_at: t0(),
        })
        .collect()
}

/// Decide the plan's single step.
pub(super) fn decide(
    policy: &Policy,
    plan: &Plan,
    requester: &Principal,
    approvers: &[&str],
    elapsed_minutes: i64,
    break_glass: bool,
) -> Decision {
    let approvals = approvals(approvers);
    let bg = BreakGlass {
        reason: "db exfiltration in progress".into(),
    };
    let input = GateInput {
        plan_id: "0123456789abcdef",
        plan,
        step: &plan.steps[0],
        requester,
        approvals: &approvals,
        break_glass: break_glass.then_some(&bg),
        now: t0() + Duration::minutes(elapsed_minutes),
    };
    policy.decide(&input)
}

/// `ssh-keygen`, which the interop tests need (never skipped when absent).
pub(super) fn ssh_keygen() -> Command {
    let path = Path::new("/usr/bin/ssh-keygen");
    if !path.exists() {
        panic!(
            "these tests need OpenSSH's ssh-keygen at /usr/bin/ssh-keygen: install openssh-client"
        );
    }
    Command::new(path)
}

/// Generate a throwaway key in `dir`; returns (private key path, public key line).
pub(super) fn keygen(dir: &Path, name: &str, kind: &str, passphrase: &str) -> (PathBuf, String) {
    let key = dir.join(format!("{name}_{kind}"));
    let mut cmd = ssh_keygen();
    cmd.args([
        "-q",
        "-t",
        kind,
        "-N",
        passphrase,
        "-C",
        &format!("{name}@test"),
        "-f",
    ])
    .arg(&key);
    if kind == "ecdsa" {
        cmd.args(["-b", "256"]);
    }
    if kind == "rsa" {
        cmd.args(["-b", "2048"]);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "ssh-keygen failed: {out:?}");
    let public = std::fs::read_to_string(key.with_extension("pub"))
        .or_else(|_| std::fs::read_to_string(format!("{}.pub", key.display())))
        .unwrap();
    (key, public.trim().to_owned())
}

/// `ssh-keygen -Y sign -n NS -f KEY FILE`; returns the armored signature.
pub(super) fn keygen_sign(key: &Path, namespace: &str, data: &[u8], dir: &Path) -> String {
    let file = dir.join(format!(
        "msg-{}",
        crate::plan::sha256_hex(
            &[data, key.to_string_lossy().as_bytes(), namespace.as_bytes()].concat()
        )
    ));
    std::fs::write(&file, data).unwrap();
    let sig = PathBuf::from(format!("{}.sig", file.display()));
    let _ = std::fs::remove_file(&sig);
    let out = ssh_keygen()
        .args(["-Y", "sign", "-n", namespace, "-f"])
        .arg(key)
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "ssh-keygen -Y sign failed: {out:?}");
    std::fs::read_to_string(sig).unwrap()
}
