//! Signed approvals: who counts, who does not, and why (one reason each).

use chrono::Duration;
use cordon_connector::{Action, Provider, Secret};

use super::*;
use crate::policy::{
    sign, ApprovalError, AuthRequest, Authentication, Policy, RejectedItem, StoredSignature,
};

/// A policy directory with freshly generated keys, and their private halves.
struct Org {
    dir: tempfile::TempDir,
    keys: tempfile::TempDir,
    policy: Policy,
}

impl Org {
    fn key(&self, name: &str) -> PathBuf {
        self.keys.path().join(format!("{name}_ed25519"))
    }

    /// cordon's own signature.
    fn sign(&self, name: &str, bytes: &[u8]) -> String {
        sign(bytes, &self.key(name)).unwrap()
    }

    fn stored(&self, name: &str, bytes: &[u8]) -> StoredSignature {
        StoredSignature {
            armored: self.sign(name, bytes),
            recorded_at: t0() + Duration::minutes(1),
            claimed_signer: None,
        }
    }
}

/// amara, bruno, chen, emeka, fatima with current keys; hiro with an expired
/// key; gwen with a key restricted to git; `ci` with a key; mallory with a key
/// that is not listed; fatima valid only from 2026-11-22 03:30.
fn org() -> Org {
    let dir = copy_shipped();
    let keys = tempfile::tempdir().unwrap();
    let mut signers = String::from("# generated for the test\n");
    for name in [
        "amara", "bruno", "chen", "emeka", "fatima", "gwen", "hiro", "ci", "mallory", "dana",
    ] {
        let (_, public) = keygen(keys.path(), name, "ed25519", "");
        let line = match name {
            "mallory" => continue,
            "hiro" => format!("hiro valid-before=\"20250101Z\" {public}"),
            "gwen" => format!("gwen namespaces=\"git\" {public}"),
            "fatima" => format!("fatima valid-after=\"202611220330Z\" {public}"),
            "dana" => format!("dana,dana@northwind.example {public}"),
            _ => format!("{name} namespaces=\"git,cordon-plan\" {public}"),
        };
        signers.push_str(&line);
        signers.push('\n');
    }
    std::fs::write(dir.path().join("allowed_signers"), signers).unwrap();
    let policy = crate::policy::load(dir.path()).unwrap();
    Org { dir, keys, policy }
}

fn quarantine_plan(requester: &str) -> (Plan, Vec<u8>) {
    let p = plan(
        requester,
        PrincipalKind::Person,
        Source::Manual,
        Severity::High,
        Action::AwsQuarantineRole,
        target(Provider::Aws, "role", "deploy-prod", Some("production")),
    );
    let bytes = p.to_canonical_bytes().unwrap();
    (p, bytes)
}

fn auth(
    org: &Org,
    plan: &Plan,
    bytes: &[u8],
    sigs: &[StoredSignature],
    minutes: i64,
) -> Authentication {
    org.policy.authenticate(&AuthRequest {
        plan,
        plan_bytes: bytes,
        claimed_requester: &plan.requester.name,
        signatures: sigs,
        automation_secret: None,
        now: t0() + Duration::minutes(minutes),
    })
}

fn only_rejection(a: &Authentication) -> &ApprovalError {
    assert_eq!(a.rejected.len(), 1, "{:#?}", a.rejected);
    &a.rejected[0].error
}

#[test]
fn requester_signature_proves_requester_and_approval_counts_end_to_end() {
    let org = org();
    let (plan, bytes) = quarantine_plan("bruno");
    let sigs = vec![org.stored("bruno", &bytes), org.stored("amara", &bytes)];
    let a = auth(&org, &plan, &bytes, &sigs, 2);
    assert!(a.rejected.is_empty(), "{:#?}", a.rejected);
    assert!(a.principal.verified);
    assert!(a
        .principal
        .proof
        .as_deref()
        .unwrap()
        .starts_with("ssh:SHA256:"));
    assert_eq!(a.approvals.len(), 1);
    assert_eq!(a.approvals[0].signer, "amara");
    assert!(a.approvals[0].key_fingerprint.starts_with("SHA256:"));

    // and the gate allows on that basis
    let input = GateInput {
        plan_id: "x",
        plan: &plan,
        step: &plan.steps[0],
        requester: &a.principal,
        approvals: &a.approvals,
        break_glass: None,
        now: t0() + Duration::minutes(2),
    };
    let d = org.policy.decide(&input);
    assert!(d.is_allow(), "{d:?}");
    assert_eq!(
        d.policies,
        vec!["contain-identity-owner-approval".to_string()]
    );

    // without amara's approval: denied, and the reason names the owner role
    let a = auth(&org, &plan, &bytes, &sigs[..1], 2);
    let input = GateInput {
        approvals: &a.approvals,
        requester: &a.principal,
        ..input
    };
    let d = org.policy.decide(&input);
    assert!(!d.is_allow());
    assert!(
        d.missing[0].contains("needs 1 approval from role `security`"),
        "{:?}",
        d.missing
    );
}

#[test]
fn no_signature_means_unverified_and_real_providers_are_denied() {
    let org = org();
    let (plan, bytes) = quarantine_plan("bruno");
    let a = auth(&org, &plan, &bytes, &[], 2);
    assert!(!a.principal.verified);
    assert_eq!(a.principal.proof, None);
    let input = GateInput {
        plan_id: "x",
        plan: &plan,
        step: &plan.steps[0],
        requester: &a.principal,
        approvals: &a.approvals,
        break_glass: None,
        now: t0(),
    };
    let d = org.policy.decide(&input);
    assert!(!d.is_allow());
    assert_eq!(d.policies, vec!["unverified-only-test-targets".to_string()]);
}

#[test]
fn forged_signature_from_an_unlisted_key_is_an_unknown_signer() {
    let org = org();
    let (plan, bytes) = quarantine_plan("bruno");
    let sigs = vec![org.stored("bruno", &bytes), org.stored("mallory", &bytes)];
    let a = auth(&org, &plan, &bytes, &sigs, 2);
    assert!(matches!(
        only_rejection(&a),
        ApprovalError::UnknownSigner { .. }
    ));
    assert_eq!(a.rejected[0].item, RejectedItem::Signature(1));
    assert_eq!(a.rejected[0].code, "unknown-signer");
    assert!(a.approvals.is_empty());
}

#[test]
fn a_listed_key_claiming_someone_elses_name_is_refused() {
    let org = org();
    let (plan, bytes) = quarantine_plan("bruno");
    let mut forged = org.stored("chen", &bytes);
    forged.claimed_signer = Some("amara".into());
    let sigs = vec![org.stored("bruno", &bytes), forged];
    let a = auth(&org, &plan, &bytes, &sigs, 2);
    assert!(
        matches!(only_rejection(&a), ApprovalError::NotListedFor { claimed, .. } if claimed == "amara")
    );
}

#[test]
fn tampered_signature_bytes_are_refused() {
    let org = org();
    let (plan, bytes) = quarantine_plan("bruno");
    let good = org.sign("amara", &bytes);
    // Flip one character inside the base64 body's last line (the signature).
    let mut lines: Vec<String> = good.lines().map(str::to_owned).collect();
    let n = lines.len() - 2;
    let mut chars: Vec<char> = lines[n].chars().collect();
    let k = chars.len() / 2;
    chars[k] = if chars[k] == 'A' { 'B' } else { 'A' };
    lines[n] = chars.into_iter().collect();
    let forged = lines.join("\n");
    let sigs = vec![
        org.stored("bruno", &bytes),
        StoredSignature {
            armored: forged,
            recorded_at: t0(),
            claimed_signer: None,
        },
    ];
    let a = auth(&org, &plan, &bytes, &sigs, 2);
    assert!(
        matches!(
            only_rejection(&a),
            ApprovalError::NotThisPlan { .. } | ApprovalError::Malformed(_)
        ),
        "{:?}",
        a.rejected
    );
    assert!(a.approvals.is_empty());
}

#[test]
fn self_approval_is_refused() {
    let org = org();
    let (plan, bytes) = quarantine_plan("bruno");
    let sigs = vec![org.stored("bruno", &bytes), org.stored("bruno", &bytes)];
    let a = auth(&org, &plan, &bytes, &sigs, 2);
    assert!(a.principal.verified);
    assert!(
        matches!(only_rejection(&a), ApprovalError::SelfApproval { signer } if signer == "bruno")
    );
    assert!(a.approvals.is_empty());
}

#[test]
fn a_second_approval_by_the_same_person_is_refused() {
    let org = org();
    let (plan, bytes) = quarantine_plan("bruno");
    // One made by cordon, one by ssh-keygen: different bytes, same person.
    let by_keygen = keygen_sign(&org.key("amara"), "cordon-plan", &bytes, org.keys.path());
    let sigs = vec![
        org.stored("bruno", &bytes),
        org.stored("amara", &bytes),
        StoredSignature {
            armored: by_keygen,
            recorded_at: t0(),
            claimed_signer: None,
        },
    ];
    let a = auth(&org, &plan, &bytes, &sigs, 2);
    assert!(
        matches!(only_rejection(&a), ApprovalError::DuplicateApproval { signer } if signer == "amara")
    );
    assert_eq!(a.rejected[0].item, RejectedItem::Signature(2));
    assert_eq!(a.approvals.len(), 1);
}

#[test]
fn an_approval_replayed_from_another_plan_is_refused() {
    let org = org();
    let (plan, bytes) = quarantine_plan("bruno");
    let mut other = plan.clone();
    other.steps[0].target.id = "deploy-staging".into();
    let other_bytes = other.to_canonical_bytes().unwrap();
    let sigs = vec![
        org.stored("bruno", &bytes),
        org.stored("amara", &other_bytes),
    ];
    let a = auth(&org, &plan, &bytes, &sigs, 2);
    assert!(
        matches!(only_rejection(&a), ApprovalError::NotThisPlan { signer } if signer == "amara")
    );
    assert!(a.approvals.is_empty());
}

#[test]
fn expired_and_not_yet_valid_keys_are_refused() {
    let org = org();
    let (plan, bytes) = quarantine_plan("bruno");
    // hiro's key expired on 2025-01-01.
    let sigs = vec![org.stored("bruno", &bytes), org.stored("hiro", &bytes)];
    let a = auth(&org, &plan, &bytes, &sigs, 2);
    assert!(
        matches!(only_rejection(&a), ApprovalError::KeyExpired { signer, .. } if signer == "hiro")
    );
    assert!(
        a.rejected[0].message.contains("allowed_signers line"),
        "{}",
        a.rejected[0].message
    );

    // fatima's key is valid from 03:30; recorded at 03:01 → not yet valid.
    let sigs = vec![org.stored("bruno", &bytes), org.stored("fatima", &bytes)];
    let a = auth(&org, &plan, &bytes, &sigs, 45);
    assert!(
        matches!(only_rejection(&a), ApprovalError::KeyNotYetValid { signer, .. } if signer == "fatima")
    );

    // recorded after 03:30: counts.
    let mut late = org.stored("fatima", &bytes);
    late.recorded_at = t0() + Duration::minutes(31);
    let sigs = vec![org.stored("bruno", &bytes), late];
    let a = auth(&org, &plan, &bytes, &sigs, 45);
    assert!(a.rejected.is_empty(), "{:?}", a.rejected);
    assert_eq!(a.approvals[0].signer, "fatima");
}

#[test]
fn a_key_that_expires_after_recording_stops_counting() {
    // Valid when recorded, expired when used: refused (checked at both times).
    let dir = copy_shipped();
    let keys = tempfile::tempdir().unwrap();
    let (_, bruno) = keygen(keys.path(), "bruno", "ed25519", "");
    let (_, amara) = keygen(keys.path(), "amara", "ed25519", "");
    std::fs::write(
        dir.path().join("allowed_signers"),
        format!("bruno {bruno}\namara valid-before=\"202611220310Z\" {amara}\n"),
    )
    .unwrap();
    let policy = crate::policy::load(dir.path()).unwrap();
    let (plan, bytes) = quarantine_plan("bruno");
    let st = |n: &str| StoredSignature {
        armored: sign(&bytes, &keys.path().join(format!("{n}_ed25519"))).unwrap(),
        recorded_at: t0() + Duration::minutes(1),
        claimed_signer: None,
    };
    let sigs = vec![st("bruno"), st("amara")];
    let req = |m: i64| AuthRequest {
        plan: &plan,
        plan_bytes: &bytes,
        claimed_requester: "bruno",
        signatures: &sigs,
        automation_secret: None,
        now: t0() + Duration::minutes(m),
    };
    assert_eq!(policy.authenticate(&req(5)).approvals.len(), 1);
    let late = policy.authenticate(&req(20));
    assert!(late.approvals.is_empty());
    assert!(matches!(
        late.rejected[0].error,
        ApprovalError::KeyExpired { .. }
    ));
}

#[test]
fn wrong_namespace_and_namespace_not_allowed_are_distinct() {
    let org = org();
    let (plan, bytes) = quarantine_plan("bruno");
    let file_ns = keygen_sign(&org.key("amara"), "file", &bytes, org.keys.path());
    let sigs = vec![
        org.stored("bruno", &bytes),
        StoredSignature {
            armored: file_ns,
            recorded_at: t0(),
            claimed_signer: None,
        },
    ];
    let a = auth(&org, &plan, &bytes, &sigs, 2);
    assert!(
        matches!(only_rejection(&a), ApprovalError::WrongNamespace { found } if found == "file")
    );

    // gwen's key is listed for namespace git only.
    let sigs = vec![org.stored("bruno", &bytes), org.stored("gwen", &bytes)];
    let a = auth(&org, &plan, &bytes, &sigs, 2);
    assert!(
        matches!(only_rejection(&a), ApprovalError::NamespaceNotAllowed { signer, .. } if signer == "gwen")
    );
}

#[test]
fn automation_cannot_approve_and_is_proven_by_its_secret() {
    let org = org();
    let (plan, bytes) = quarantine_plan("bruno");
    let sigs = vec![org.stored("bruno", &bytes), org.stored("ci", &bytes)];
    let a = auth(&org, &plan, &bytes, &sigs, 2);
    assert!(
        matches!(only_rejection(&a), ApprovalError::AutomationApproval { signer } if signer == "ci")
    );

    let ci_plan = super::plan(
        "ci",
        PrincipalKind::Automation,
        Source::Ci,
        Severity::High,
        Action::AwsDisableAccessKey,
        target(
            Provider::Aws,
            "access-key",
            "AKIAEXAMPLE",
            Some("production"),
        ),
    );
    let ci_bytes = ci_plan.to_canonical_bytes().unwrap();
    let with_secret = |s: &Secret| {
        org.policy.authenticate(&AuthRequest {
            plan: &ci_plan,
            plan_bytes: &ci_bytes,
            claimed_requester: "ci",
            signatures: &[],
            automation_secret: Some(s),
            now: t0(),
        })
    };
    let good = with_secret(&Secret::new("cordon-example-ci-secret-replace-me"));
    assert!(good.principal.verified, "{good:?}");
    assert_eq!(good.principal.kind, PrincipalKind::Automation);
    assert_eq!(
        good.principal.proof.as_deref(),
        Some("automation-secret:CORDON_CI_SECRET")
    );
    let input = GateInput {
        plan_id: "x",
        plan: &ci_plan,
        step: &ci_plan.steps[0],
        requester: &good.principal,
        approvals: &good.approvals,
        break_glass: None,
        now: t0(),
    };
    assert!(org.policy.decide(&input).is_allow());

    let bad = with_secret(&Secret::new("cordon-example-ci-secret-replace-mE"));
    assert!(!bad.principal.verified);
    assert!(matches!(
        only_rejection(&bad),
        ApprovalError::SecretMismatch { .. }
    ));
    assert!(
        !bad.rejected[0].message.contains("replace-mE"),
        "the secret must not be echoed"
    );
    assert_eq!(bad.rejected[0].item, RejectedItem::AutomationSecret);

    // the agent's secret does not prove ci
    let other = with_secret(&Secret::new("cordon-example-agent-secret-replace-me"));
    assert!(!other.principal.verified);

    // ci may also be proven by its key, as the first signature
    let a = org.policy.authenticate(&AuthRequest {
        plan: &ci_plan,
        plan_bytes: &ci_bytes,
        claimed_requester: "ci",
        signatures: &[org.stored("ci", &ci_bytes)],
        automation_secret: None,
        now: t0() + Duration::minutes(2),
    });
    assert!(a.principal.verified && a.principal.proof.unwrap().starts_with("ssh:"));
}

#[test]
fn a_secret_proves_nothing_for_a_person() {
    let org = org();
    let (plan, bytes) = quarantine_plan("bruno");
    let s = Secret::new("cordon-example-ci-secret-replace-me");
    let a = org.policy.authenticate(&AuthRequest {
        plan: &plan,
        plan_bytes: &bytes,
        claimed_requester: "bruno",
        signatures: &[],
        automation_secret: Some(&s),
        now: t0(),
    });
    assert!(!a.principal.verified);
    assert!(matches!(
        only_rejection(&a),
        ApprovalError::SecretNotConfigured { .. }
    ));
}

#[test]
fn someone_else_proving_themselves_does_not_become_the_requester() {
    let org = org();
    let (plan, bytes) = quarantine_plan("bruno");
    let sigs = vec![org.stored("chen", &bytes)];
    let a = org.policy.authenticate(&AuthRequest {
        plan: &plan,
        plan_bytes: &bytes,
        claimed_requester: "chen",
        signatures: &sigs,
        automation_secret: None,
        now: t0() + Duration::minutes(2),
    });
    assert!(!a.principal.verified);
    assert!(matches!(
        only_rejection(&a),
        ApprovalError::RequesterMismatch { .. }
    ));
}

#[test]
fn a_signature_recorded_in_the_future_is_refused() {
    let org = org();
    let (plan, bytes) = quarantine_plan("bruno");
    let mut s = org.stored("amara", &bytes);
    s.recorded_at = t0() + Duration::hours(3);
    let sigs = vec![org.stored("bruno", &bytes), s];
    let a = auth(&org, &plan, &bytes, &sigs, 2);
    assert!(matches!(
        only_rejection(&a),
        ApprovalError::RecordedInFuture { .. }
    ));
}

#[test]
fn a_key_listed_under_two_names_needs_the_signers_name() {
    let org = org();
    let (plan, bytes) = quarantine_plan("bruno");
    // dana's line lists `dana,dana@northwind.example`: ambiguous by key alone.
    let sigs = vec![org.stored("bruno", &bytes), org.stored("dana", &bytes)];
    let a = auth(&org, &plan, &bytes, &sigs, 20);
    assert!(matches!(
        only_rejection(&a),
        ApprovalError::AmbiguousSigner { .. }
    ));
    let mut named = org.stored("dana", &bytes);
    named.claimed_signer = Some("dana".into());
    let sigs = vec![org.stored("bruno", &bytes), named];
    let a = auth(&org, &plan, &bytes, &sigs, 20);
    assert!(a.rejected.is_empty(), "{:?}", a.rejected);
    assert_eq!(a.approvals[0].signer, "dana");
    let _ = &org.dir;
}

#[test]
fn garbage_is_malformed() {
    let org = org();
    let (plan, bytes) = quarantine_plan("bruno");
    let sigs = vec![StoredSignature {
        armored: "not a signature".into(),
        recorded_at: t0(),
        claimed_signer: None,
    }];
    let a = auth(&org, &plan, &bytes, &sigs, 2);
    assert!(matches!(only_rejection(&a), ApprovalError::Malformed(_)));
}

#[test]
fn every_rejection_reason_has_its_own_code() {
    let all = [
        ApprovalError::Malformed(String::new()),
        ApprovalError::WrongNamespace {
            found: String::new(),
        },
        ApprovalError::UnknownSigner {
            fingerprint: String::new(),
        },
        ApprovalError::NotListedFor {
            claimed: String::new(),
            fingerprint: String::new(),
        },
        ApprovalError::AmbiguousSigner {
            fingerprint: String::new(),
            candidates: String::new(),
        },
        ApprovalError::NamespaceNotAllowed {
            signer: String::new(),
            line: 0,
        },
        ApprovalError::NotThisPlan {
            signer: String::new(),
        },
        ApprovalError::KeyNotYetValid {
            signer: String::new(),
            at: String::new(),
            line: 0,
            window: String::new(),
        },
        ApprovalError::KeyExpired {
            signer: String::new(),
            at: String::new(),
            line: 0,
            window: String::new(),
        },
        ApprovalError::RecordedInFuture {
            signer: String::new(),
            recorded_at: String::new(),
        },
        ApprovalError::DuplicateApproval {
            signer: String::new(),
        },
        ApprovalError::SelfApproval {
            signer: String::new(),
        },
        ApprovalError::AutomationApproval {
            signer: String::new(),
        },
        ApprovalError::RequesterMismatch {
            signer: String::new(),
            requester: String::new(),
        },
        ApprovalError::SecretMismatch {
            name: String::new(),
            env: String::new(),
        },
        ApprovalError::SecretNotConfigured {
            name: String::new(),
        },
    ];
    let codes: std::collections::BTreeSet<_> = all.iter().map(|e| e.code()).collect();
    assert_eq!(codes.len(), all.len());
    for e in &all {
        let m = e.to_string();
        assert!(m.starts_with(|c: char| !c.is_uppercase()), "lowercase: {m}");
    }
}

/// Regression (issue 15): the secret check lived twice, in `authenticate`
/// with the requester-mismatch check and in the incident commands without
/// it. Both now ask `prove_automation`; a secret proves only the name it was
/// configured for, and in a plan run only when that name is the requester.
#[test]
fn one_proof_of_an_automation_principal_for_plans_and_incident_records() {
    let org = org();
    let ci = Secret::new("cordon-example-ci-secret-replace-me");
    assert_eq!(
        org.policy.prove_automation("ci", &ci).unwrap(),
        "automation-secret:CORDON_CI_SECRET"
    );
    assert!(matches!(
        org.policy.prove_automation("agent", &ci),
        Err(ApprovalError::SecretMismatch { .. })
    ));
    assert!(matches!(
        org.policy.prove_automation("bruno", &ci),
        Err(ApprovalError::SecretNotConfigured { .. })
    ));
    // A plan requested by `agent`, run by `ci` with ci's own good secret:
    // the secret is right, the name is not the requester's.
    let agent_plan = super::plan(
        "agent",
        PrincipalKind::Automation,
        Source::Agent,
        Severity::High,
        Action::AwsDisableAccessKey,
        target(
            Provider::Aws,
            "access-key",
            "AKIAEXAMPLE",
            Some("production"),
        ),
    );
    let bytes = agent_plan.to_canonical_bytes().unwrap();
    let a = org.policy.authenticate(&AuthRequest {
        plan: &agent_plan,
        plan_bytes: &bytes,
        claimed_requester: "ci",
        signatures: &[],
        automation_secret: Some(&ci),
        now: t0(),
    });
    assert!(!a.principal.verified, "{a:?}");
    assert!(matches!(
        only_rejection(&a),
        ApprovalError::RequesterMismatch { .. }
    ));
    // Outside a plan a person is a claim: no secret proves a person.
    let person = org.policy.actor("bruno");
    assert!(!person.verified && person.kind == PrincipalKind::Person);
}
