//! `cordon policy check`: load the directory and lint what loaded.

use std::path::Path;

use super::{
    load_unlinted, Finding, FindingSeverity, Policy, POLICY_FILE, ROSTER_FILE, SIGNERS_FILE,
};

/// base64(SHA-256) of the example secrets published in cordon's docs and
/// shipped in `policies/roster.toml` (`cordon-example-ci-secret-replace-me`,
/// `cordon-example-agent-secret-replace-me`,
/// `cordon-example-assistant-secret-replace-me`). Anyone who read the docs
/// knows them: a roster that uses them has a default password.
pub const EXAMPLE_SECRETS: [&str; 3] = [
    "TGkp/0Swiv094Cer5hBZCsGvbAOK052HvVAlop5OCIE=",
    "BZl5x9Q4ruwcMk1GjJvUt6gI2rWK4cKfHxaJ/kjLz5s=",
    "zdPCxr09y+nzSx423YpF6wSy/467GbUA8IgCAndQ4So=",
];

/// The environment variable that lets the published example secrets through
/// (`scripts/try`, the tests). Never set it for a real state directory.
pub const DEMO_ENV: &str = "CORDON_DEMO";

/// Validate and lint a policy directory. Load errors come first (and stop
/// the lints); then warnings and errors about what the files mean together.
/// An empty result means the policy is clean. With `demo` off, a roster that
/// still uses a published example secret is an error (every command refuses
/// it); with it on, a warning.
pub fn check(dir: &Path, demo: bool) -> Vec<Finding> {
    match load_unlinted(dir) {
        Err(e) => e.findings,
        Ok(p) => {
            let mut f = example_secrets(&p, demo);
            f.extend(lint(&p, chrono::Utc::now()));
            // Errors first (stable: file order within each severity).
            f.sort_by_key(|x| x.severity);
            f
        }
    }
}

/// One finding per automation principal whose `secret_sha256` is the hash of
/// a published example secret: an error unless `demo`, then a warning.
pub fn example_secrets(p: &Policy, demo: bool) -> Vec<Finding> {
    use base64::Engine as _;
    let roster_file = p.file(ROSTER_FILE);
    let mut out = Vec::new();
    for (name, a) in &p.roster.automation {
        let Some(d) = &a.secret_sha256 else { continue };
        let b64 = base64::engine::general_purpose::STANDARD.encode(d);
        if !EXAMPLE_SECRETS.contains(&b64.as_str()) {
            continue;
        }
        if demo {
            out.push(Finding::warning(
                &roster_file,
                Some(a.line),
                format!("automation `{name}` uses the published example secret (allowed because {DEMO_ENV} is set: demos and tests only)"),
            ));
        } else {
            out.push(Finding::error(
                &roster_file,
                Some(a.line),
                format!("automation `{name}` uses the published example secret: anyone who read cordon's docs could act as `{name}`; run `cordon init --rotate-secrets` to give every automation principal a fresh secret (or set {DEMO_ENV}=1 for a demo)"),
            ));
        }
    }
    out
}

pub(crate) fn lint(p: &Policy, now: chrono::DateTime<chrono::Utc>) -> Vec<Finding> {
    let mut out = Vec::new();
    let roster_file = p.file(ROSTER_FILE);
    let signers_file = p.file(SIGNERS_FILE);
    let policy_file = p.file(POLICY_FILE);
    let r = &p.roster;
    let held = r.held_roles();

    for (name, c) in &r.classes {
        if c.backup.is_none() {
            out.push(Finding::warning(
                &roster_file,
                Some(c.line),
                format!("decision class `{name}` has no backup role: when the owner role is unreachable nobody can approve; add `backup = \"ROLE\"`"),
            ));
        }
        for role in std::iter::once(&c.owner).chain(c.backup.iter()) {
            if r.roles.contains_key(role) && !held.contains(role.as_str()) {
                out.push(Finding::warning(
                    &roster_file,
                    Some(c.line),
                    format!("decision class `{name}` relies on role `{role}`, which nobody holds"),
                ));
            }
        }
    }
    for (name, role) in &r.roles {
        if !held.contains(name.as_str()) {
            out.push(Finding::warning(
                &roster_file,
                Some(role.line),
                format!("role `{name}` is held by nobody: give it to someone under [people] or remove it"),
            ));
        }
    }
    for (name, person) in &r.people {
        for role in &person.roles {
            if !r.roles.contains_key(role) {
                out.push(Finding::error(
                    &roster_file,
                    Some(person.line),
                    format!("`{name}` holds role `{role}`, which is not defined: add [roles.{role}] or fix the name"),
                ));
            }
        }
        if person.roles.is_empty() {
            out.push(Finding::warning(
                &roster_file,
                Some(person.line),
                format!("`{name}` holds no role"),
            ));
        }
        if !p.signers.has_principal(name) {
            out.push(Finding::warning(
                &roster_file,
                Some(person.line),
                format!("`{name}` has no key in allowed_signers: their requests stay unverified and their approvals cannot count; add their public key"),
            ));
        }
    }
    for (name, a) in &r.automation {
        for role in &a.roles {
            if !r.roles.contains_key(role) {
                out.push(Finding::error(
                    &roster_file,
                    Some(a.line),
                    format!("automation `{name}` holds role `{role}`, which is not defined: add [roles.{role}] or fix the name"),
                ));
            }
        }
        match &a.secret_sha256 {
            None if !p.signers.has_principal(name) => out.push(Finding::warning(
                &roster_file,
                Some(a.line),
                format!("automation `{name}` has neither secret_sha256 nor a key in allowed_signers: it can never be verified"),
            )),
            Some(_) if a.secret_env.is_none() => out.push(Finding::warning(
                &roster_file,
                Some(a.line),
                format!("automation `{name}` has secret_sha256 but no secret_env naming where the secret is read from"),
            )),
            _ => {}
        }
    }

    for name in r.automation.keys() {
        if !r.limits.contains_key(name) {
            out.push(Finding::warning(
                &roster_file,
                r.automation.get(name).map(|a| a.line),
                format!("automation `{name}` has no stop conditions: add [limits.{name}] (max_credentials_per_window, max_accounts_per_plan) so a poisoned input cannot make it act without bound"),
            ));
        }
    }

    // A permit with no scope and no condition lets anyone do anything.
    for pol in p.policies.policies() {
        let open = pol.effect() == cedar_policy::Effect::Permit
            && matches!(
                pol.principal_constraint(),
                cedar_policy::PrincipalConstraint::Any
            )
            && matches!(pol.action_constraint(), cedar_policy::ActionConstraint::Any)
            && matches!(
                pol.resource_constraint(),
                cedar_policy::ResourceConstraint::Any
            )
            && !pol.has_non_scope_constraint();
        if open {
            let id = pol.id().to_string();
            let line = p.info.iter().find(|i| i.id == id).map(|i| i.line);
            out.push(Finding::warning(
                &policy_file,
                line,
                format!("policy `{id}` permits every action on every target to everyone, with no condition: anyone, verified or not, may contain and restore alone; scope it to roles and actions"),
            ));
        }
    }

    // Roles referenced by the rules.
    for pol in p.policies.policies() {
        for uid in pol.entity_literals() {
            if uid.type_name().to_string() == "Role" {
                let role = uid.id().unescaped();
                if !r.roles.contains_key(role) {
                    let needle = format!("Role::\"{role}\"");
                    let line = p
                        .policy_text
                        .find(&needle)
                        .map(|o| super::roster::line_of(&p.policy_text, o));
                    out.push(Finding::error(
                        &policy_file,
                        line,
                        format!("policy `{}` references role `{role}`, which roster.toml does not define: nobody can ever match it", pol.id()),
                    ));
                }
            }
        }
    }

    // allowed_signers against the roster.
    for e in &p.signers.entries {
        for name in e.literal_principals() {
            if r.member(name).is_none() {
                out.push(Finding::warning(
                    &signers_file,
                    Some(e.line),
                    format!("`{name}` is not in roster.toml: their approvals count toward `approvals.count` but carry no role"),
                ));
            }
        }
        if !e.allows_namespace(super::NAMESPACE) {
            out.push(Finding::warning(
                &signers_file,
                Some(e.line),
                "this key's namespaces do not include `cordon-plan`: it cannot sign plans"
                    .to_string(),
            ));
        }
        if e.local_time {
            out.push(Finding::warning(
                &signers_file,
                Some(e.line),
                "a validity time without `Z` is read in this machine's local time zone (as ssh-keygen does): add `Z` to mean UTC".to_string(),
            ));
        }
        if e.valid_before.is_some_and(|b| b < now) {
            out.push(Finding::warning(
                &signers_file,
                Some(e.line),
                format!(
                    "this key expired ({}): remove the line or renew the key",
                    e.window()
                ),
            ));
        }
    }
    out.sort_by(|a, b| {
        (a.severity != FindingSeverity::Error, &a.file, a.line).cmp(&(
            b.severity != FindingSeverity::Error,
            &b.file,
            b.line,
        ))
    });
    out
}
