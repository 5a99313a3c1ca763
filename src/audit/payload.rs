//! The typed `data` of audit records: what a record of each kind carries
//! beyond the common fields, written and read back through these types (not
//! by key name). The JSON they produce is the on-disk format that records
//! written before them have (checked by the tests below against literal
//! records).

use serde::{Deserialize, Serialize};

use crate::intake::report::Provenance;
use crate::plan::{Severity, Source};

/// A `finding` record: a scanner report, webhook or alert was received.
/// Read leniently (a missing field takes its default): replay must still
/// read the findings of a record that carries only some of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FindingPayload {
    /// The format's name: `gitleaks`, ..., `github-webhook`, `eventbridge`.
    pub format: String,
    /// Where it came from: a path, `stdin`, `webhook <delivery>`.
    pub origin: String,
    /// SHA-256 of the report's bytes.
    pub sha256: String,
    pub bytes: usize,
    pub findings: Vec<FindingEntry>,
}

/// One finding of a report, never its secret.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FindingEntry {
    /// 1-based, in report order.
    pub finding: usize,
    pub provenance: Provenance,
    /// The credential's fingerprint or key id, as in plan targets.
    pub credential: Option<String>,
    pub containable: bool,
    /// Why it is not containable, for a finding that names no credential.
    pub reason: Option<String>,
}

/// A `plan` record: a plan was written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanPayload {
    /// SHA-256 of the plan's canonical bytes.
    pub sha256: String,
    pub steps: usize,
    pub severity: Severity,
    pub source: Source,
}

/// An `outcome` record: how many calls of the action it took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomePayload {
    pub attempts: u32,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The payloads write exactly what the `json!` literals they replace
    /// wrote (kept here as the on-disk format), and read those back.
    #[test]
    fn payloads_keep_the_on_disk_format_of_the_records_before_them() {
        let prov = Provenance {
            scanner: "gitleaks".into(),
            rule: Some("aws-access-token".into()),
            file: Some("app/.env".into()),
            line: Some(3),
            ..Provenance::default()
        };
        let literal = serde_json::json!({
            "format": "gitleaks",
            "origin": "stdin",
            "sha256": "ab12",
            "bytes": 120,
            "findings": [
                {"finding": 1, "provenance": prov, "credential": "AKIAEXAMPLE",
                 "containable": true, "reason": null},
                {"finding": 2, "provenance": {"scanner": "gitleaks"}, "credential": null,
                 "containable": false, "reason": "not a credential cordon can act on"},
            ],
        });
        let typed = FindingPayload {
            format: "gitleaks".into(),
            origin: "stdin".into(),
            sha256: "ab12".into(),
            bytes: 120,
            findings: vec![
                FindingEntry {
                    finding: 1,
                    provenance: prov,
                    credential: Some("AKIAEXAMPLE".into()),
                    containable: true,
                    reason: None,
                },
                FindingEntry {
                    finding: 2,
                    provenance: Provenance {
                        scanner: "gitleaks".into(),
                        ..Provenance::default()
                    },
                    credential: None,
                    containable: false,
                    reason: Some("not a credential cordon can act on".into()),
                },
            ],
        };
        assert_eq!(serde_json::to_value(&typed).unwrap(), literal);
        assert_eq!(
            serde_json::from_value::<FindingPayload>(literal).unwrap(),
            typed
        );

        let plan = serde_json::json!({
            "sha256": "cd34", "steps": 2, "severity": "high", "source": "ci",
        });
        let typed = PlanPayload {
            sha256: "cd34".into(),
            steps: 2,
            severity: Severity::High,
            source: Source::Ci,
        };
        assert_eq!(serde_json::to_value(&typed).unwrap(), plan);
        assert_eq!(serde_json::from_value::<PlanPayload>(plan).unwrap(), typed);

        let outcome = serde_json::json!({ "attempts": 3 });
        assert_eq!(
            serde_json::to_value(OutcomePayload { attempts: 3 }).unwrap(),
            outcome
        );
    }
}
