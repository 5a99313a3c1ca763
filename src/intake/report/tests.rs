//! Parser tests over the fixtures in `tests/fixtures/reports` (see its
//! README for which documentation each follows; `detect-secrets.json` and
//! `secretlint.json` are real output of those tools). The real scanners are
//! also run by `tests/runner/reports.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use super::*;
use crate::intake::classify::make_classic_token;

const ID1: &str = "AKIACORDONCANARY2345";
const SECRET1: &str = "CordonCanarySecret/DoNotUse/0123456789ab";
const ID2: &str = "AKIACORDONCANARY7777";
const SECRET2: &str = "CordonCanarySecret/DoNotUse/Second000000";
const GH1: &str = "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";
const GH_BAD: &str = "ghp_v9qIEiUBItsW3eHWss4aVA0Op2Hqna15pyhA";
const GH2: &str = "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";
const SLACK: &str = "xoxb-cordon-canary-not-a-real-slack-token";
const COMMIT: &str = "6f1c0d9a2b3e4f5061728394a5b6c7d8e9f0a1b2";

/// The parts of the canaries that must never appear in an error, a Debug
/// dump or a provenance (key ids are not secret and may).
const NEVER: &[&str] = &[
    "CordonCanarySecret",
    "v9qIEiUBItsW3eHWss4aVA0Op2Hqna15pyh",
    "DsUVWZzqaTJjYMyonG2capMhs3AMvZ2VBGmX",
    "cordon-canary-not-a-real",
];

fn assert_clean(what: &str, text: &str) {
    for n in NEVER {
        assert!(!text.contains(n), "{what} leaks a canary: {text}");
    }
}

fn fixture(name: &str) -> String {
    let p = fixture_dir().join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reports")
}

fn opts() -> ParseOptions {
    ParseOptions {
        root: Some(fixture_dir().join("scanned")),
    }
}

fn read(name: &str, format: Format) -> Report {
    let r =
        parse(fixture(name).as_bytes(), format, &opts()).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_clean(&format!("Debug of {name}"), &format!("{r:?}"));
    for f in &r.findings {
        assert_clean("provenance", &serde_json::to_string(&f.provenance).unwrap());
    }
    r
}

/// One line per finding: what it is (never the secret) and where it came from.
fn desc(f: &Finding) -> String {
    let what = match &f.item {
        Ok(Credential::Github { kind, .. }) => format!("github:{kind:?}"),
        Ok(Credential::AwsKey { key_id, secret, .. }) => format!(
            "aws:{key_id}:{}",
            if secret.is_some() {
                "with-secret"
            } else {
                "id-only"
            }
        ),
        Ok(Credential::PrivateKey { info, .. }) => format!("private-key:{}", info.format),
        Err(_) => "not-containable".into(),
    };
    let p = &f.provenance;
    format!(
        "{what} {}|{}|{}|{}|{}|{}",
        p.scanner,
        p.rule.as_deref().unwrap_or("-"),
        p.file.as_deref().unwrap_or("-"),
        p.line.map(|l| l.to_string()).unwrap_or("-".into()),
        p.commit.as_deref().map(|c| &c[..7]).unwrap_or("-"),
        p.url.as_deref().unwrap_or("-"),
    )
}

fn descs(r: &Report) -> Vec<String> {
    r.findings.iter().map(desc).collect()
}

fn aws_secret(f: &Finding) -> Option<&str> {
    match &f.item {
        Ok(Credential::AwsKey {
            secret: Some(s), ..
        }) => Some(s.expose()),
        _ => None,
    }
}

fn github_secret(f: &Finding) -> Option<&str> {
    match &f.item {
        Ok(Credential::Github { secret, .. }) => Some(secret.expose()),
        _ => None,
    }
}

fn reason(f: &Finding) -> &str {
    match &f.item {
        Err(nc) => &nc.reason,
        Ok(_) => panic!("containable: {}", desc(f)),
    }
}

fn malformed(format: Format, text: &str) -> (String, String) {
    let e = parse(text.as_bytes(), format, &opts()).unwrap_err();
    let shown = e.to_string();
    assert_clean("error", &shown);
    assert_clean("error Debug", &format!("{e:?}"));
    match e {
        ReportError::Malformed { format: f, at, .. } => {
            assert_eq!(f, format.name(), "{shown}");
            (at, shown)
        }
        other => panic!("not malformed: {other}"),
    }
}

#[test]
fn fixture_tokens_are_the_canaries_the_classifier_accepts() {
    assert_eq!(make_classic_token("ghp_", "cordon-fixture"), GH1);
    assert_eq!(make_classic_token("ghp_", "cordon-fixture-2"), GH2);
    assert!(!crate::intake::classify::classic_checksum_ok(GH_BAD));
}

// ------------------------------------------------------------------ gitleaks

#[test]
fn gitleaks_pairs_the_aws_key_id_with_its_secret_and_keeps_provenance() {
    let r = read("gitleaks.json", Format::Gitleaks);
    assert_eq!(
        descs(&r),
        vec![
            format!("aws:{ID1}:with-secret gitleaks|aws-access-token|deploy/config.env|2|6f1c0d9|https://github.com/acme/app/blob/{COMMIT}/deploy/config.env#L2"),
            "github:ClassicPat gitleaks|github-pat|deploy/config.env|4|6f1c0d9|-".into(),
            "not-containable gitleaks|github-pat|docs/example.yml|7|6f1c0d9|-".into(),
            "not-containable gitleaks|slack-bot-token|deploy/config.env|9|6f1c0d9|-".into(),
        ]
    );
    assert_eq!(r.findings[0].provenance.commit.as_deref(), Some(COMMIT));
    assert_eq!(aws_secret(&r.findings[0]), Some(SECRET1));
    assert_eq!(github_secret(&r.findings[1]), Some(GH1));
    assert!(
        reason(&r.findings[2]).contains("wrong checksum"),
        "{}",
        reason(&r.findings[2])
    );
    assert_eq!(
        reason(&r.findings[3]),
        "gitleaks rule `slack-bot-token`: no connector handles this kind of secret"
    );
    // The unknown secret is named by its fingerprint only.
    let Err(nc) = &r.findings[3].item else {
        panic!()
    };
    assert_eq!(
        nc.fingerprint.as_deref(),
        Some(Secret::new(SLACK).fingerprint().as_str())
    );
    assert!(r.alerts.is_empty());
}

#[test]
fn gitleaks_redacted_reports_say_to_rerun_without_redact() {
    for (name, format) in [
        ("gitleaks.json", Format::Gitleaks),
        ("gitleaks.sarif", Format::Sarif),
    ] {
        // `--redact` writes REDACTED; `--redact=70` the first 30% and `...`.
        let text = fixture(name)
            .replace(GH1, "REDACTED")
            .replace(SECRET1, "CordonCan...")
            .replace(GH_BAD, "REDACTED");
        let r = parse(text.as_bytes(), format, &opts()).unwrap();
        let redacted: Vec<&Finding> = r
            .findings
            .iter()
            .filter(|f| {
                f.item
                    .as_ref()
                    .is_err_and(|nc| nc.reason.contains("rerun gitleaks without `--redact`"))
            })
            .collect();
        let want = if format == Format::Gitleaks { 3 } else { 2 };
        assert_eq!(redacted.len(), want, "{name}: {:?}", descs(&r));
        // The key id alone is still containable (by id).
        assert!(r.findings.iter().any(|f| matches!(&f.item, Ok(Credential::AwsKey { key_id, secret: None, .. }) if key_id == ID1)));
    }
}

#[test]
fn gitleaks_empty_report_is_no_findings() {
    let r = parse(b"[]\n", Format::Auto, &opts()).unwrap();
    assert!(r.findings.is_empty() && r.alerts.is_empty());
}

#[test]
fn gitleaks_bad_input_names_the_place() {
    let text = fixture("gitleaks.json");
    // Truncated in the middle of the secret finding.
    let cut = text.find(SECRET1).unwrap() + 10;
    let (at, shown) = malformed(Format::Gitleaks, &text[..cut]);
    assert!(at.starts_with("line 31, column"), "{shown}");
    assert!(shown.contains("truncated"), "{shown}");
    let (at, shown) = malformed(Format::Gitleaks, r#"{"RuleID": "x"}"#);
    assert_eq!(at, "the top level");
    assert!(
        shown.contains("expected an array, found an object"),
        "{shown}"
    );
    let v = text.replacen(&format!("\"Secret\": \"{SECRET1}\""), "\"Secrets\": 1", 1);
    let (at, shown) = malformed(Format::Gitleaks, &v);
    assert_eq!(at, "`[1].Secret`", "{shown}");
    assert!(shown.ends_with("missing field"), "{shown}");
    let v = text.replacen("\"StartLine\": 4", "\"StartLine\": \"four\"", 1);
    let (at, shown) = malformed(Format::Gitleaks, &v);
    assert_eq!(at, "`[2].StartLine`");
    assert!(
        shown.contains("expected a non-negative integer, found a string"),
        "{shown}"
    );
    // A secret in a wrong-typed field is not echoed either.
    let v = text.replacen(
        "\"RuleID\": \"generic-api-key\"",
        &format!("\"RuleID\": [\"{SECRET1}\"]"),
        1,
    );
    let (at, _) = malformed(Format::Gitleaks, &v);
    assert_eq!(at, "`[1].RuleID`");
}

// ------------------------------------------------------------------ SARIF

#[test]
fn gitleaks_sarif_reads_snippets_and_commits() {
    let r = read("gitleaks.sarif", Format::Sarif);
    assert_eq!(
        descs(&r),
        vec![
            format!(
                "aws:{ID1}:with-secret gitleaks|aws-access-token|deploy/config.env|2|6f1c0d9|-"
            ),
            "github:ClassicPat gitleaks|github-pat|deploy/config.env|4|6f1c0d9|-".to_owned(),
        ]
    );
    assert_eq!(aws_secret(&r.findings[0]), Some(SECRET1));
    assert_eq!(github_secret(&r.findings[1]), Some(GH1));
}

#[test]
fn generic_sarif_finds_the_secret_in_a_whole_line_and_names_results_without_snippet() {
    let r = read("generic.sarif", Format::Sarif);
    assert_eq!(
        descs(&r),
        vec![
            "github:ClassicPat examplesecretscanner|SECRET001|src/settings.py|12|0a1b2c3|-",
            "not-containable examplesecretscanner|SECRET002|src/other.py|3|0a1b2c3|-",
        ]
    );
    assert_eq!(github_secret(&r.findings[0]), Some(GH2));
    assert!(reason(&r.findings[1]).contains("no `region.snippet.text`"));
}

#[test]
fn sarif_bad_input_names_the_place() {
    let text = fixture("gitleaks.sarif");
    let cut = text.find(SECRET1).unwrap() + 5;
    let (_, shown) = malformed(Format::Sarif, &text[..cut]);
    assert!(shown.contains("truncated"), "{shown}");
    let (at, shown) = malformed(Format::Sarif, r#"{"version":"2.1.0","runs":{}}"#);
    assert_eq!(at, "`runs`");
    assert!(shown.contains("expected an array"), "{shown}");
    let (at, _) = malformed(Format::Sarif, r#"{"version":"2.1.0"}"#);
    assert_eq!(at, "`runs`");
    let (_, shown) = malformed(Format::Sarif, r#"{"version":"1.0.0","runs":[]}"#);
    assert!(
        shown.contains("SARIF version `1.0.0` is not supported"),
        "{shown}"
    );
    let v = text.replacen("\"startLine\": 4", "\"startLine\": -4", 1);
    let (at, _) = malformed(Format::Sarif, &v);
    assert_eq!(
        at,
        "`runs[0].results[2].locations[0].physicalLocation.region.startLine`"
    );
}

// ------------------------------------------------------------------ trufflehog

#[test]
fn trufflehog_reads_raw_v2_in_both_styles_and_every_source() {
    let r = read("trufflehog.jsonl", Format::Trufflehog);
    assert_eq!(
        descs(&r),
        vec![
            format!("aws:{ID1}:with-secret trufflehog|AWS|deploy/config.env|2|6f1c0d9|-"),
            format!("aws:{ID2}:with-secret trufflehog|AWS|old/credentials|5|-|-"),
            format!("github:ClassicPat trufflehog|Github|deploy/config.env|4|6f1c0d9|https://github.com/acme/app/blob/{COMMIT}/deploy/config.env#L4"),
            "not-containable trufflehog|Slack|deploy/config.env|9|-|-".into(),
        ]
    );
    // `keyid:secret` (current) and `keyidsecret` (old versions).
    assert_eq!(aws_secret(&r.findings[0]), Some(SECRET1));
    assert_eq!(aws_secret(&r.findings[1]), Some(SECRET2));
    assert_eq!(github_secret(&r.findings[2]), Some(GH1));
}

#[test]
fn trufflehog_bad_input_names_the_line() {
    let text = fixture("trufflehog.jsonl");
    let lines: Vec<&str> = text.lines().collect();
    // The third record cut short.
    let cut = format!(
        "{}\n{}\n{}",
        lines[0],
        lines[1],
        &lines[2][..lines[2].len() / 2 + 40]
    );
    let (at, shown) = malformed(Format::Trufflehog, &cut);
    assert!(at.starts_with("line 3, column"), "{shown}");
    assert!(shown.contains("truncated"), "{shown}");
    let v = text.replacen("\"DetectorName\":\"Github\"", "\"Detector\":\"Github\"", 1);
    let (at, _) = malformed(Format::Trufflehog, &v);
    assert_eq!(at, "line 4, `DetectorName`");
    let v = text.replacen("\"line\":5", "\"line\":\"5\"", 1);
    let (at, _) = malformed(Format::Trufflehog, &v);
    assert_eq!(at, "line 3, `SourceMetadata.Data.\"Filesystem\".line`");
}

// ------------------------------------------------------------------ ggshield

#[test]
fn ggshield_joins_the_parts_of_an_incident() {
    let r = read("ggshield.json", Format::Ggshield);
    assert_eq!(
        descs(&r),
        vec![
            format!("aws:{ID1}:with-secret ggshield|AWS Keys|deploy/config.env|2|-|-"),
            "github:ClassicPat ggshield|GitHub Token|deploy/config.env|4|-|https://dashboard.gitguardian.com/workspace/1/incidents/42".to_owned(),
        ]
    );
    assert_eq!(aws_secret(&r.findings[0]), Some(SECRET1));
    let r = read("ggshield-commits.json", Format::Ggshield);
    assert_eq!(
        descs(&r),
        vec!["github:ClassicPat ggshield|GitHub Token|deploy/config.env|4|6f1c0d9|-"]
    );
}

#[test]
fn ggshield_hidden_secrets_say_to_rerun_with_show_secrets() {
    let r = read("ggshield-hidden.json", Format::Ggshield);
    assert_eq!(
        descs(&r),
        vec!["not-containable ggshield|GitHub Token|deploy/config.env|4|-|-"]
    );
    assert!(reason(&r.findings[0]).contains("--show-secrets"));
}

#[test]
fn ggshield_bad_input_names_the_place() {
    let text = fixture("ggshield.json");
    let v = text.replacen("\"match\": \"ghp_", "\"matched\": \"ghp_", 1);
    let (at, shown) = malformed(Format::Ggshield, &v);
    assert_eq!(
        at, "`entities_with_incidents[0].incidents[1].occurrences[0].match`",
        "{shown}"
    );
    let cut = text.find(GH1).unwrap() + 8;
    let (_, shown) = malformed(Format::Ggshield, &text[..cut]);
    assert!(shown.contains("truncated"), "{shown}");
    let (at, _) = malformed(
        Format::Ggshield,
        r#"{"type":"path_scan","entities_with_incidents":[{"filename":"a"}]}"#,
    );
    assert_eq!(at, "`entities_with_incidents[0].incidents`");
}

// ------------------------------------------------------------------ detect-secrets

#[test]
fn detect_secrets_recovers_secrets_by_hash_from_the_scanned_files() {
    let r = read("detect-secrets.json", Format::DetectSecrets);
    assert_eq!(
        descs(&r),
        vec![
            // The key id's hash leads to the key; the classifier pairs it
            // with the secret on the next line.
            format!("aws:{ID1}:with-secret detect-secrets|AWS Access Key|config.env|2|-|-"),
            // Hash of `ghp` only: the token on that line is taken.
            "github:ClassicPat detect-secrets|GitHub Token|config.env|4|-|-".into(),
            // Three entries (key id, secret as `AWS Access Key` and as
            // `Secret Keyword`) are one key.
            format!("aws:{ID2}:with-secret detect-secrets|AWS Access Key|settings.py|2|-|-"),
        ]
    );
    assert_eq!(aws_secret(&r.findings[0]), Some(SECRET1));
    assert_eq!(github_secret(&r.findings[1]), Some(GH1));
    assert_eq!(aws_secret(&r.findings[2]), Some(SECRET2));
}

#[test]
fn detect_secrets_without_the_file_or_with_a_changed_file_is_not_containable() {
    let text = fixture("detect-secrets.json");
    let empty = tempdir("ds-empty");
    let r = parse(
        text.as_bytes(),
        Format::DetectSecrets,
        &ParseOptions {
            root: Some(empty.clone()),
        },
    )
    .unwrap();
    assert_eq!(r.findings.len(), 5);
    for f in &r.findings {
        assert!(
            reason(f).contains("cannot be read to recover it"),
            "{}",
            reason(f)
        );
    }
    // The file changed since the scan: another key on line 2.
    std::fs::write(
        empty.join("config.env"),
        "#\nAWS_ACCESS_KEY_ID=AKIAZZZZZZZZZZZZZZZZ\n\nGITHUB_TOKEN=none\n",
    )
    .unwrap();
    let r = parse(
        text.as_bytes(),
        Format::DetectSecrets,
        &ParseOptions {
            root: Some(empty.clone()),
        },
    )
    .unwrap();
    let cfg: Vec<&Finding> = r
        .findings
        .iter()
        .filter(|f| f.provenance.file.as_deref() == Some("config.env"))
        .collect();
    assert_eq!(cfg.len(), 2);
    assert!(
        reason(cfg[0]).contains("has the reported hash"),
        "{}",
        reason(cfg[0])
    );
    assert!(
        reason(cfg[1]).contains("finds no credential"),
        "{}",
        reason(cfg[1])
    );
    std::fs::remove_dir_all(&empty).unwrap();
}

#[test]
fn detect_secrets_bad_input_names_the_place() {
    let text = fixture("detect-secrets.json");
    let v = text.replacen("5b3e9e36262a045e3adcdcc8fd32a72e00e7adb0", "not-a-hash", 1);
    let (at, shown) = malformed(Format::DetectSecrets, &v);
    assert_eq!(at, "`results.\"config.env\"[0]`", "{shown}");
    assert!(shown.contains("not a 40-digit hex SHA-1"));
    let v = text.replacen("\"line_number\": 4", "\"line_number\": null", 1);
    let (at, _) = malformed(Format::DetectSecrets, &v);
    assert_eq!(at, "`results.\"config.env\"[1].line_number`");
    let (_, shown) = malformed(Format::DetectSecrets, &text[..text.len() / 2]);
    assert!(shown.contains("truncated"));
}

// ------------------------------------------------------------------ secretlint

#[test]
fn secretlint_resolves_messages_from_the_embedded_source() {
    let r = read("secretlint.json", Format::Secretlint);
    assert_eq!(
        descs(&r),
        vec![
            // `loc` points at the variable name of the secret's line.
            format!("aws:{ID1}:with-secret secretlint|@secretlint/secretlint-rule-aws|/home/dev/app/config.env|3|-|-"),
            "github:ClassicPat secretlint|@secretlint/secretlint-rule-github|/home/dev/app/config.env|4|-|-".into(),
            "not-containable secretlint|@secretlint/secretlint-rule-github|/home/dev/app/config.env|5|-|-".into(),
            format!("aws:{ID2}:with-secret secretlint|@secretlint/secretlint-rule-aws|/home/dev/app/settings.py|3|-|-"),
        ]
    );
    assert_eq!(aws_secret(&r.findings[0]), Some(SECRET1));
    assert_eq!(github_secret(&r.findings[1]), Some(GH1));
    assert!(reason(&r.findings[2]).contains("wrong checksum"));
    assert_eq!(aws_secret(&r.findings[3]), Some(SECRET2));
}

#[test]
fn secretlint_bad_input_names_the_place() {
    let text = fixture("secretlint.json");
    let v = text.replacen("\"loc\"", "\"location\"", 1);
    let (at, shown) = malformed(Format::Secretlint, &v);
    assert_eq!(at, "`[0].messages[0].loc`", "{shown}");
    let cut = text.find(GH1).unwrap() + 4;
    let (_, shown) = malformed(Format::Secretlint, &text[..cut]);
    assert!(shown.contains("truncated"));
}

// ------------------------------------------------------------------ GitHub alerts

#[test]
fn github_alert_object_carries_the_secret_and_its_link() {
    let r = read("github-alert.json", Format::GithubAlert);
    assert_eq!(
        descs(&r),
        vec!["github:ClassicPat github|github_personal_access_token|-|-|-|https://github.com/acme/app/security/secret-scanning/42"]
    );
    assert_eq!(github_secret(&r.findings[0]), Some(GH1));
}

#[test]
fn github_alert_list_and_hidden_secrets() {
    let r = read("github-alerts.json", Format::GithubAlert);
    assert_eq!(
        descs(&r),
        vec![
            format!("aws:{ID1}:id-only github|aws_access_key_id|-|-|-|https://github.com/acme/app/security/secret-scanning/7"),
            "not-containable github|slack_api_token|-|-|-|https://github.com/acme/infra/security/secret-scanning/8".into(),
        ]
    );
    assert_eq!(
        r.alerts,
        vec![AlertRef {
            owner: "acme".into(),
            repo: "infra".into(),
            number: 9
        }]
    );
}

#[test]
fn github_webhook_becomes_an_alert_to_fetch() {
    let r = read("github-webhook.json", Format::GithubAlert);
    assert!(r.findings.is_empty());
    assert_eq!(
        r.alerts,
        vec![AlertRef {
            owner: "acme".into(),
            repo: "app".into(),
            number: 42
        }]
    );
}

#[test]
fn github_alert_bad_input_names_the_place() {
    let text = fixture("github-alert.json");
    let v = text.replacen("\"number\": 42", "\"number\": \"42\"", 1);
    let (at, _) = malformed(Format::GithubAlert, &v);
    assert_eq!(at, "`number`");
    let hook = fixture("github-webhook.json");
    let v = hook.replacen(
        "\"login\": \"acme\", \"id\": 1, \"type\"",
        "\"id\": 1, \"type\"",
        1,
    );
    let (at, _) = malformed(Format::GithubAlert, &v);
    assert_eq!(at, "`repository.owner.login`");
    let (at, shown) = malformed(
        Format::GithubAlert,
        r#"{"number": 1, "secret_type": "x", "url": "https://example.com/nothing"}"#,
    );
    assert_eq!(at, "`url`");
    assert!(
        shown.contains("names no `/repos/{owner}/{repo}`"),
        "{shown}"
    );
}

// ------------------------------------------------------------------ detection

#[test]
fn every_fixture_is_detected() {
    let cases = [
        ("gitleaks.json", Format::Gitleaks),
        ("gitleaks.sarif", Format::Sarif),
        ("generic.sarif", Format::Sarif),
        ("trufflehog.jsonl", Format::Trufflehog),
        ("ggshield.json", Format::Ggshield),
        ("ggshield-commits.json", Format::Ggshield),
        ("ggshield-hidden.json", Format::Ggshield),
        ("detect-secrets.json", Format::DetectSecrets),
        ("secretlint.json", Format::Secretlint),
        ("github-alert.json", Format::GithubAlert),
        ("github-alerts.json", Format::GithubAlert),
        ("github-webhook.json", Format::GithubAlert),
        ("scanned/config.env", Format::Plain),
    ];
    for (name, want) in cases {
        let text = fixture(name);
        assert_eq!(detect(text.as_bytes()).unwrap(), want, "{name}");
        // Auto parses as the detected format does.
        let auto = parse(text.as_bytes(), Format::Auto, &opts()).unwrap();
        let direct = parse(text.as_bytes(), want, &opts()).unwrap();
        assert_eq!(descs(&auto), descs(&direct), "{name}");
        assert!(
            !auto.findings.is_empty() || !auto.alerts.is_empty(),
            "{name}"
        );
        // A truncated report is still recognised, so that the error says where it breaks.
        if want != Format::Plain {
            let cut = &text[..text.len() * 2 / 3];
            assert_eq!(detect(cut.as_bytes()).unwrap(), want, "truncated {name}");
            let e = parse(cut.as_bytes(), Format::Auto, &opts()).unwrap_err();
            assert!(
                matches!(&e, ReportError::Malformed { format, .. } if *format == want.name()),
                "truncated {name}: {e}"
            );
            assert_clean(name, &format!("{e} {e:?}"));
        }
    }
}

#[test]
fn unknown_json_is_an_unknown_format_naming_only_keys() {
    let e = detect(format!(r#"{{"token": "{GH1}", "other": 1}}"#).as_bytes()).unwrap_err();
    let shown = e.to_string();
    assert!(matches!(e, ReportError::UnknownFormat(_)));
    assert!(shown.contains("`token`, `other`"), "{shown}");
    assert!(shown.contains("pass --format"), "{shown}");
    assert_clean("unknown format", &shown);
    let e = detect(format!("{{\"token\": \"{GH1}").as_bytes()).unwrap_err();
    assert!(e.to_string().contains("does not parse"), "{e}");
    assert_clean("unknown format", &e.to_string());
    let e = detect(b"[1, 2]").unwrap_err();
    assert!(e.to_string().contains("an array of a number"), "{e}");
}

#[test]
fn not_utf8_is_refused_with_the_byte_offset() {
    let e = parse(b"[\xff]", Format::Gitleaks, &opts()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "gitleaks report is malformed at byte 1: not UTF-8 text"
    );
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "cordon-report-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A SARIF result in secretlint's shape (its formatter writes no snippet).
fn sarif_located(uri: &str, line: u64) -> String {
    serde_json::json!({
        "$schema": "http://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "secretlint"}},
            "results": [{
                "ruleId": "@secretlint/secretlint-rule-preset-recommend > @secretlint/secretlint-rule-github",
                "message": {"text": "found GitHub Token(*****): *****"},
                "locations": [{"physicalLocation": {
                    "artifactLocation": {"uri": uri, "index": 0},
                    "region": {"startLine": line, "startColumn": 14}
                }}]
            }]
        }]
    })
    .to_string()
}

#[test]
fn sarif_without_snippet_is_read_back_from_the_scanned_file_and_says_so() {
    let text = sarif_located("config.env", 4);
    let r = parse(text.as_bytes(), Format::Auto, &opts()).unwrap();
    assert_eq!(r.findings.len(), 1, "{:?}", descs(&r));
    assert_eq!(github_secret(&r.findings[0]), Some(GH1));
    assert_eq!(
        r.findings[0].provenance.read_back,
        Some(readback::ReadBack::Line)
    );
    let shown = serde_json::to_string(&r.findings[0].provenance).unwrap();
    assert!(shown.contains(r#""read_back":"line""#), "{shown}");
    assert_clean("provenance", &shown);
    // A `file://` URI naming the same file.
    let abs = fixture_dir().join("scanned/config.env");
    let text = sarif_located(&format!("file://{}", abs.display()), 2);
    let r = parse(text.as_bytes(), Format::Sarif, &opts()).unwrap();
    assert_eq!(aws_secret(&r.findings[0]), Some(SECRET1));
    // A line holding nothing cordon handles is not containable, with why.
    let text = sarif_located("config.env", 1);
    let r = parse(text.as_bytes(), Format::Sarif, &opts()).unwrap();
    assert!(reason(&r.findings[0]).contains("finds no credential"));
}

#[test]
fn report_paths_outside_the_root_are_refused_per_finding_symlinks_included() {
    // The hostile baseline of issue 21: a `filename` outside the scanned tree
    // names a line holding a valid GitHub token. Nothing outside is read.
    let base = tempdir("escape");
    let root = base.join("repo");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(base.join("outside")).unwrap();
    std::fs::write(base.join("outside/hosts.yml"), format!("token: {GH1}\n")).unwrap();
    std::os::unix::fs::symlink(base.join("outside/hosts.yml"), root.join("hosts.yml")).unwrap();
    std::fs::write(root.join("ok.env"), format!("GITHUB_TOKEN={GH2}\n")).unwrap();
    let outside = base.join("outside/hosts.yml");
    let names = [
        "../outside/hosts.yml".to_owned(),
        outside.display().to_string(),
        "hosts.yml".to_owned(),
    ];
    let o = ParseOptions {
        root: Some(root.clone()),
    };
    for name in &names {
        let ds = serde_json::json!({
            "version": "1.5.0", "plugins_used": [], "filters_used": [],
            "results": {
                name.clone(): [{"type": "GitHub Token", "filename": name, "line_number": 1,
                    "hashed_secret": "e175c6f5f2a92e8623bd9a4820edb4e8c1b0fd10", "is_verified": false}],
                "ok.env": [{"type": "GitHub Token", "filename": "ok.env", "line_number": 1,
                    "hashed_secret": "e175c6f5f2a92e8623bd9a4820edb4e8c1b0fd10", "is_verified": false}]
            }
        })
        .to_string();
        for (fmt, text) in [
            (Format::DetectSecrets, ds),
            (Format::Sarif, sarif_located(name, 1)),
        ] {
            let r = parse(text.as_bytes(), fmt, &o).unwrap();
            let escaped: Vec<&Finding> = r
                .findings
                .iter()
                .filter(|f| f.provenance.file.as_deref() == Some(name.as_str()))
                .collect();
            assert_eq!(escaped.len(), 1, "{fmt:?} {name}: {:?}", descs(&r));
            assert!(
                reason(escaped[0]).contains("outside the scan root"),
                "{fmt:?} {name}: {}",
                reason(escaped[0])
            );
            assert_clean("reason", reason(escaped[0]));
            // The finding inside the root is still taken (detect-secrets only).
            if fmt == Format::DetectSecrets {
                assert!(r.findings.iter().any(|f| github_secret(f) == Some(GH2)));
            }
        }
    }
    std::fs::remove_dir_all(&base).unwrap();
}

/// Issue 21: a gitleaks report is read one record at a time, never held as
/// one tree. Its errors stay those of a whole-document parse: a syntax error
/// anywhere wins over a field error in an earlier record, a top level that
/// is not an array is named by its kind, and nothing after the array is
/// accepted.
#[test]
fn gitleaks_read_record_by_record_keeps_the_whole_document_errors() {
    let cut = r#"[{"RuleID": 1, "Secret": "x"}, {"RuleID": "r", "Secret": "CANARY-9"#;
    let (at, shown) = malformed(Format::Gitleaks, cut);
    assert!(at.starts_with("line 1, column"), "{shown}");
    assert!(shown.contains("truncated"), "{shown}");
    assert!(!shown.contains("CANARY"), "{shown}");
    let (at, shown) = malformed(
        Format::Gitleaks,
        r#"[{"RuleID": "r", "Secret": "x"}, {"RuleID": 1, "Secret": "y"}, {"RuleID": 2}]"#,
    );
    assert_eq!(at, "`[1].RuleID`", "{shown}");
    assert!(
        shown.contains("expected a string, found a number"),
        "{shown}"
    );
    for (text, kind) in [
        (r#""CANARY-1""#, "a string"),
        ("7", "a number"),
        ("-7", "a number"),
        ("7.5", "a number"),
        ("null", "null"),
        ("true", "a boolean"),
    ] {
        let (at, shown) = malformed(Format::Gitleaks, text);
        assert_eq!(at, "the top level", "{shown}");
        assert!(
            shown.contains(&format!("expected an array, found {kind}")),
            "{shown}"
        );
        assert!(!shown.contains("CANARY"), "{shown}");
    }
    let (_, shown) = malformed(Format::Gitleaks, r#"[] {"RuleID": "x"}"#);
    assert!(shown.contains("not valid JSON"), "{shown}");
    // Every record is read, in order.
    let many: Vec<String> = (0..2500)
        .map(|i| {
            format!(r#"{{"RuleID": "r", "Secret": "xoxb-{i:05}", "File": "f", "StartLine": {i}}}"#)
        })
        .collect();
    let r = parse(
        format!("[{}]", many.join(",")).as_bytes(),
        Format::Auto,
        &ParseOptions::default(),
    )
    .unwrap();
    assert_eq!(r.findings.len(), 2500);
    assert_eq!(r.findings[2499].provenance.line, Some(2499));
}
