//! ggshield `secret scan … --json` (GitGuardian; the output schema is
//! ggshield's `doc/schemas/secret.json`): a scan with
//! `entities_with_incidents[].{filename, incidents[]}`, or, for commit
//! ranges, `scans[]` of per-commit scans (`id` = the commit) holding the same.
//! Each incident has a `type` (the detector, such as `AWS Keys`) and
//! `occurrences[]` with `match`, `type` (the part: `client_id`,
//! `client_secret`, `apikey`) and `line_start`.
//!
//! ggshield hides matches unless run with `--show-secrets`; a hidden match is
//! reported as not containable, with that hint.

use cordon_connector::Secret;

use super::hits::{self, Hit};
use super::json::{Node, Walk};
use super::{json, Finding, NotContainable, Provenance, Report, ReportError};

const FORMAT: &str = "ggshield";

pub fn parse(text: &str) -> Result<Report, ReportError> {
    let v = json::parse(FORMAT, text)?;
    let w = Walk::new(FORMAT);
    let root = w.root(&v);
    let mut out = Out::default();
    scan(&root, None, &mut out)?;
    if let Some(scans) = root.get("scans")? {
        for sub in scans.node().items()? {
            let sub = sub.node();
            // Commit scans are identified by the commit sha.
            let commit = match sub.opt_str("type")? {
                Some("commit") => sub.opt_nonempty("id")?,
                _ => None,
            };
            scan(&sub, commit, &mut out)?;
        }
    }
    let mut findings = hits::findings(out.hits);
    findings.extend(out.hidden);
    Ok(Report {
        findings,
        alerts: Vec::new(),
    })
}

#[derive(Default)]
struct Out {
    hits: Vec<Hit>,
    hidden: Vec<Finding>,
}

fn scan(n: &Node<'_>, commit: Option<String>, out: &mut Out) -> Result<(), ReportError> {
    let Some(entities) = n.get("entities_with_incidents")? else {
        return Ok(());
    };
    for entity in entities.node().items()? {
        let e = entity.node();
        let file = e.opt_nonempty("filename")?;
        for incident in e.req("incidents")?.node().items()? {
            let inc = incident.node();
            let detector = inc.req_str("type")?;
            let url = inc.opt_nonempty("incident_url")?;
            let occurrences = inc.req("occurrences")?.node().items()?;
            let mut parts: Vec<&str> = Vec::new();
            let mut line = None;
            for occ in &occurrences {
                let o = occ.node();
                parts.push(o.req_str("match")?);
                let l = o.opt_u64("line_start")?;
                line = match (line, l) {
                    (Some(a), Some(b)) => Some(std::cmp::min(a, b)),
                    (a, b) => a.or(b),
                };
            }
            let prov = Provenance {
                scanner: FORMAT.into(),
                rule: Some(detector.to_owned()),
                file: file.clone(),
                line,
                commit: commit.clone(),
                url,
                read_back: None,
            };
            if parts.iter().any(|p| p.contains("***")) {
                out.hidden.push(Finding {
                    provenance: prov,
                    item: Err(NotContainable {
                        reason: format!(
                            "ggshield `{detector}`: the report hides the secret; rerun `ggshield secret scan` with `--show-secrets --json`"
                        ),
                        fingerprint: None,
                    }),
                });
                continue;
            }
            // The parts of one incident (an AWS key id and its secret) are one
            // credential: classify them together.
            out.hits.push(Hit {
                prov,
                column: None,
                text: Secret::new(parts.join("\n")),
                what: format!("ggshield `{detector}`"),
            });
        }
    }
    Ok(())
}
