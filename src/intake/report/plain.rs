//! Plain text: one secret a line (anything the classifier recognises).

use super::{Credential, Finding, Provenance, Report, ReportError};
use crate::intake::classify::classify;

pub fn parse(bytes: &[u8]) -> Result<Report, ReportError> {
    let text = std::str::from_utf8(bytes).map_err(|e| ReportError::Malformed {
        format: "plain",
        at: format!("byte {}", e.valid_up_to()),
        reason: "not UTF-8 text".into(),
    })?;
    let mut report = Report::default();
    for f in classify(text) {
        let line = f.line() as u64;
        if let Some(item) = Credential::from_found(f) {
            report.findings.push(Finding {
                provenance: Provenance {
                    scanner: "plain".into(),
                    line: Some(line),
                    ..Provenance::default()
                },
                item,
            });
        }
    }
    Ok(report)
}
