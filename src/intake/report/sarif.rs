//! SARIF 2.1.0 (OASIS), as written by gitleaks (`--report-format sarif`) and
//! other scanners: `runs[].results[]` with `ruleId`,
//! `locations[].physicalLocation.{artifactLocation.uri, region}`. The secret
//! is in `region.snippet.text` (gitleaks puts exactly the secret there; other
//! tools may put the whole line, which the classifier searches). The commit
//! is `partialFingerprints.commitSha` (gitleaks) or the run's
//! `versionControlProvenance[0].revisionId`.
//!
//! A result that locates the secret (file and line) without a snippet —
//! secretlint's SARIF formatter (`@secretlint/secretlint-formatter-sarif`,
//! checked at 11.7.1) never writes one — is read back from the scanned file
//! under `--root` (see `readback`): SARIF has no standard field for a hash of
//! the secret, and secretlint writes no fingerprint, so what the classifier
//! finds on the reported line is taken, and the finding says it was read back.

use cordon_connector::Secret;

use super::hits::{self, Hit};
use super::json::{self, Walk};
use super::readback::{self, Root, Wanted};
use super::{Finding, NotContainable, ParseOptions, Provenance, Report, ReportError};

const FORMAT: &str = "sarif";

pub fn parse(text: &str, opts: &ParseOptions) -> Result<Report, ReportError> {
    let v = json::parse(FORMAT, text)?;
    let w = Walk::new(FORMAT);
    let root = w.root(&v);
    if let Some(version) = root.get("version")? {
        let version = version.node().str()?;
        if version != "2.1.0" {
            return Err(root.error(format!(
                "SARIF version `{version}` is not supported (only 2.1.0)"
            )));
        }
    }
    let mut found = Vec::new();
    let mut blind = Vec::new();
    // Results located without a snippet, by file (in report order).
    let mut located: Vec<(String, Vec<Wanted>)> = Vec::new();
    let mut located_at: std::collections::HashMap<String, usize> = Default::default();
    for run in root.req("runs")?.node().items()? {
        let run = run.node();
        let tool = run.req("tool")?;
        let driver = tool.node().req("driver")?;
        let scanner = driver.node().req_str("name")?.to_ascii_lowercase();
        let run_commit = match run.get("versionControlProvenance")? {
            Some(vcp) => match vcp.node().items()?.first() {
                Some(first) => first.node().opt_nonempty("revisionId")?,
                None => None,
            },
            None => None,
        };
        let Some(results) = run.get("results")? else {
            continue;
        };
        for result in results.node().items()? {
            let r = result.node();
            let rule = r.opt_nonempty("ruleId")?;
            let commit = match r.get("partialFingerprints")? {
                Some(pf) => pf.node().opt_nonempty("commitSha")?,
                None => None,
            }
            .or_else(|| run_commit.clone());
            let url = r.opt_nonempty("hostedViewerUri")?;
            let locations = match r.get("locations")? {
                Some(l) => l.node().items()?,
                None => Vec::new(),
            };
            let what = match &rule {
                Some(rule) => format!("{scanner} rule `{rule}`"),
                None => format!("{scanner} result"),
            };
            let mut any = false;
            for loc in &locations {
                let Some(phys) = loc.node().get("physicalLocation")? else {
                    continue;
                };
                let phys = phys.node();
                let file = match phys.get("artifactLocation")? {
                    Some(a) => a.node().opt_nonempty("uri")?,
                    None => None,
                };
                let (line, column, snippet) = match phys.get("region")? {
                    Some(region) => {
                        let region = region.node();
                        let snippet = match region.get("snippet")? {
                            Some(s) => s.node().opt_str("text")?,
                            None => None,
                        };
                        (
                            region.opt_u64("startLine")?,
                            region.opt_u64("startColumn")?,
                            snippet,
                        )
                    }
                    None => (None, None, None),
                };
                // A context region is a wider excerpt: used only without a snippet.
                let snippet = match snippet {
                    Some(s) => Some(s),
                    None => match phys.get("contextRegion")? {
                        Some(c) => match c.node().get("snippet")? {
                            Some(s) => s.node().opt_str("text")?,
                            None => None,
                        },
                        None => None,
                    },
                };
                let prov = Provenance {
                    scanner: scanner.clone(),
                    rule: rule.clone(),
                    file: file.clone(),
                    line,
                    commit: commit.clone(),
                    url: url.clone(),
                    read_back: None,
                };
                any = true;
                match snippet.filter(|s| !s.is_empty()) {
                    Some(s) if scanner == "gitleaks" && hits::gitleaks_redacted(s) => {
                        blind.push(hits::gitleaks_redacted_finding(prov));
                    }
                    Some(s) => found.push(Hit {
                        prov,
                        column,
                        text: Secret::new(s),
                        what: what.clone(),
                    }),
                    None => match (file, line) {
                        (Some(file), Some(line)) => {
                            let w = Wanted {
                                prov,
                                line,
                                sha1: None,
                                github_by_line: false,
                                what: what.clone(),
                            };
                            match located_at.get(&file) {
                                Some(&i) => located[i].1.push(w),
                                None => {
                                    located_at.insert(file.clone(), located.len());
                                    located.push((file, vec![w]));
                                }
                            }
                        }
                        _ => blind.push(Finding {
                            provenance: prov,
                            item: Err(no_snippet()),
                        }),
                    },
                }
            }
            if !any {
                blind.push(Finding {
                    provenance: Provenance {
                        scanner: scanner.clone(),
                        rule: rule.clone(),
                        commit: commit.clone(),
                        url: url.clone(),
                        ..Provenance::default()
                    },
                    item: Err(no_snippet()),
                });
            }
        }
    }
    let mut findings = hits::findings(found);
    let base = (!located.is_empty()).then(|| Root::new(opts.root.as_deref()));
    if let Some(base) = &base {
        for (file, wanted) in located {
            findings.extend(readback::file_findings(
                base,
                &file,
                wanted,
                "the SARIF result locates the secret but carries no `region.snippet.text`",
            ));
        }
    }
    findings.extend(blind);
    Ok(Report {
        findings,
        alerts: Vec::new(),
    })
}

fn no_snippet() -> NotContainable {
    NotContainable {
        reason: "the SARIF result carries no `region.snippet.text` and no file and line to read it back from, so the secret is not in the report; rerun the scanner with snippets (gitleaks writes them) or pass the secret as plain text".into(),
        fingerprint: None,
    }
}
