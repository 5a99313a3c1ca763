//! Real secret scanners (installed at pinned versions by
//! `peers/scanners/install`, which `scripts/peers` runs) over planted canary
//! credentials, and their real output through cordon's report parsers:
//! auto-detected, every planted credential found with its provenance, the
//! token with a wrong checksum reported as not containable.

use std::path::Path;
use std::process::Command;

use cordon::intake::classify::make_classic_token;
use cordon::intake::report::{detect, parse, Credential, Finding, Format, ParseOptions, Report};

const KEY_ID: &str = "AKIARUNNERCANARY2345";
const KEY_SECRET: &str = "RunnerCanarySecret/DoNotUse/0123456789ab";

fn tool(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "`{var}` is not set: run `scripts/test`, which installs the real scanners \
             (peers/scanners/install --env prints it)"
        )
    })
}

/// A directory with a planted AWS key pair, a checksum-valid GitHub token and
/// one whose checksum is wrong. Returns (dir, good token, bad token).
fn planted(tag: &str) -> (tempfile::TempDir, String, String) {
    let dir = tempfile::Builder::new()
        .prefix(&format!("cordon-scan-{tag}-"))
        .tempdir()
        .unwrap();
    let good = make_classic_token("ghp_", &format!("runner-{tag}-{}", std::process::id()));
    let last = good.chars().last().unwrap();
    let bad = format!(
        "{}{}",
        &good[..good.len() - 1],
        if last == 'A' { 'B' } else { 'A' }
    );
    std::fs::write(
        dir.path().join("settings.py"),
        format!(
            "# planted canaries\naws_access_key_id = \"{KEY_ID}\"\naws_secret_access_key = \"{KEY_SECRET}\"\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("deploy.env"),
        format!("# planted canary\nGITHUB_TOKEN={good}\n"),
    )
    .unwrap();
    std::fs::write(dir.path().join("old.env"), format!("\nOLD_TOKEN={bad}\n")).unwrap();
    (dir, good, bad)
}

fn no_canary(what: &str, text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(&s[4..]), "{what} leaks a canary: {text}");
    }
}

fn by_file<'a>(r: &'a Report, suffix: &str) -> Vec<&'a Finding> {
    r.findings
        .iter()
        .filter(|f| {
            f.provenance
                .file
                .as_deref()
                .is_some_and(|p| p.ends_with(suffix))
        })
        .collect()
}

fn check(r: &Report, scanner: &str, good: &str, bad: &str) {
    no_canary("report Debug", &format!("{r:?}"), &[KEY_SECRET, good, bad]);
    let aws = by_file(r, "settings.py");
    assert_eq!(aws.len(), 1, "{r:?}");
    assert_eq!(aws[0].provenance.scanner, scanner);
    match &aws[0].item {
        Ok(Credential::AwsKey {
            key_id,
            secret: Some(s),
            session: false,
        }) => {
            assert_eq!(key_id, KEY_ID);
            assert_eq!(s.expose(), KEY_SECRET);
        }
        other => panic!("{other:?}"),
    }
    let gh = by_file(r, "deploy.env");
    assert_eq!(gh.len(), 1, "{r:?}");
    assert_eq!(gh[0].provenance.line, Some(2));
    match &gh[0].item {
        Ok(Credential::Github { secret, .. }) => assert_eq!(secret.expose(), good),
        other => panic!("{other:?}"),
    }
    let old = by_file(r, "old.env");
    assert_eq!(old.len(), 1, "{r:?}");
    assert_eq!(old[0].provenance.line, Some(2));
    match &old[0].item {
        Err(nc) => assert!(nc.reason.contains("wrong checksum"), "{}", nc.reason),
        Ok(_) => panic!("a token with a wrong checksum was taken as containable"),
    }
}

fn run(cmd: &mut Command, dir: &Path) -> Vec<u8> {
    let out = cmd.current_dir(dir).output().unwrap();
    // Both scanners exit non-zero when they find something.
    assert!(
        out.status.code().is_some() && !out.stdout.is_empty(),
        "{:?}: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn detect_secrets_real_output_resolves_hashes_to_the_planted_credentials() {
    let (dir, good, bad) = planted("ds");
    let out = run(
        Command::new(tool("CORDON_TEST_DETECT_SECRETS")).args([
            "scan",
            "settings.py",
            "deploy.env",
            "old.env",
        ]),
        dir.path(),
    );
    assert_eq!(detect(&out).unwrap(), Format::DetectSecrets);
    let r = parse(
        &out,
        Format::Auto,
        &ParseOptions {
            root: Some(dir.path().to_owned()),
        },
    )
    .unwrap();
    check(&r, "detect-secrets", &good, &bad);
    // Parsed from elsewhere without the scanned files: not containable, never an error.
    let r = parse(&out, Format::Auto, &ParseOptions::default()).unwrap();
    assert!(r.findings.iter().all(|f| f.item.is_err()), "{r:?}");
}

#[test]
fn secretlint_real_output_masked_or_not_gives_the_planted_credentials() {
    let (dir, good, bad) = planted("sl");
    let rc = dir.path().join(".secretlintrc.json");
    std::fs::write(
        &rc,
        r#"{"rules":[{"id":"@secretlint/secretlint-rule-preset-recommend"}]}"#,
    )
    .unwrap();
    for masked in [false, true] {
        let mut cmd = Command::new(tool("CORDON_TEST_SECRETLINT"));
        cmd.args(["--format", "json", "--secretlintrc"])
            .arg(&rc)
            .args(["settings.py", "deploy.env", "old.env"]);
        if masked {
            cmd.arg("--maskSecrets");
        }
        let out = run(&mut cmd, dir.path());
        assert_eq!(detect(&out).unwrap(), Format::Secretlint);
        let r = parse(&out, Format::Auto, &ParseOptions::default()).unwrap();
        check(&r, "secretlint", &good, &bad);
        // secretlint's paths are absolute.
        for f in &r.findings {
            assert!(
                f.provenance
                    .file
                    .as_deref()
                    .is_some_and(|p| p.starts_with('/')),
                "{:?}",
                f.provenance
            );
        }
    }
}

#[test]
fn secretlint_sarif_without_snippets_is_read_back_from_the_scanned_files() {
    // The real `@secretlint/secretlint-formatter-sarif` writes file, line and
    // column but never `region.snippet` (issue 14): cordon reads each finding
    // back under `--root` and says so.
    let (dir, good, bad) = planted("sarif");
    let rc = dir.path().join(".secretlintrc.json");
    std::fs::write(
        &rc,
        r#"{"rules":[{"id":"@secretlint/secretlint-rule-preset-recommend"}]}"#,
    )
    .unwrap();
    let mut cmd = Command::new(tool("CORDON_TEST_SECRETLINT"));
    cmd.args([
        "--format",
        "@secretlint/secretlint-formatter-sarif",
        "--secretlintrc",
    ])
    .arg(&rc)
    .args(["settings.py", "deploy.env", "old.env"]);
    let out = run(&mut cmd, dir.path());
    let text = String::from_utf8_lossy(&out);
    assert!(!text.contains("\"snippet\""), "{text}");
    no_canary("the SARIF report", &text, &[KEY_SECRET, &good, &bad]);
    assert_eq!(detect(&out).unwrap(), Format::Sarif);
    let r = parse(
        &out,
        Format::Auto,
        &ParseOptions {
            root: Some(dir.path().to_owned()),
        },
    )
    .unwrap();
    check(&r, "secretlint", &good, &bad);
    for f in r.findings.iter().filter(|f| f.item.is_ok()) {
        assert_eq!(
            f.provenance.read_back,
            Some(cordon::intake::report::readback::ReadBack::Line),
            "{:?}",
            f.provenance
        );
    }
    // Elsewhere, without the scanned files: not containable, never an error.
    let empty = tempfile::tempdir().unwrap();
    let r = parse(
        &out,
        Format::Auto,
        &ParseOptions {
            root: Some(empty.path().to_owned()),
        },
    )
    .unwrap();
    assert!(r.findings.iter().all(|f| f.item.is_err()), "{r:?}");
}
