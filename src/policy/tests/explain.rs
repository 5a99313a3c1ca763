//! `cordon policy explain`'s library side.

use super::*;
use crate::policy::{ExplainError, WhatIf};

fn q(principal: &str, action: &str, target: &str) -> WhatIf {
    let mut w = WhatIf::new(principal, action, target);
    w.now = t0();
    w
}

#[test]
fn explains_a_deny_with_what_is_missing_then_the_allow() {
    let policy = shipped();
    let mut w = q("bruno", "aws:quarantine-role", "aws:role/deploy-prod");
    w.environment = Some("production".into());
    let e = policy.explain(&w).unwrap();
    assert!(!e.decision.is_allow());
    assert_eq!(e.decision_class, "contain");
    assert_eq!(
        e.decision.missing[0],
        "it needs 1 approval from role `security`; backup role `sre` counts after 15 min (in 15 min)"
    );
    assert_eq!(
        e.decision.missing[1],
        "or break-glass, which only a verified member of role `incident-commander` may declare (`--break-glass`); `bruno` is not one"
    );
    let ctx = e.context.as_ref().unwrap();
    assert_eq!(ctx.owner_role, "security");
    assert_eq!(ctx.approvals.count, 0);

    w.approvers = vec!["chen".into()];
    w.elapsed_minutes = 20;
    let e = policy.explain(&w).unwrap();
    assert!(e.decision.is_allow(), "{:?}", e.decision);
    assert_eq!(
        e.decision.policies,
        vec!["contain-identity-owner-approval".to_string()]
    );
    let ctx = e.context.unwrap();
    assert!(ctx.escalated);
    assert_eq!((ctx.approvals.owner, ctx.approvals.backup), (1, 1));
    assert_eq!(e.decision.policy_hash, policy.hash());
}

#[test]
fn explain_defaults_source_for_automation_and_notes_odd_approvers() {
    let policy = shipped();
    let w = q("ci", "aws:disable-access-key", "aws:access-key/AKIAEXAMPLE");
    let e = policy.explain(&w).unwrap();
    assert!(e.decision.is_allow(), "{:?}", e.decision);
    assert_eq!(e.context.unwrap().source, "ci");
    assert_eq!(e.principal.kind, PrincipalKind::Automation);

    let mut w = q("emeka", "aws:restore-role", "aws:role/deploy-prod");
    w.approvers = vec!["emeka".into(), "ci".into(), "zed".into(), "fatima".into()];
    let e = policy.explain(&w).unwrap();
    assert!(e
        .notes
        .iter()
        .any(|n| n.contains("`emeka` is the requester")));
    assert!(e
        .notes
        .iter()
        .any(|n| n.contains("`ci` is an automation principal")));
    assert!(e
        .notes
        .iter()
        .any(|n| n.contains("`zed` is not in roster.toml")));
    // fatima (platform) + zed (no role): two approvals, one role: denied.
    assert!(!e.decision.is_allow());
    assert!(
        e.decision.missing[0].contains("1 more approval from role"),
        "{:?}",
        e.decision.missing
    );
}

#[test]
fn explain_unverified_and_break_glass() {
    let policy = shipped();
    let mut w = q("dana", "aws:quarantine-role", "aws:role/breakglass-admin");
    w.tags.insert("cordon-protected".into(), "true".into());
    w.severity = Severity::Critical;
    let e = policy.explain(&w).unwrap();
    assert!(!e.decision.is_allow());
    assert_eq!(
        e.decision.policies,
        vec!["protected-targets-need-break-glass".to_string()]
    );
    assert!(
        e.decision
            .missing
            .iter()
            .any(|m| m.contains("break-glass: `dana` may declare it")),
        "{:?}",
        e.decision.missing
    );
    w.break_glass = true;
    let e = policy.explain(&w).unwrap();
    assert!(e.decision.is_allow() && e.decision.break_glass);
    w.verified = false;
    let e = policy.explain(&w).unwrap();
    assert!(!e.decision.is_allow());
    assert!(!e.principal.verified);
}

#[test]
fn explain_rejects_unknown_actions_and_bad_targets() {
    let policy = shipped();
    assert!(matches!(
        policy.explain(&q("bruno", "aws:delete-everything", "aws:role/x")),
        Err(ExplainError::UnknownAction(..))
    ));
    assert!(matches!(
        policy.explain(&q("bruno", "aws:quarantine-role", "deploy-prod")),
        Err(ExplainError::BadTarget(_))
    ));
    assert!(matches!(
        policy.explain(&q("bruno", "aws:quarantine-role", "gcp:role/x")),
        Err(ExplainError::UnknownProvider(_))
    ));
}
