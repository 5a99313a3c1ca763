//! The whole policy directory as `cordon` loads it (Cedar policy, schema,
//! roster, allowed_signers): the fuzzed bytes replace the Cedar policy and,
//! split at the first NUL, the roster, next to the shipped files.
//!
//! A policy that loads then decides a fixed set of requests (targets that
//! differ in id, tags and account; people, automation and
//! claimed names), from the second one on partly from the decision memo
//! (the keys differ only in id, as a plan's do), and every decision must
//! equal the reference way's (every entity rebuilt,
//! every policy asked, no memo): the narrowed policy sets, the entity stores,
//! the skipped schema checks and the memo, differentially.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use chrono::{TimeZone, Utc};
use cordon::gate::{GateInput, Principal};
use cordon::plan::{Plan, PrincipalKind, Requester, Severity, Source, PLAN_VERSION};
use cordon_connector::{Action, PlanStep, Provider, Target};
use libfuzzer_sys::fuzz_target;

/// The requests every loaded policy is asked.
fn asks() -> &'static [(Principal, Plan)] {
    static ASKS: OnceLock<Vec<(Principal, Plan)>> = OnceLock::new();
    ASKS.get_or_init(|| {
        let key = |id: &str, env: &str| {
            let mut t = Target::new(Provider::Aws, "access-key", id);
            t.environment = Some(env.into());
            t
        };
        let mut tagged = key("AKIAEXAMPLE000000003", "production");
        tagged.tags.insert("team".into(), "payments".into());
        let mut role = Target::new(Provider::Aws, "role", "deploy-prod");
        role.environment = Some("production".into());
        role.account = Some("111122223333".into());
        let mut role_b = role.clone();
        role_b.account = Some("444455556666".into());
        let targets = [
            (
                Action::AwsDisableAccessKey,
                key("AKIAEXAMPLE000000001", "production"),
            ),
            (
                Action::AwsDisableAccessKey,
                key("AKIAEXAMPLE000000002", "production"),
            ),
            (Action::AwsDisableAccessKey, tagged),
            (Action::AwsQuarantineRole, role),
            (Action::AwsQuarantineRole, role_b),
        ];
        let who = |name: &str, kind, verified| Principal {
            name: name.into(),
            kind,
            verified,
            proof: verified.then(|| "fuzz".to_owned()),
        };
        let people = [
            who("bruno", PrincipalKind::Person, true),
            who("ci", PrincipalKind::Automation, true),
            who("amara", PrincipalKind::Person, false),
        ];
        let mut out = Vec::new();
        for p in people {
            for (action, target) in &targets {
                let plan = Plan {
                    version: PLAN_VERSION,
                    created_at: Utc.with_ymd_and_hms(2026, 11, 22, 3, 0, 0).unwrap(),
                    requester: Requester {
                        name: p.name.clone(),
                        kind: p.kind,
                    },
                    source: if p.kind == PrincipalKind::Automation {
                        Source::Ci
                    } else {
                        Source::Manual
                    },
                    severity: Severity::High,
                    incident: Some("INC-1".into()),
                    reason: None,
                    steps: vec![PlanStep {
                        id: "s1".into(),
                        action: *action,
                        target: target.clone(),
                        secret: None,
                        params: Default::default(),
                    }],
                };
                out.push((p.clone(), plan));
            }
        }
        out
    })
}

fn dir() -> &'static (tempfile::TempDir, PathBuf) {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    DIR.get_or_init(|| {
        let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let d = tempfile::tempdir().expect("tempdir");
        for f in cordon::policy::FILES {
            std::fs::copy(shipped.join(f), d.path().join(f)).expect("copy shipped policy");
        }
        let p = d.path().to_path_buf();
        (d, p)
    })
}

fuzz_target!(|data: &[u8]| {
    let (_, d) = dir();
    let (cedar, roster) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    std::fs::write(d.join("authority.cedar"), cedar).expect("write");
    let shipped_roster = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies/roster.toml");
    match roster {
        Some(r) => std::fs::write(d.join("roster.toml"), r).expect("write"),
        None => {
            std::fs::copy(&shipped_roster, d.join("roster.toml")).expect("copy");
        }
    }
    let Ok(policy) = cordon::policy::load(d) else {
        return;
    };
    // Bounded work per input: in CI's unoptimised build the shipped policy's 15
    // decisions each way take about 1.6 s, and libFuzzer counts an input over
    // 10 s as a failure. A deny's "what is missing" search asks Cedar once per
    // combination of up to three roles, so a roster of many roles multiplies
    // it: a policy of more than 25 rules or 8 roles (the shipped one has 20
    // and 7) is only loaded.
    if policy.policies().len() > 25 || policy.roster().roles.len() > 8 {
        return;
    }
    let Ok(reference) = cordon::policy::load(d) else {
        panic!("the same directory loaded once and not twice");
    };
    let reference = reference.rebuilding_entities_per_request();
    let now = Utc.with_ymd_and_hms(2026, 11, 22, 3, 20, 0).unwrap();
    for (who, plan) in asks() {
        let input = GateInput {
            plan_id: "fuzz",
            plan,
            step: &plan.steps[0],
            requester: who,
            approvals: &[],
            break_glass: None,
            now,
        };
        assert_eq!(policy.decide(&input), reference.decide(&input));
    }
});
