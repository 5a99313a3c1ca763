//! Loading: broken policies deny with an error naming the file and line.

use super::*;
use crate::gate::{Effect, Gate};
use crate::policy::{check, policy_hash, Finding, FindingSeverity, LoadError, PolicyGate};

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).unwrap();
}

fn append(dir: &Path, file: &str, text: &str) -> usize {
    let mut s = std::fs::read_to_string(dir.join(file)).unwrap();
    if !s.ends_with('\n') {
        s.push('\n');
    }
    let first_new_line = s.lines().count() + 1;
    s.push_str(text);
    write(dir, file, &s);
    first_new_line
}

fn load_err(dir: &Path) -> LoadError {
    match crate::policy::load(dir) {
        Ok(_) => panic!("the policy in {} must not load", dir.display()),
        Err(e) => e,
    }
}

/// A gate over a failed load denies a step that the shipped policy allows,
/// and the denial carries the error.
fn assert_gate_denies(dir: &Path, needle: &str) {
    assert_gate_denies_with(dir, true, needle)
}

fn assert_gate_denies_with(dir: &Path, demo: bool, needle: &str) {
    let gate = PolicyGate::load(dir, demo);
    let p = principal("bruno", PrincipalKind::Person, true);
    let plan = plan(
        "bruno",
        PrincipalKind::Person,
        Source::Manual,
        Severity::Critical,
        cordon_connector::Action::TestContain,
        target(cordon_connector::Provider::Test, "item", "one", None),
    );
    let input = GateInput {
        plan_id: "x",
        plan: &plan,
        step: &plan.steps[0],
        requester: &p,
        approvals: &[],
        break_glass: None,
        now: t0(),
    };
    let d = gate.decide(&input);
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(d.errors.len(), 1);
    assert!(d.errors[0].contains("does not load"), "{}", d.errors[0]);
    assert!(
        d.errors[0].contains(needle),
        "expected {needle:?} in {}",
        d.errors[0]
    );
    assert_eq!(d.policy_hash.len(), 64);
}

fn finding_at<'a>(findings: &'a [Finding], file: &str, line: usize) -> &'a Finding {
    findings
        .iter()
        .find(|f| f.file.ends_with(file) && f.line == Some(line))
        .unwrap_or_else(|| panic!("no finding at {file}:{line} in {findings:#?}"))
}

#[test]
fn the_shipped_policy_loads_and_the_same_step_is_allowed_through_the_gate() {
    let dir = copy_shipped();
    let gate = PolicyGate::load(dir.path(), true);
    let policy = gate.policy().unwrap();
    // 18 before bounded automation added the assistant's permit and forbid.
    assert_eq!(policy.policies().len(), 20);
    assert!(policy.policies().iter().all(|p| p.line > 0));
    let p = principal("bruno", PrincipalKind::Person, true);
    let plan = plan(
        "bruno",
        PrincipalKind::Person,
        Source::Manual,
        Severity::Critical,
        cordon_connector::Action::TestContain,
        target(cordon_connector::Provider::Test, "item", "one", None),
    );
    let input = GateInput {
        plan_id: "x",
        plan: &plan,
        step: &plan.steps[0],
        requester: &p,
        approvals: &[],
        break_glass: None,
        now: t0(),
    };
    assert!(gate.decide(&input).is_allow());
}

#[test]
fn the_policy_hash_covers_every_file_in_a_fixed_order() {
    let dir = copy_shipped();
    let h0 = crate::policy::load(dir.path()).unwrap().hash().to_owned();
    let bytes: Vec<Vec<u8>> = FILES
        .iter()
        .map(|f| std::fs::read(dir.path().join(f)).unwrap())
        .collect();
    let expected = policy_hash(
        &FILES
            .iter()
            .zip(&bytes)
            .map(|(n, b)| (*n, Some(b.as_slice())))
            .collect::<Vec<_>>(),
    );
    assert_eq!(h0, expected);
    // Recompute by hand: name \n len \n bytes, per file.
    let mut manual = Vec::new();
    for (n, b) in FILES.iter().zip(&bytes) {
        manual.extend_from_slice(format!("{n}\n{}\n", b.len()).as_bytes());
        manual.extend_from_slice(b);
    }
    assert_eq!(h0, crate::plan::sha256_hex(&manual));
    let mut seen = std::collections::BTreeSet::from([h0]);
    for f in FILES {
        append(
            dir.path(),
            f,
            if f == "authority.cedar" || f == "authority.cedarschema" {
                "// x\n"
            } else {
                "# x\n"
            },
        );
        let h = crate::policy::load(dir.path()).unwrap().hash().to_owned();
        assert!(seen.insert(h), "changing {f} must change the hash");
    }
}

#[test]
fn a_syntax_error_names_the_file_and_line_and_denies() {
    let dir = copy_shipped();
    let line = append(
        dir.path(),
        "authority.cedar",
        "\n@id(\"broken\")\npermit (principal, action, resource)\nwhen { context.severity == };\n",
    );
    let e = load_err(dir.path());
    let f = finding_at(&e.findings, "authority.cedar", line + 3);
    assert_eq!(f.severity, FindingSeverity::Error);
    assert!(
        f.to_string()
            .contains(&format!("authority.cedar:{}:", line + 3)),
        "{f}"
    );
    assert_gate_denies(dir.path(), &format!("authority.cedar:{}", line + 3));
}

#[test]
fn an_unknown_entity_type_fails_strict_validation_with_its_line() {
    let dir = copy_shipped();
    let line = append(
        dir.path(),
        "authority.cedar",
        "@id(\"robots\")\npermit (\n  principal is Robot,\n  action,\n  resource\n);\n",
    );
    let e = load_err(dir.path());
    let f = finding_at(&e.findings, "authority.cedar", line + 2);
    assert!(f.message.contains("Robot"), "{f}");
    assert_gate_denies(dir.path(), "Robot");
}

#[test]
fn an_unknown_attribute_fails_strict_validation_with_its_line() {
    let dir = copy_shipped();
    let line = append(
        dir.path(),
        "authority.cedar",
        "@id(\"colour\")\npermit (principal, action, resource is Target)\nwhen {\n  resource.colour == \"red\"\n};\n",
    );
    let e = load_err(dir.path());
    let f = finding_at(&e.findings, "authority.cedar", line + 3);
    assert!(f.message.contains("colour"), "{f}");
}

#[test]
fn a_missing_file_is_named() {
    let dir = copy_shipped();
    std::fs::remove_file(dir.path().join("roster.toml")).unwrap();
    let e = load_err(dir.path());
    assert_eq!(e.findings.len(), 1);
    assert!(e.findings[0].file.ends_with("roster.toml"));
    assert!(e.findings[0].message.contains("is missing"));
    assert_gate_denies(dir.path(), "roster.toml");
}

#[test]
fn an_empty_or_comment_only_policy_file_is_refused() {
    for text in ["", "// nothing here\n\n// at all\n"] {
        let dir = copy_shipped();
        write(dir.path(), "authority.cedar", text);
        let e = load_err(dir.path());
        let f = finding_at(&e.findings, "authority.cedar", 1);
        assert!(f.message.contains("empty"), "{f}");
        assert_gate_denies(dir.path(), "authority.cedar:1");
    }
    let dir = copy_shipped();
    write(dir.path(), "authority.cedarschema", "");
    let e = load_err(dir.path());
    finding_at(&e.findings, "authority.cedarschema", 1);
}

#[test]
fn policies_need_unique_ids() {
    let dir = copy_shipped();
    let line = append(
        dir.path(),
        "authority.cedar",
        "permit (principal, action, resource is Target) when { context.break_glass };\n",
    );
    let e = load_err(dir.path());
    let f = finding_at(&e.findings, "authority.cedar", line);
    assert!(f.message.contains("@id"), "{f}");

    let dir = copy_shipped();
    let line = append(
        dir.path(),
        "authority.cedar",
        "@id(\"automation-never-restores\")\nforbid (principal, action, resource);\n",
    );
    let e = load_err(dir.path());
    let f = finding_at(&e.findings, "authority.cedar", line);
    assert!(f.message.contains("used twice"), "{f}");
}

#[test]
fn schema_roster_and_signers_errors_name_file_and_line() {
    let dir = copy_shipped();
    let line = append(
        dir.path(),
        "authority.cedarschema",
        "entity Broken {\n  name: Strin,\n};\n",
    );
    let e = load_err(dir.path());
    assert!(
        e.findings.iter().any(|f| f.file.ends_with("authority.cedarschema") && f.line.is_some_and(|l| l >= line)),
        "{:#?}",
        e.findings
    );

    let dir = copy_shipped();
    let line = append(
        dir.path(),
        "roster.toml",
        "[people.zed]\nroles = \"security\"\n",
    );
    let e = load_err(dir.path());
    let f = &e.findings[0];
    assert!(f.file.ends_with("roster.toml"));
    assert!(f.line.is_some_and(|l| l == line + 1 || l == line), "{f}");

    let dir = copy_shipped();
    let text = std::fs::read_to_string(dir.path().join("roster.toml")).unwrap();
    write(
        dir.path(),
        "roster.toml",
        &text.replace("backup = \"incident-commander\"", "backup = \"ic\""),
    );
    let e = load_err(dir.path());
    let restore_line = text
        .lines()
        .position(|l| l.trim() == "[classes.restore]")
        .unwrap()
        + 1;
    let f = finding_at(&e.findings, "roster.toml", restore_line);
    assert!(f.message.contains("`ic`"), "{f}");

    let dir = copy_shipped();
    let text = std::fs::read_to_string(dir.path().join("roster.toml")).unwrap();
    let cut = text.find("[classes.restore]").unwrap();
    let end = text.find("[classes.notify]").unwrap();
    write(
        dir.path(),
        "roster.toml",
        &format!("{}{}", &text[..cut], &text[end..]),
    );
    let e = load_err(dir.path());
    assert!(e
        .findings
        .iter()
        .any(|f| f.message.contains("decision class `restore` is missing")));

    let dir = copy_shipped();
    let text = std::fs::read_to_string(dir.path().join("allowed_signers")).unwrap();
    let key = text
        .lines()
        .find(|l| l.starts_with("bruno"))
        .unwrap()
        .split_once(' ')
        .unwrap()
        .1
        .to_owned();
    let line = append(
        dir.path(),
        "allowed_signers",
        &format!(
            "*@northwind.example cert-authority {}\n",
            key.split_once(' ').unwrap().1
        ),
    );
    let e = load_err(dir.path());
    let f = finding_at(&e.findings, "allowed_signers", line);
    assert!(
        f.message.contains("cert-authority") && f.message.contains("not supported"),
        "{f}"
    );
    assert_gate_denies(dir.path(), &format!("allowed_signers:{line}"));
}

#[test]
fn check_of_the_shipped_policy_only_warns_about_the_example_secrets() {
    let findings = check(&shipped_dir(), true);
    // ci, agent and (since bounded automation) assistant.
    assert_eq!(findings.len(), 3, "{findings:#?}");
    for f in &findings {
        assert_eq!(f.severity, FindingSeverity::Warning);
        assert!(f.message.contains("example secret"), "{f}");
        assert!(f.file.ends_with("roster.toml") && f.line.is_some());
    }
}

#[test]
fn issue_14_the_published_example_secrets_are_refused_outside_the_demo_switch() {
    // `policy check` calls them errors, with file and line ...
    let findings = check(&shipped_dir(), false);
    // ci, agent and (since bounded automation) assistant.
    assert_eq!(findings.len(), 3, "{findings:#?}");
    for f in &findings {
        assert_eq!(f.severity, FindingSeverity::Error);
        assert!(f.message.contains("published example secret"), "{f}");
        assert!(f.message.contains("cordon init --rotate-secrets"), "{f}");
        assert!(f.file.ends_with("roster.toml") && f.line.is_some());
    }
    // ... and the gate every command uses denies every step over them.
    assert_gate_denies_with(&shipped_dir(), false, "published example secret");
    // The structural load (what the demo switch allows) still loads.
    assert!(PolicyGate::load(&shipped_dir(), true).policy().is_ok());
}

#[test]
fn check_lints_roster_and_rules_with_file_and_line() {
    let dir = copy_shipped();
    let roster = std::fs::read_to_string(dir.path().join("roster.toml")).unwrap();
    // notify loses its backup; chen loses his key; a role nobody holds; an
    // undefined role on a person; a rule naming a role that does not exist.
    let roster = roster.replace("backup = \"legal\"\n", "");
    let roster = roster.replace("roles = [\"comms\"]", "roles = [\"comms\", \"pr\"]");
    let roster = format!("{roster}\n[roles.auditor]\ndescription = \"reads the audit log\"\n");
    write(dir.path(), "roster.toml", &roster);
    let signers = std::fs::read_to_string(dir.path().join("allowed_signers")).unwrap();
    let signers: String = signers
        .lines()
        .filter(|l| !l.starts_with("chen "))
        .map(|l| format!("{l}\n"))
        .collect();
    write(dir.path(), "allowed_signers", &signers);
    let rule_line = append(
        dir.path(),
        "authority.cedar",
        "@id(\"ghost-role\")\npermit (principal is Person in Role::\"ghost\", action, resource is Target);\n",
    ) + 1;
    let findings = check(dir.path(), true);
    let line_of = |needle: &str| roster.lines().position(|l| l.trim() == needle).unwrap() + 1;

    let f = finding_at(&findings, "authority.cedar", rule_line);
    assert!(
        f.message.contains("`ghost`") && f.severity == FindingSeverity::Error,
        "{f}"
    );
    let f = finding_at(&findings, "roster.toml", line_of("[classes.notify]"));
    assert!(f.message.contains("no backup role"), "{f}");
    let f = finding_at(&findings, "roster.toml", line_of("[people.chen]"));
    assert!(f.message.contains("no key in allowed_signers"), "{f}");
    let f = finding_at(&findings, "roster.toml", line_of("[roles.auditor]"));
    assert!(f.message.contains("held by nobody"), "{f}");
    let f = finding_at(&findings, "roster.toml", line_of("[people.gwen]"));
    assert!(
        f.message.contains("`pr`") && f.severity == FindingSeverity::Error,
        "{f}"
    );
    // errors first
    assert_eq!(findings[0].severity, FindingSeverity::Error);
}

#[test]
fn check_reports_load_errors() {
    let dir = copy_shipped();
    write(
        dir.path(),
        "authority.cedar",
        "@id(\"x\") permit (principal, action, resource) when { ;\n",
    );
    let findings = check(dir.path(), true);
    assert!(!findings.is_empty());
    assert!(findings
        .iter()
        .all(|f| f.severity == FindingSeverity::Error));
    assert_eq!(findings[0].line, Some(1));
}
