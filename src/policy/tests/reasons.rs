//! Typed deny reasons (issue 15 item 4): one wording, a stable code, and the
//! line between a deny a person can lift and one only a policy change lifts.

use cordon_connector::{Action, Provider};

use super::*;
use crate::gate::Reason;

fn emeka_disables_a_key() -> Decision {
    let p = shipped();
    let plan = plan(
        "emeka",
        PrincipalKind::Person,
        Source::Manual,
        Severity::High,
        Action::AwsDisableAccessKey,
        target(Provider::Aws, "access-key", "AKIAEXAMPLE", None),
    );
    decide(
        &p,
        &plan,
        &principal("emeka", PrincipalKind::Person, true),
        &[],
        0,
        false,
    )
}

/// Issue 21 item 13: "break-glass declared by a verified member of role ..."
/// read as if break-glass had been declared. The reason now says who could
/// declare it and that the requester is not one.
#[test]
fn break_glass_only_for_a_role_states_the_condition_not_met() {
    let d = emeka_disables_a_key();
    assert!(!d.is_allow());
    let r = d
        .reasons
        .iter()
        .find(|r| r.code() == "break-glass-only-for")
        .unwrap_or_else(|| panic!("{d:?}"));
    let text = r.to_string();
    assert_eq!(
        text,
        "break-glass, which only a verified member of role `incident-commander` may declare (`--break-glass`); `emeka` is not one"
    );
    assert!(!text.contains("declared by"), "{text}");
    // A person can lift it (an incident commander declares break-glass).
    assert!(d.awaits_people(), "{d:?}");
}

/// The stored words (`missing`, `errors`) are the typed reasons rendered,
/// one to one: no front end words a reason again.
#[test]
fn a_decisions_missing_and_errors_are_its_reasons_rendered() {
    let d = emeka_disables_a_key();
    let rendered: Vec<String> = d.reasons.iter().map(ToString::to_string).collect();
    assert_eq!(d.missing, rendered);
    assert_eq!(d.why(), rendered.join("; "));
    let dir = tempfile::tempdir().unwrap();
    let gate = crate::policy::PolicyGate::load(dir.path(), false);
    let plan = plan(
        "amara",
        PrincipalKind::Person,
        Source::Manual,
        Severity::High,
        Action::AwsDisableAccessKey,
        target(Provider::Aws, "access-key", "AKIAEXAMPLE", None),
    );
    let who = principal("amara", PrincipalKind::Person, true);
    let d = crate::gate::Gate::decide(
        &gate,
        &GateInput {
            plan_id: "p",
            plan: &plan,
            step: &plan.steps[0],
            requester: &who,
            approvals: &[],
            break_glass: None,
            now: t0(),
        },
    );
    assert_eq!(d.reasons.len(), 1, "{d:?}");
    assert_eq!(d.reasons[0].code(), "policy-not-loaded");
    assert_eq!(d.errors, vec![d.reasons[0].to_string()]);
    assert!(d.missing.is_empty());
    assert!(
        !d.awaits_people(),
        "a policy that does not load is no wait for approval"
    );
}

/// A deny no approval, escalation or break-glass lifts is a deny (exit 3),
/// not "awaiting approval" (exit 5): before typed reasons any non-empty
/// `missing` counted as a wait, and `missing` always held the "no rule"
/// sentence.
#[test]
fn a_deny_nobody_can_lift_is_final_not_awaiting_approval() {
    let dir = copy_shipped();
    let cedar = dir.path().join(crate::policy::POLICY_FILE);
    let mut text = std::fs::read_to_string(&cedar).unwrap();
    text.push_str("\n@id(\"drill-forbid-all\")\nforbid(principal, action, resource);\n");
    std::fs::write(&cedar, text).unwrap();
    let p = load_dir(dir.path()).unwrap();
    let plan = plan(
        "amara",
        PrincipalKind::Person,
        Source::Manual,
        Severity::Critical,
        Action::AwsDisableAccessKey,
        target(Provider::Aws, "access-key", "AKIAEXAMPLE", None),
    );
    let d = decide(
        &p,
        &plan,
        &principal("amara", PrincipalKind::Person, true),
        &["bruno", "chen"],
        60,
        true,
    );
    assert!(!d.is_allow());
    let codes: Vec<&str> = d.reasons.iter().map(Reason::code).collect();
    assert!(codes.contains(&"forbidden"), "{codes:?}");
    assert!(codes.contains(&"forbid-is-final"), "{codes:?}");
    assert!(!d.awaits_people(), "{d:?}");
}

/// The codes are the serialised `code` key, unique, and read back.
#[test]
fn every_reason_has_a_stable_unique_code_that_round_trips() {
    let all = vec![
        Reason::PolicyNotLoaded { detail: "d".into() },
        Reason::ExampleSecretRefused { detail: "d".into() },
        Reason::EvaluationError { detail: "d".into() },
        Reason::Forbidden { policy: "p".into() },
        Reason::BreakGlassForbidden { policy: "p".into() },
        Reason::RequesterUnproven {
            name: "n".into(),
            automation: false,
            then: Some(Box::new(Reason::NeedsApprovals {
                count: 1,
                need: "needs 1 approval from role `security`".into(),
                alternative: false,
            })),
        },
        Reason::Escalation {
            in_minutes: 5,
            backup_role: "sre".into(),
            class: "contain".into(),
            after_minutes: 15,
        },
        Reason::NeedsApprovals {
            count: 2,
            need: "needs 2 approvals".into(),
            alternative: true,
        },
        Reason::BreakGlassAvailable {
            name: "n".into(),
            alternative: false,
        },
        Reason::BreakGlassOnlyFor {
            roles: vec!["a".into(), "b".into()],
            name: "n".into(),
            alternative: true,
        },
        Reason::NoRule {
            action: "a".into(),
            target: "t".into(),
            name: "n".into(),
            verified: false,
        },
        Reason::ForbidIsFinal,
        Reason::Halted {
            halt: "halted by `x`".into(),
        },
        Reason::HaltUnreadable { error: "e".into() },
        Reason::Limit {
            limit: "environments".into(),
            principal: "ci".into(),
            detail: "d".into(),
            plan: "p".into(),
            owner_role: "security".into(),
        },
        Reason::UsageUnavailable,
        Reason::LimitsWithoutState {
            principal: "ci".into(),
        },
        Reason::AutomationUnproven { name: "ci".into() },
    ];
    let mut codes = std::collections::BTreeSet::new();
    for r in &all {
        let v = serde_json::to_value(r).unwrap();
        assert_eq!(v["code"], r.code(), "{v}");
        assert!(codes.insert(r.code()), "code `{}` used twice", r.code());
        let back: Reason = serde_json::from_value(v).unwrap();
        assert_eq!(&back, r);
        assert!(!r.to_string().is_empty(), "{r:?} renders as nothing");
        assert_eq!(r.is_stop(), r.stop_condition().is_some(), "{r:?}");
    }
    assert_eq!(
        all[5].to_string(),
        "`n` is only claimed (`--as`): the requester must sign the plan with a key listed for `n` in allowed_signers, and it needs 1 approval from role `security`"
    );
}

/// A stop keeps its two parts: `stopped` (the condition) and the rendered
/// reason with what lifts it, as before typed reasons.
#[test]
fn a_stop_is_its_condition_and_what_lifts_it() {
    let allow = Decision {
        effect: crate::gate::Effect::Allow,
        policies: vec!["p".into()],
        policy_hash: "h".into(),
        errors: vec![],
        missing: vec![],
        break_glass: false,
        stopped: None,
        reasons: vec![],
    };
    let d = allow.stop(Reason::LimitsWithoutState {
        principal: "ci".into(),
    });
    assert_eq!(
        d.stopped.as_deref(),
        Some("stopped: `ci` has limits, and this gate has no state to count them against")
    );
    assert_eq!(
        d.missing,
        vec!["stopped: `ci` has limits, and this gate has no state to count them against: run it through a command that opens the state directory".to_owned()]
    );
    assert!(d.is_stopped() && d.awaits_people());
}

/// Records written before typed reasons (no `reasons` key) still read and
/// say what they said.
#[test]
fn a_decision_recorded_before_typed_reasons_reads_as_before() {
    let d: Decision = serde_json::from_str(
        r#"{"effect":"deny","policies":[],"policy_hash":"h","missing":["needs 1 approval from role `security`"]}"#,
    )
    .unwrap();
    assert!(d.reasons.is_empty());
    assert!(d.awaits_people());
    assert_eq!(d.why(), "needs 1 approval from role `security`");
    let d: Decision = serde_json::from_str(
        r#"{"effect":"deny","policies":[],"policy_hash":"h","errors":["boom"]}"#,
    )
    .unwrap();
    assert!(!d.awaits_people());
    assert_eq!(d.why(), "boom");
}
