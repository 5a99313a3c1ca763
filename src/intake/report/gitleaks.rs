//! gitleaks JSON (`gitleaks detect --report-format json`, `gitleaks git|dir
//! -f json`): an array of findings with `RuleID`, `File`, `StartLine`,
//! `StartColumn`, `Commit` and the matched `Secret`. Field names follow
//! gitleaks' `report.Finding` (report/finding.go) and its JSON writer.
//!
//! gitleaks reports an AWS key id (`aws-access-token`) and its secret (caught
//! by another rule) as two unlinked findings; they are paired by file and
//! nearness (see `hits::pair_aws`). A report written with `--redact` holds
//! no secrets: its findings are not containable, with that hint.

use cordon_connector::Secret;

use super::hits::{self, Hit};
use super::json;
use super::{Provenance, Report, ReportError};

const FORMAT: &str = "gitleaks";

pub fn parse(text: &str) -> Result<Report, ReportError> {
    let mut found = Vec::new();
    let mut redacted = Vec::new();
    // One record at a time: the report is never held as one JSON tree.
    json::each_item(FORMAT, text, |n| {
        let rule = n.req_str("RuleID")?;
        let secret = n.req_str("Secret")?;
        let file = n.opt_nonempty("File")?;
        let line = n.opt_u64("StartLine")?;
        let column = n.opt_u64("StartColumn")?;
        // Directory scans have no commit: gitleaks writes "".
        let commit = n.opt_nonempty("Commit")?;
        let link = n.opt_nonempty("Link")?;
        let prov = Provenance {
            scanner: FORMAT.into(),
            rule: Some(rule.to_owned()),
            file,
            line,
            commit,
            url: link,
            read_back: None,
        };
        if hits::gitleaks_redacted(secret) {
            redacted.push(hits::gitleaks_redacted_finding(prov));
            return Ok(());
        }
        found.push(Hit {
            prov,
            column,
            text: Secret::new(secret),
            what: format!("gitleaks rule `{rule}`"),
        });
        Ok(())
    })?;
    let mut findings = hits::findings(found);
    findings.extend(redacted);
    Ok(Report {
        findings,
        alerts: Vec::new(),
    })
}
