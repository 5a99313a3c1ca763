//! secretlint `--format json` (checked against secretlint 11.7.1 with
//! `@secretlint/secretlint-rule-preset-recommend`): an array of files, each
//! with an absolute `filePath`, the whole `sourceContent` and `messages[]`
//! with `ruleId`, `messageId` and `loc.start.line` (1-based). Facts checked
//! against the real tool:
//! * its `--maskSecrets` hides secrets in `message` but still embeds the
//!   whole file in `sourceContent`: every secretlint report is secret;
//! * for an AWS secret access key, `loc` and `range` point at the start of
//!   the line (the variable name), not at the secret: so each message is
//!   resolved by classifying the file and taking what lies on the reported
//!   line (an AWS key id is paired with its secret from the nearby lines).

use std::collections::BTreeSet;

use super::json::{self, Walk};
use super::readback::Root;
use super::{Credential, Finding, NotContainable, ParseOptions, Provenance, Report, ReportError};
use crate::intake::classify::{classify, Found};

const FORMAT: &str = "secretlint";

pub fn parse(text: &str, opts: &ParseOptions) -> Result<Report, ReportError> {
    let v = json::parse(FORMAT, text)?;
    let mut base: Option<Root> = None;
    let w = Walk::new(FORMAT);
    let root = w.root(&v);
    let mut report = Report::default();
    for file in root.items()? {
        let f = file.node();
        let path = f.req_str("filePath")?;
        let messages = f.req("messages")?.node().items()?;
        if messages.is_empty() {
            continue;
        }
        let mut wanted: Vec<(u64, Provenance, String)> = Vec::new();
        for m in &messages {
            let m = m.node();
            let rule = m.req_str("ruleId")?;
            let line = m.req("loc")?.node().req("start")?.node().req_u64("line")?;
            let what = match m.opt_str("messageId")? {
                Some(id) => format!("secretlint `{rule}` ({id})"),
                None => format!("secretlint `{rule}`"),
            };
            wanted.push((
                line,
                Provenance {
                    scanner: FORMAT.into(),
                    rule: Some(rule.to_owned()),
                    file: Some(path.to_owned()),
                    line: Some(line),
                    ..Provenance::default()
                },
                what,
            ));
        }
        // The file as scanned; re-read it only when the report left it out.
        let from_file = f.opt_str("sourceContent")?.is_none();
        let content = match f.opt_str("sourceContent")? {
            Some(c) => zeroize::Zeroizing::new(c.to_owned()),
            // Read back under the scan root only (the path is the report's word).
            None => match base
                .get_or_insert_with(|| Root::new(opts.root.as_deref()))
                .read(path)
            {
                Ok(c) => c,
                Err(e) => {
                    for (_, provenance, what) in wanted {
                        report.findings.push(Finding {
                            provenance,
                            item: Err(NotContainable {
                                reason: format!("{what}: the report holds no `sourceContent` and it cannot be read back: {e}"),
                                fingerprint: None,
                            }),
                        });
                    }
                    continue;
                }
            },
        };
        let mut found: Vec<Option<Found>> = classify(&content).into_iter().map(Some).collect();
        // Lines each classifier finding covers (an AWS pair may span two).
        let spans: Vec<Vec<u64>> = found
            .iter()
            .map(|f| match f {
                Some(Found::AwsKey {
                    line,
                    secret_line: Some(s),
                    ..
                }) => vec![*line as u64, *s as u64],
                Some(f) => vec![f.line() as u64],
                None => Vec::new(),
            })
            .collect();
        let mut done: BTreeSet<usize> = BTreeSet::new();
        for (line, provenance, what) in wanted {
            let on_line: Vec<usize> = (0..spans.len())
                .filter(|&i| spans[i].contains(&line))
                .collect();
            if on_line.is_empty() {
                report.findings.push(Finding {
                    provenance,
                    item: Err(NotContainable {
                        reason: format!("{what}: no connector handles the secret at line {line}"),
                        fingerprint: None,
                    }),
                });
                continue;
            }
            for i in on_line {
                if !done.insert(i) {
                    continue;
                }
                let Some(f) = found.get_mut(i).and_then(Option::take) else {
                    continue;
                };
                if let Some(item) = Credential::from_found(f) {
                    let mut provenance = provenance.clone();
                    if from_file {
                        provenance.read_back = Some(super::readback::ReadBack::Line);
                    }
                    report.findings.push(Finding { provenance, item });
                }
            }
        }
    }
    Ok(report)
}
