//! detect-secrets JSON (`detect-secrets scan > .secrets.baseline`, checked
//! against detect-secrets 1.5.0): `results` maps each file to entries with
//! `type`, `filename`, `line_number` and `hashed_secret`, a SHA-1 of the
//! secret. The secret itself is not in the report.
//!
//! To act on an entry, the file is re-read at that line (under
//! `ParseOptions::root`, the directory the scan ran in), the classifier
//! extracts the candidates of the file, and the one whose SHA-1 matches is
//! the secret. Facts checked against the real tool:
//! * its GitHub-token regex captures only the prefix, so `hashed_secret` of a
//!   `GitHub Token` is SHA-1(`ghp`): for those, whatever the classifier finds
//!   on that line is taken;
//! * it calls both an AWS key id and an AWS secret `AWS Access Key` (and the
//!   secret is often reported again as `Base64 High Entropy String` and
//!   `Secret Keyword`): entries whose hashes lead to the same key are one
//!   finding.

use std::collections::BTreeMap;

use super::json::{self, Walk};
use super::readback::{self, Root, Wanted};
use super::{ParseOptions, Provenance, Report, ReportError};

const FORMAT: &str = "detect-secrets";

pub fn parse(text: &str, opts: &ParseOptions) -> Result<Report, ReportError> {
    let v = json::parse(FORMAT, text)?;
    let w = Walk::new(FORMAT);
    let root = w.root(&v);
    let mut files: BTreeMap<String, Vec<Wanted>> = BTreeMap::new();
    for (name, entries) in root.req("results")?.node().entries()? {
        for e in entries.node().items()? {
            let e = e.node();
            let file = e.opt_str("filename")?.unwrap_or(name).to_owned();
            let hash = e.req_str("hashed_secret")?;
            if hash.len() != 40 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(e.error("`hashed_secret` is not a 40-digit hex SHA-1"));
            }
            let kind = e.req_str("type")?.to_owned();
            let line = e.req_u64("line_number")?;
            let wanted = Wanted {
                prov: Provenance {
                    scanner: FORMAT.into(),
                    rule: Some(kind.clone()),
                    file: Some(file.clone()),
                    line: Some(line),
                    ..Provenance::default()
                },
                line,
                sha1: Some(hash.to_ascii_lowercase()),
                // The GitHub-token hash covers only the prefix: take the line's tokens.
                github_by_line: kind == "GitHub Token",
                what: format!("detect-secrets `{kind}`"),
            };
            files.entry(file).or_default().push(wanted);
        }
    }
    let base = Root::new(opts.root.as_deref());
    let mut report = Report::default();
    for (file, entries) in files {
        report.findings.extend(readback::file_findings(
            &base,
            &file,
            entries,
            "detect-secrets stores only a hash of the secret",
        ));
    }
    Ok(report)
}
