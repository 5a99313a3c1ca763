//! The shipped policy as a table: principals × actions × targets × severities
//! × approvals × elapsed time × break-glass → allow/deny, the deciding
//! policies, and what the deny says is missing.

use cordon_connector::{Action, Provider, Target};

use super::*;
use crate::gate::Effect;

#[derive(Clone, Copy)]
enum Who {
    /// A verified person (signature).
    P(&'static str),
    /// A verified automation principal (secret).
    A(&'static str),
    /// A claimed name (`--as`), person.
    U(&'static str),
    /// A claimed automation name.
    UA(&'static str),
}

#[derive(Clone, Copy)]
enum T {
    Key,
    Token,
    DeployKey,
    RoleProd,
    RoleStaging,
    RoleUnlabelled,
    UserProd,
    Protected,
    Item,
}

fn tgt(t: T) -> Target {
    match t {
        T::Key => target(
            Provider::Aws,
            "access-key",
            "AKIAEXAMPLE000000001",
            Some("production"),
        ),
        T::Token => target(
            Provider::Github,
            "token",
            "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=",
            None,
        ),
        T::DeployKey => target(Provider::Github, "deploy-key", "northwind/site#42", None),
        T::RoleProd => target(Provider::Aws, "role", "deploy-prod", Some("production")),
        T::RoleStaging => target(Provider::Aws, "role", "deploy-staging", Some("staging")),
        T::RoleUnlabelled => target(Provider::Aws, "role", "legacy-batch", None),
        T::UserProd => target(Provider::Aws, "user", "svc-billing", Some("production")),
        T::Protected => {
            let mut t = target(
                Provider::Aws,
                "role",
                "breakglass-admin",
                Some("production"),
            );
            t.tags.insert("cordon-protected".into(), "true".into());
            t
        }
        T::Item => target(Provider::Test, "item", "one", None),
    }
}

struct Row {
    who: Who,
    source: Source,
    action: Action,
    target: T,
    severity: Severity,
    approvers: &'static [&'static str],
    elapsed: i64,
    break_glass: bool,
    allow: bool,
    /// A policy id that must be among the deciding ones ("" = none expected).
    policy: &'static str,
    /// Text that must appear in `missing` (deny) ("" = not checked).
    missing: &'static str,
    /// For allows: whether it rests on break-glass.
    bg_recorded: bool,
}

#[allow(clippy::too_many_arguments)]
const fn row(
    who: Who,
    action: Action,
    target: T,
    severity: Severity,
    approvers: &'static [&'static str],
    elapsed: i64,
    allow: bool,
    policy: &'static str,
    missing: &'static str,
) -> Row {
    Row {
        who,
        source: Source::Manual,
        action,
        target,
        severity,
        approvers,
        elapsed,
        break_glass: false,
        allow,
        policy,
        missing,
        bg_recorded: false,
    }
}

use Action as Ac;
use Severity::*;
use Who::*;
use T::*;

fn rows() -> Vec<Row> {
    let src = |mut r: Row, s: Source| {
        r.source = s;
        r
    };
    let bg = |mut r: Row, recorded: bool| {
        r.break_glass = true;
        r.bg_recorded = recorded;
        r
    };
    vec![
        // --- probing a leaked token's owner (GET /user): proven principals only
        row(P("chen"), Ac::GithubProbeToken, Token, Medium, &[], 0, true, "probe-leaked-token-for-evidence", ""),
        row(A("ci"), Ac::GithubProbeToken, Token, High, &[], 0, true, "probe-leaked-token-for-evidence", ""),
        row(U("chen"), Ac::GithubProbeToken, Token, Critical, &[], 0, false, "unverified-only-test-targets", ""),
        // --- containment of credentials: any verified responder, alone -----
        row(P("bruno"), Ac::AwsDisableAccessKey, Key, Low, &[], 0, true, "contain-credential-responder", ""),
        row(P("chen"), Ac::GithubRevokeToken, Token, Medium, &[], 0, true, "contain-credential-responder", ""),
        row(P("chen"), Ac::GithubDeleteDeployKey, DeployKey, Low, &[], 0, true, "contain-credential-responder", ""),
        row(P("dana"), Ac::AwsDisableAccessKey, Key, Critical, &[], 0, true, "contain-credential-responder", ""),
        // platform and comms are not responders: no approval helps, break-glass does
        row(P("emeka"), Ac::AwsDisableAccessKey, Key, High, &[], 0, false, "", "break-glass, which only a verified member of role `incident-commander` may declare"),
        row(P("gwen"), Ac::GithubRevokeToken, Token, Critical, &["amara", "bruno"], 30, false, "", "incident-commander"),
        // --- containment of identities -------------------------------------
        row(P("bruno"), Ac::AwsQuarantineRole, RoleProd, High, &[], 0, false, "",
            "needs 1 approval from role `security`; backup role `sre` counts after 15 min (in 15 min)"),
        row(P("bruno"), Ac::AwsQuarantineRole, RoleProd, High, &["amara"], 0, true, "contain-identity-owner-approval", ""),
        // the backup's approval counts only after the escalation delay
        row(P("bruno"), Ac::AwsQuarantineRole, RoleProd, High, &["chen"], 5, false, "", "allowed in 10 min, when the approval from backup role `sre` counts"),
        row(P("bruno"), Ac::AwsQuarantineRole, RoleProd, High, &["chen"], 14, false, "", "allowed in 1 min"),
        row(P("bruno"), Ac::AwsQuarantineRole, RoleProd, High, &["chen"], 15, true, "contain-identity-owner-approval", ""),
        row(P("chen"), Ac::AwsRevokeRoleSessions, RoleProd, Medium, &["dana"], 20, true, "contain-identity-owner-approval", ""),
        row(P("chen"), Ac::AwsRevokeRoleSessions, RoleProd, Medium, &["dana"], 14, false, "", "allowed in 1 min"),
        // the requester's own approval never counts, nor an approver twice
        row(P("bruno"), Ac::AwsQuarantineRole, RoleProd, High, &["bruno"], 60, false, "", "needs 1 approval from role `security`"),
        row(P("bruno"), Ac::AwsQuarantineRole, RoleProd, High, &["gwen", "hiro"], 60, false, "", "needs 1 approval from role `security` or its backup role `sre` (escalated"),
        row(P("chen"), Ac::AwsQuarantineRole, RoleStaging, Low, &[], 0, true, "contain-identity-nonproduction", ""),
        row(P("chen"), Ac::AwsQuarantineRole, RoleUnlabelled, Medium, &[], 0, false, "", "needs 1 approval from role `security`"),
        row(P("bruno"), Ac::AwsQuarantineUser, UserProd, Critical, &[], 0, true, "contain-identity-critical-security", ""),
        row(P("chen"), Ac::AwsQuarantineUser, UserProd, Critical, &[], 0, false, "", "needs 1 approval from role `security`"),
        row(P("bruno"), Ac::AwsQuarantineUser, UserProd, High, &[], 0, false, "", "needs 1 approval"),
        // --- ci: contains a leak of its own kind, nothing more --------------
        src(row(A("ci"), Ac::AwsDisableAccessKey, Key, Low, &[], 0, true, "ci-contains-leaked-credentials", ""), Source::Ci),
        src(row(A("ci"), Ac::GithubRevokeToken, Token, Medium, &[], 0, true, "ci-contains-leaked-credentials", ""), Source::Ci),
        src(row(A("ci"), Ac::GithubDeleteDeployKey, DeployKey, Critical, &[], 0, false, "", ""), Source::Ci),
        src(row(A("ci"), Ac::AwsQuarantineRole, RoleProd, Critical, &["amara", "bruno"], 60, false,
            "automation-never-quarantines-production-identities", "forbidden by `automation-never-quarantines-production-identities`"), Source::Ci),
        src(row(A("ci"), Ac::AwsQuarantineRole, RoleUnlabelled, Critical, &[], 0, false,
            "automation-never-quarantines-production-identities", ""), Source::Ci),
        src(row(A("ci"), Ac::AwsQuarantineRole, RoleStaging, Critical, &[], 0, false, "", ""), Source::Ci),
        // ci's permit is for leaks found by ci
        src(row(A("ci"), Ac::AwsDisableAccessKey, Key, Low, &[], 0, false, "", ""), Source::Manual),
        src(row(UA("ci"), Ac::AwsDisableAccessKey, Key, Low, &[], 0, false, "unverified-only-test-targets",
            "only claimed (`--as`): the automation principal must present its configured secret or key"), Source::Ci),
        src(row(A("ci"), Ac::AwsRestoreAccessKey, Key, Low, &["emeka", "fatima"], 0, false, "automation-never-restores", ""), Source::Ci),
        // issue 16: ending the sessions a leaked key minted is part of killing the key, for
        // ci and agent too (not a quarantine: the user keeps working); quarantining stays human
        src(row(A("ci"), Ac::AwsRevokeUserSessions, UserProd, Low, &[], 0, true, "ci-contains-leaked-credentials", ""), Source::Ci),
        src(row(A("ci"), Ac::AwsQuarantineUser, UserProd, Critical, &[], 0, false, "automation-never-quarantines-production-identities", ""), Source::Ci),
        src(row(A("agent"), Ac::AwsRevokeUserSessions, UserProd, High, &[], 0, true, "agent-contains-reported-credentials", ""), Source::Agent),
        src(row(A("agent"), Ac::AwsQuarantineUser, UserProd, High, &[], 0, false, "", ""), Source::Agent),
        row(P("chen"), Ac::AwsRevokeUserSessions, UserProd, Medium, &[], 0, true, "contain-credential-responder", ""),
        row(P("chen"), Ac::AwsQuarantineUser, UserProd, Medium, &[], 0, false, "", ""),
        // --- agent -----------------------------------------------------------
        src(row(A("agent"), Ac::GithubRevokeToken, Token, High, &[], 0, true, "agent-contains-reported-credentials", ""), Source::Agent),
        src(row(A("agent"), Ac::GithubRevokeToken, Token, Low, &[], 0, false, "", "needs 1 approval from role `security`"), Source::Agent),
        src(row(A("agent"), Ac::GithubRevokeToken, Token, Low, &["bruno"], 0, true, "agent-contains-reported-credentials", ""), Source::Agent),
        src(row(A("agent"), Ac::GithubDeleteDeployKey, DeployKey, Critical, &[], 0, false, "", ""), Source::Agent),
        // --- restoration: more authority than containment -------------------
        row(P("emeka"), Ac::AwsRestoreAccessKey, Key, Low, &[], 0, false, "",
            "needs 1 approval from role `platform`; backup role `incident-commander` counts after 60 min (in 60 min)"),
        row(P("emeka"), Ac::AwsRestoreAccessKey, Key, Low, &["fatima"], 0, true, "restore-credential-owner-approval", ""),
        row(P("emeka"), Ac::AwsRestoreAccessKey, Key, Low, &["amara"], 30, false, "", "allowed in 30 min, when the approval from backup role `incident-commander` counts"),
        row(P("emeka"), Ac::AwsRestoreAccessKey, Key, Low, &["amara"], 60, true, "restore-credential-owner-approval", ""),
        row(P("emeka"), Ac::AwsRestoreRole, RoleProd, Medium, &["fatima"], 0, false, "", "1 more approval from role"),
        row(P("emeka"), Ac::AwsRestoreRole, RoleProd, Medium, &["fatima", "bruno"], 0, true, "restore-identity-two-roles", ""),
        row(P("emeka"), Ac::AwsRestoreUser, UserProd, Medium, &["fatima", "emeka"], 0, false, "", ""),
        row(P("bruno"), Ac::AwsRestoreRole, RoleProd, Low, &["fatima", "chen"], 0, true, "restore-identity-two-roles", ""),
        // two approvers of the same role are one role
        row(P("bruno"), Ac::AwsRestoreRole, RoleProd, Low, &["fatima", "emeka"], 0, false, "", ""),
        // one person holding two roles does not make two distinct roles
        row(P("bruno"), Ac::AwsRestoreRole, RoleProd, Low, &["dana"], 90, false, "", ""),
        // sre contains but does not restore
        row(P("chen"), Ac::AwsRestoreAccessKey, Key, Low, &["emeka", "fatima"], 0, false, "", ""),
        // containing a production role takes 1 approval, restoring it 2 from 2 roles
        row(P("bruno"), Ac::AwsRestoreRole, RoleProd, Critical, &["amara"], 0, false, "", ""),
        // --- break-glass ----------------------------------------------------
        bg(row(P("amara"), Ac::AwsQuarantineRole, RoleProd, High, &[], 0, true, "break-glass-incident-commander", ""), true),
        bg(row(P("amara"), Ac::AwsDisableAccessKey, Key, High, &[], 0, true, "contain-credential-responder", ""), false),
        bg(row(P("dana"), Ac::AwsRestoreRole, RoleProd, Low, &[], 0, true, "break-glass-incident-commander", ""), true),
        bg(row(P("bruno"), Ac::AwsQuarantineRole, RoleProd, High, &[], 0, false, "", "needs 1 approval from role `security`"), false),
        row(P("amara"), Ac::AwsQuarantineRole, RoleProd, High, &[], 0, false, "", "break-glass: `amara` may declare it"),
        row(P("bruno"), Ac::AwsQuarantineRole, Protected, Critical, &["amara"], 0, false,
            "protected-targets-need-break-glass", "break-glass, which only a verified member of role `incident-commander` may declare"),
        bg(row(P("dana"), Ac::AwsQuarantineRole, Protected, Critical, &[], 0, true, "break-glass-incident-commander", ""), true),
        bg(row(U("dana"), Ac::AwsQuarantineRole, Protected, Critical, &[], 0, false, "unverified-only-test-targets", "only claimed"), false),
        // --- unverified requesters and the test connector --------------------
        row(U("alice"), Ac::TestContain, Item, Low, &[], 0, true, "test-contain-unverified", ""),
        row(U("bruno"), Ac::AwsDisableAccessKey, Key, Critical, &[], 0, false, "unverified-only-test-targets",
            "`bruno` is only claimed (`--as`): the requester must sign the plan with a key listed for `bruno` in allowed_signers"),
        row(U("bruno"), Ac::AwsQuarantineRole, RoleProd, High, &[], 0, false, "unverified-only-test-targets",
            "and it needs 1 approval from role `security`"),
        row(U("bruno"), Ac::TestRestore, Item, Low, &["amara"], 0, false, "", ""),
        row(P("bruno"), Ac::TestContain, Item, Low, &[], 0, true, "test-contain-verified", ""),
        row(P("hiro"), Ac::TestContain, Item, Low, &[], 0, true, "test-contain-verified", ""),
        src(row(A("ci"), Ac::TestContain, Item, Low, &[], 0, true, "test-contain-verified", ""), Source::Ci),
        row(P("bruno"), Ac::TestRestore, Item, Low, &[], 0, false, "", "needs 1 more approval from anyone in allowed_signers other than the requester"),
        row(P("bruno"), Ac::TestRestore, Item, Low, &["bruno"], 0, false, "", "needs 1 more approval"),
        row(P("bruno"), Ac::TestRestore, Item, Low, &["gwen"], 0, true, "test-restore-one-approval", ""),
        // a verified signer who is not in the roster holds no role
        row(P("mallory"), Ac::AwsDisableAccessKey, Key, Critical, &[], 0, false, "", ""),
    ]
}

fn who(w: Who) -> Principal {
    match w {
        P(n) => principal(n, PrincipalKind::Person, true),
        A(n) => principal(n, PrincipalKind::Automation, true),
        U(n) => principal(n, PrincipalKind::Person, false),
        UA(n) => principal(n, PrincipalKind::Automation, false),
    }
}

#[test]
fn shipped_policy_matrix() {
    let policy = shipped();
    let mut failures = Vec::new();
    for (i, r) in rows().into_iter().enumerate() {
        let p = who(r.who);
        let plan = plan(
            &p.name,
            p.kind,
            r.source,
            r.severity,
            r.action,
            tgt(r.target),
        );
        let d = decide(&policy, &plan, &p, r.approvers, r.elapsed, r.break_glass);
        let label = format!(
            "row {i}: {} ({}) {} {} sev={:?} approvers={:?} +{}min bg={}",
            p.name,
            if p.verified { "verified" } else { "claimed" },
            r.action.id(),
            plan.steps[0].target.display_name(),
            r.severity,
            r.approvers,
            r.elapsed,
            r.break_glass
        );
        if !d.errors.is_empty() {
            failures.push(format!("{label}: evaluation errors {:?}", d.errors));
            continue;
        }
        if d.is_allow() != r.allow {
            failures.push(format!(
                "{label}: expected {}, got {d:?}",
                if r.allow { "allow" } else { "deny" }
            ));
            continue;
        }
        if d.policy_hash != policy.hash() {
            failures.push(format!("{label}: wrong policy hash"));
        }
        if !r.policy.is_empty() && !d.policies.iter().any(|p| p == r.policy) {
            failures.push(format!(
                "{label}: expected policy `{}` among {:?}",
                r.policy, d.policies
            ));
        }
        if r.allow {
            if d.policies.is_empty() {
                failures.push(format!("{label}: an allow must name its permit"));
            }
            if d.break_glass != r.bg_recorded {
                failures.push(format!(
                    "{label}: break_glass recorded {} expected {}",
                    d.break_glass, r.bg_recorded
                ));
            }
            if !d.missing.is_empty() {
                failures.push(format!(
                    "{label}: an allow has nothing missing, got {:?}",
                    d.missing
                ));
            }
        } else {
            if d.missing.is_empty() {
                failures.push(format!("{label}: a deny must say what is missing"));
            }
            if !r.missing.is_empty() && !d.missing.iter().any(|m| m.contains(r.missing)) {
                failures.push(format!(
                    "{label}: expected missing to contain {:?}, got {:?}",
                    r.missing, d.missing
                ));
            }
            if d.break_glass {
                failures.push(format!("{label}: a deny is never break-glass"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Credential containment by a responder is allowed at every severity, and
/// never for a non-responder; a security engineer quarantines a production
/// identity alone only at critical severity.
#[test]
fn severity_sweep() {
    let policy = shipped();
    for sev in [Low, Medium, High, Critical] {
        for (name, responder) in [
            ("amara", true),
            ("bruno", true),
            ("chen", true),
            ("dana", true),
            ("emeka", false),
            ("fatima", false),
            ("gwen", false),
            ("hiro", false),
        ] {
            let p = principal(name, PrincipalKind::Person, true);
            for t in [Key, Token, DeployKey] {
                let action = match t {
                    Key => Ac::AwsDisableAccessKey,
                    Token => Ac::GithubRevokeToken,
                    _ => Ac::GithubDeleteDeployKey,
                };
                let plan = plan(
                    name,
                    PrincipalKind::Person,
                    Source::Manual,
                    sev,
                    action,
                    tgt(t),
                );
                let d = decide(&policy, &plan, &p, &[], 0, false);
                assert_eq!(
                    d.is_allow(),
                    responder,
                    "{name} {} {sev:?}: {d:?}",
                    action.id()
                );
            }
            let plan = plan(
                name,
                PrincipalKind::Person,
                Source::Manual,
                sev,
                Ac::AwsQuarantineUser,
                tgt(UserProd),
            );
            let d = decide(&policy, &plan, &p, &[], 0, false);
            let security = name == "amara" || name == "bruno";
            assert_eq!(
                d.is_allow(),
                security && sev == Critical,
                "{name} quarantine-user {sev:?}: {d:?}"
            );
        }
    }
}

/// Every action for every kind of principal evaluates without error and
/// every decision carries the policy hash; unverified principals are denied
/// everything outside the test connector.
#[test]
fn every_action_evaluates_cleanly() {
    let policy = shipped();
    let whos = [
        P("amara"),
        P("chen"),
        P("emeka"),
        A("ci"),
        A("agent"),
        U("amara"),
        UA("ci"),
        P("nobody"),
    ];
    for a in Action::ALL {
        let t = match a.provider() {
            Provider::Test => tgt(Item),
            Provider::Aws => tgt(RoleProd),
            Provider::Github => tgt(Token),
        };
        for w in whos {
            for bg in [false, true] {
                let p = who(w);
                let plan = plan(&p.name, p.kind, Source::Ci, Critical, *a, t.clone());
                let d = decide(&policy, &plan, &p, &["bruno", "fatima"], 90, bg);
                assert!(d.errors.is_empty(), "{} {}: {:?}", p.name, a.id(), d.errors);
                assert_eq!(d.policy_hash, policy.hash());
                if !p.verified && a.provider() != Provider::Test {
                    assert_eq!(d.effect, Effect::Deny, "{} {}", p.name, a.id());
                }
            }
        }
    }
}

/// The entities shared across requests (built once at load) decide exactly
/// as building every entity per request did: the whole matrix, both ways,
/// the same decision, deciding policies and missing list.
#[test]
fn shared_entities_decide_as_rebuilding_them_per_request() {
    let shared = shipped();
    let rebuilt = shipped().rebuilding_entities_per_request();
    for (i, r) in rows().into_iter().enumerate() {
        let p = who(r.who);
        let plan = plan(
            &p.name,
            p.kind,
            r.source,
            r.severity,
            r.action,
            tgt(r.target),
        );
        let a = decide(&shared, &plan, &p, r.approvers, r.elapsed, r.break_glass);
        let b = decide(&rebuilt, &plan, &p, r.approvers, r.elapsed, r.break_glass);
        assert_eq!(a, b, "row {i}");
    }
}

/// Policies that the narrowing at load must not misjudge: an action literal
/// looked up in a body (`Action::"…" in Action::"contain"`, which needs that
/// action's entity), scopes naming one person or a role few hold, forbids led
/// by `context.break_glass` (dropped without break-glass) next to ones where
/// it comes second or under `unless` (kept), and a `principal in` a role.
const UNUSUAL_RULES: &str = r#"
@id("x-action-literal")
permit (principal is Person, action, resource is Target)
when { Action::"aws:quarantine-user" in Action::"contain" && resource.kind == "item" && context.approvals.count >= 1 };

@id("x-only-chen")
permit (principal == Person::"chen", action in Action::"restore", resource is Target)
when { resource.provider == "aws" };

@id("x-legal-role")
permit (principal in Role::"legal", action == Action::"aws:disable-access-key", resource is Target);

@id("x-bg-led-forbid")
forbid (principal, action, resource is Target)
when { context.break_glass && resource.kind == "access-key" };

@id("x-bg-second")
forbid (principal is Person, action in Action::"contain", resource is Target)
when { resource.kind == "role" && context.break_glass && context.approvals.count == 0 };

@id("x-bg-unless")
permit (principal is Person in Role::"platform", action == Action::"aws:disable-access-key", resource is Target)
unless { context.break_glass };
"#;

/// Both ways (the narrowed sets, per-action entity stores and skipped schema
/// checks, against every entity rebuilt and every policy asked) over
/// `policy_dir`: the same decision, deciding policies, errors and missing list.
fn assert_both_ways_alike(dir: &std::path::Path, expect_errors: bool) {
    let shared = load_dir(dir).unwrap();
    let rebuilt = load_dir(dir).unwrap().rebuilding_entities_per_request();
    let whos = [
        P("bruno"),
        P("amara"),
        P("emeka"),
        P("chen"),
        P("hiro"),
        A("ci"),
    ];
    let actions = [
        Action::AwsDisableAccessKey,
        Action::AwsQuarantineRole,
        Action::AwsRestoreRole,
        Action::TestContain,
    ];
    let mut errors = 0;
    let mut allows = 0;
    let mut n = 0;
    for w in whos {
        let p = who(w);
        for a in actions {
            for t in [T::Key, T::RoleProd, T::Protected, T::Item] {
                for bg in [false, true] {
                    for approvers in [&[][..], &["amara", "emeka"][..]] {
                        let plan = plan(&p.name, p.kind, Source::Ci, Severity::High, a, tgt(t));
                        let d = decide(&shared, &plan, &p, approvers, 20, bg);
                        let r = decide(&rebuilt, &plan, &p, approvers, 20, bg);
                        assert_eq!(
                            d,
                            r,
                            "{} {} {:?} bg={bg} {approvers:?}",
                            p.name,
                            a.id(),
                            tgt(t)
                        );
                        errors += usize::from(!d.errors.is_empty());
                        allows += usize::from(d.is_allow());
                        n += 1;
                    }
                }
            }
        }
    }
    // The comparison covers both outcomes (and errors when the schema makes
    // some requests fail its check), so it can tell a wrong narrowing.
    assert!(allows > 0 && allows < n, "{allows} of {n} allowed");
    assert_eq!(errors > 0, expect_errors, "{errors} of {n} with errors");
}

#[test]
fn stores_decide_as_rebuilding_for_unusual_policies() {
    let d = copy_shipped();
    let rules = std::fs::read_to_string(d.path().join("authority.cedar")).unwrap();
    std::fs::write(
        d.path().join("authority.cedar"),
        format!("{rules}\n{UNUSUAL_RULES}"),
    )
    .unwrap();
    assert_both_ways_alike(d.path(), false);

    // A schema under which the request check's outcome depends on whether a
    // context set is empty: requests with approvals fail it (an error, deny),
    // requests without pass; the shape that passed must not let the others
    // skip the check.
    let schema = std::fs::read_to_string(d.path().join("authority.cedarschema")).unwrap();
    let changed = schema.replacen("signers: Set<String>", "signers: Set<Long>", 1);
    assert_ne!(schema, changed);
    std::fs::write(d.path().join("authority.cedarschema"), changed).unwrap();
    assert_both_ways_alike(d.path(), true);
}

/// The shortcut past the schema checks is off for a schema that declares an
/// enumerated entity type (whose ids the checks look at), on otherwise.
#[test]
fn request_shapes_are_off_with_enumerated_types() {
    use super::super::decide::RequestShapes;
    assert!(RequestShapes::new("entity Role;").enabled());
    assert!(!RequestShapes::new("entity Role enum [\"a\", \"b\"];").enabled());
    assert!(!RequestShapes::new("entity Color enum[\"red\"];\nentity Role;").enabled());
}

/// Rules that read what the shipped ones do not: the target's id, account,
/// a tag named by the request, the target itself, the hour, the incident
/// and the minutes since the plan was made; each with the pair of requests
/// (below) that it, and only what it reads, tells apart. A decision memo
/// whose key missed any of them would answer one request of the pair with
/// the other's decision.
const TARGET_READING_RULES: [(&str, (usize, usize)); 7] = [
    (
        r#"@id("m-id-like")
forbid (principal, action, resource is Target)
when { resource.id like "*DENYME*" };"#,
        (0, 1),
    ),
    (
        r#"@id("m-dynamic-tag")
forbid (principal, action, resource is Target)
when { resource.hasTag(context.source) };"#,
        (2, 3),
    ),
    (
        r#"@id("m-account")
permit (principal is Person in Role::"legal", action == Action::"aws:quarantine-role", resource is Target)
when { resource has account && resource.account == "111122223333" };"#,
        (4, 5),
    ),
    (
        r#"@id("m-literal-target")
permit (principal, action == Action::"aws:quarantine-user", resource == Target::"aws:user/svc-special");"#,
        (6, 7),
    ),
    (
        r#"@id("m-hour")
forbid (principal is Automation, action, resource is Target)
when { context.hour == 4 };"#,
        (8, 9),
    ),
    (
        r#"@id("m-incident")
permit (principal is Person in Role::"platform", action == Action::"aws:quarantine-role", resource is Target)
when { context has incident && context.incident == "INC-OPEN" };"#,
        (10, 11),
    ),
    (
        r#"@id("m-minutes")
permit (principal is Person in Role::"comms", action == Action::"aws:disable-access-key", resource is Target)
when { context.minutes_since_created >= 45 };"#,
        (12, 13),
    ),
];

/// The decision memo (`memo`) answers a request from an earlier one only
/// when no policy can tell them apart: with each rule above added to the
/// shipped policy on its own (so that what one reads does not hide what
/// another reads), every request below is decided as the reference way
/// decides it (no memo, every entity rebuilt), in two different orders, with
/// requests answered from the memo in between; and the rule's pair is
/// decided apart. Checked to fail with the key missing the target's
/// attributes, its tags or the context's attributes.
#[test]
fn memo_decides_as_rebuilding_for_policies_reading_the_target() {
    let key = |id: &str| target(Provider::Aws, "access-key", id, Some("production"));
    let mut tagged = key("AKIAEXAMPLE000000003");
    tagged.tags.insert("ci".into(), "yes".into());
    let mut tagged_other = key("AKIAEXAMPLE000000004");
    tagged_other.tags.insert("team".into(), "payments".into());
    let mut role_acct = target(Provider::Aws, "role", "deploy-prod", Some("production"));
    role_acct.account = Some("111122223333".into());
    let mut role_other = role_acct.clone();
    role_other.account = Some("444455556666".into());
    let user = |id: &str| target(Provider::Aws, "user", id, Some("production"));
    let key5 = key("AKIAEXAMPLE000000005");

    struct Ask {
        who: Who,
        action: Action,
        target: Target,
        source: Source,
        incident: &'static str,
        elapsed: i64,
    }
    let ask = |who, action, target: &Target, source, incident, elapsed| Ask {
        who,
        action,
        target: target.clone(),
        source,
        incident,
        elapsed,
    };
    let dk = Action::AwsDisableAccessKey;
    let qr = Action::AwsQuarantineRole;
    let qu = Action::AwsQuarantineUser;
    let m = Source::Manual;
    let asks = vec![
        // the id
        ask(P("bruno"), dk, &key("AKIAEXAMPLE000000001"), m, "INC-1", 5),
        ask(P("bruno"), dk, &key("AKIAEXAMPLE0DENYME01"), m, "INC-1", 5),
        // a tag named by the context's source
        ask(A("ci"), dk, &tagged, Source::Ci, "INC-1", 5),
        ask(A("ci"), dk, &tagged_other, Source::Ci, "INC-1", 5),
        // the account
        ask(P("hiro"), qr, &role_acct, m, "INC-1", 5),
        ask(P("hiro"), qr, &role_other, m, "INC-1", 5),
        // the target itself
        ask(P("hiro"), qu, &user("svc-special"), m, "INC-1", 5),
        ask(P("hiro"), qu, &user("svc-billing"), m, "INC-1", 5),
        // the hour (03:00 + 60 min)
        ask(A("ci"), dk, &key5, Source::Ci, "INC-1", 5),
        ask(A("ci"), dk, &key5, Source::Ci, "INC-1", 60),
        // the incident
        ask(P("emeka"), qr, &role_other, m, "INC-OPEN", 5),
        ask(P("emeka"), qr, &role_other, m, "INC-1", 5),
        // the minutes
        ask(P("gwen"), dk, &key("AKIAEXAMPLE000000006"), m, "INC-1", 44),
        ask(P("gwen"), dk, &key("AKIAEXAMPLE000000006"), m, "INC-1", 45),
        // a tagged target of another source, a second key of the same shape
        ask(P("bruno"), dk, &tagged, m, "INC-1", 5),
        ask(P("bruno"), dk, &key("AKIAEXAMPLE000000002"), m, "INC-1", 5),
    ];
    let decide_one = |policy: &Policy, a: &Ask| {
        let p = who(a.who);
        let mut plan = plan(
            &p.name,
            p.kind,
            a.source,
            Severity::High,
            a.action,
            a.target.clone(),
        );
        plan.incident = Some(a.incident.into());
        decide(policy, &plan, &p, &[], a.elapsed, false)
    };
    let shipped_rules = std::fs::read_to_string(shipped_dir().join("authority.cedar")).unwrap();
    for (rule, (a, b)) in TARGET_READING_RULES {
        let d = copy_shipped();
        std::fs::write(
            d.path().join("authority.cedar"),
            format!("{shipped_rules}\n{rule}\n"),
        )
        .unwrap();
        let memo = load_dir(d.path()).unwrap();
        let rebuilt = load_dir(d.path())
            .unwrap()
            .rebuilding_entities_per_request();
        let reference: Vec<Decision> = asks.iter().map(|a| decide_one(&rebuilt, a)).collect();
        for reversed in [false, true] {
            let mut order: Vec<usize> = (0..asks.len()).collect();
            if reversed {
                order.reverse();
            }
            for i in order {
                assert_eq!(
                    decide_one(&memo, &asks[i]),
                    reference[i],
                    "{rule}\nask {i} (reversed: {reversed})"
                );
            }
        }
        assert!(
            memo.decision_memo_hits() > 0,
            "{rule}: the memo answered nothing"
        );
        assert_ne!(
            reference[a].is_allow(),
            reference[b].is_allow(),
            "{rule}: asks {a} and {b} should be decided apart"
        );
    }
}
