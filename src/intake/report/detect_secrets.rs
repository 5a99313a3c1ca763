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
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use super::json::{self, Walk};
use super::{Credential, Finding, NotContainable, ParseOptions, Provenance, Report, ReportError};
use crate::intake::classify::{classify, Found};

const FORMAT: &str = "detect-secrets";

struct Entry {
    kind: String,
    line: u64,
    hash: String,
}

pub fn parse(text: &str, opts: &ParseOptions) -> Result<Report, ReportError> {
    let v = json::parse(FORMAT, text)?;
    let w = Walk::new(FORMAT);
    let root = w.root(&v);
    let mut files: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
    for (name, entries) in root.req("results")?.node().entries()? {
        for e in entries.node().items()? {
            let e = e.node();
            let file = e.opt_str("filename")?.unwrap_or(name).to_owned();
            let hash = e.req_str("hashed_secret")?;
            if hash.len() != 40 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(e.error("`hashed_secret` is not a 40-digit hex SHA-1"));
            }
            files.entry(file).or_default().push(Entry {
                kind: e.req_str("type")?.to_owned(),
                line: e.req_u64("line_number")?,
                hash: hash.to_ascii_lowercase(),
            });
        }
    }
    let base = opts.root.clone().unwrap_or_else(|| PathBuf::from("."));
    let mut report = Report::default();
    for (file, entries) in files {
        report.findings.extend(file_findings(&base, &file, entries));
    }
    Ok(report)
}

fn sha1_hex(s: &str) -> String {
    hex::encode(Sha1::digest(s.as_bytes()))
}

fn prov(file: &str, e: &Entry) -> Provenance {
    Provenance {
        scanner: FORMAT.into(),
        rule: Some(e.kind.clone()),
        file: Some(file.to_owned()),
        line: Some(e.line),
        ..Provenance::default()
    }
}

fn not_containable(file: &str, e: &Entry, reason: String) -> Finding {
    Finding {
        provenance: prov(file, e),
        item: Err(NotContainable {
            reason,
            fingerprint: None,
        }),
    }
}

/// Lines a classifier finding covers (an AWS pair may span two).
fn lines_of(f: &Found) -> Vec<u64> {
    let mut v = vec![f.line() as u64];
    if let Found::AwsKey {
        secret_line: Some(l),
        ..
    } = f
    {
        v.push(*l as u64);
    }
    v
}

/// The SHA-1s of the texts a classifier finding holds.
fn hashes_of(f: &Found) -> Vec<String> {
    match f {
        Found::GithubToken { secret, .. } => vec![sha1_hex(secret.expose())],
        Found::AwsKey { key_id, secret, .. } => {
            let mut v = vec![sha1_hex(key_id)];
            if let Some(s) = secret {
                v.push(sha1_hex(s.expose()));
            }
            v
        }
        Found::AwsSecretUnpaired { secret, .. } => vec![sha1_hex(secret.expose())],
        Found::Invalid { .. } | Found::Unrecognised { .. } => Vec::new(),
    }
}

fn is_github(f: &Found) -> bool {
    matches!(
        f,
        Found::GithubToken { .. }
            | Found::Invalid {
                what: "github token" | "github fine-grained token",
                ..
            }
    )
}

fn file_findings(base: &Path, file: &str, entries: Vec<Entry>) -> Vec<Finding> {
    let path = base.join(file);
    let content = match std::fs::read(&path) {
        Ok(bytes) => zeroize::Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) => {
            let why = match e.kind() {
                std::io::ErrorKind::NotFound => "it does not exist".to_owned(),
                _ => format!("{e}"),
            };
            return entries
                .iter()
                .map(|en| {
                    not_containable(
                        file,
                        en,
                        format!(
                            "detect-secrets stores only a hash of the secret, and `{}` cannot be read to recover it ({why}); run cordon where the scan ran, or point it at that directory",
                            path.display()
                        ),
                    )
                })
                .collect();
        }
    };
    let mut found: Vec<Option<Found>> = classify(&content).into_iter().map(Some).collect();
    // Index of the classifier finding each entry resolved to (for merging).
    let mut taken: Vec<(usize, Provenance)> = Vec::new();
    let mut out = Vec::new();
    for e in &entries {
        let on_line: Vec<usize> = found
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                f.as_ref()
                    .filter(|f| lines_of(f).contains(&e.line))
                    .map(|_| i)
            })
            .collect();
        let by_hash = on_line.iter().copied().find(|&i| {
            found[i]
                .as_ref()
                .is_some_and(|f| hashes_of(f).contains(&e.hash))
        });
        let chosen: Vec<usize> = match by_hash {
            Some(i) => vec![i],
            // The GitHub-token hash covers only the prefix: take the line's tokens.
            None if e.kind == "GitHub Token" => on_line
                .iter()
                .copied()
                .filter(|&i| found[i].as_ref().is_some_and(is_github))
                .collect(),
            None => Vec::new(),
        };
        if chosen.is_empty() {
            let reason = if on_line.is_empty() {
                format!(
                    "detect-secrets `{}`: cordon finds no credential it handles at line {} of `{file}` (a secret type no connector handles, or the file changed since the scan)",
                    e.kind, e.line
                )
            } else {
                format!(
                    "detect-secrets `{}`: no credential at line {} of `{file}` has the reported hash (the file changed since the scan?)",
                    e.kind, e.line
                )
            };
            out.push(not_containable(file, e, reason));
            continue;
        }
        for i in chosen {
            if taken.iter().any(|(t, _)| *t == i) {
                // Another entry (the key id, or another plugin) already holds it.
                continue;
            }
            taken.push((i, prov(file, e)));
        }
    }
    taken.sort_by_key(|(i, _)| *i);
    for (i, provenance) in taken {
        let Some(f) = found.get_mut(i).and_then(Option::take) else {
            continue;
        };
        if let Some(item) = Credential::from_found(f) {
            out.push(Finding { provenance, item });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_matches_the_tools_hash() {
        // The value detect-secrets 1.5.0 stored for a GitHub token (the prefix only).
        assert_eq!(sha1_hex("ghp"), "e175c6f5f2a92e8623bd9a4820edb4e8c1b0fd10");
    }
}
