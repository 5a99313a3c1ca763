//! trufflehog v3 `--json`: one JSON object a line, with `DetectorName`,
//! `Raw` (the secret), `RawV2` (for detectors whose credential has two
//! parts), and `SourceMetadata.Data.<Source>` holding `file`, `line`,
//! `commit`, `link` (pkg/output/json.go and the `source_metadata` protobuf
//! messages `Git`, `Github`, `Gitlab`, `Filesystem`, ...).
//!
//! For AWS, `Raw` is the key id and `RawV2` the pair: `keyid:secret` in
//! current versions, the plain concatenation `keyidsecret` in older ones;
//! both are accepted. Log lines (`{"level":…,"msg":…}`, when stderr was
//! captured too) are skipped.

use cordon_connector::Secret;
use serde_json::Value;

use super::hits::{self, Hit};
use super::json::{self, Walk};
use super::{Provenance, Report, ReportError};

const FORMAT: &str = "trufflehog";

pub fn parse(text: &str) -> Result<Report, ReportError> {
    let w = Walk::new(FORMAT);
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value =
            serde_json::from_str(line).map_err(|e| json::syntax_error(FORMAT, &e, Some(lineno)))?;
        let in_line = |e: ReportError| match e {
            ReportError::Malformed { format, at, reason } => ReportError::Malformed {
                format,
                at: format!("line {lineno}, {at}"),
                reason,
            },
            other => other,
        };
        if is_log_line(&v) {
            continue;
        }
        found.push(record(&w, &v).map_err(in_line)?);
    }
    Ok(Report {
        findings: hits::findings(found),
        alerts: Vec::new(),
    })
}

fn is_log_line(v: &Value) -> bool {
    v.get("DetectorName").is_none()
        && v.get("SourceMetadata").is_none()
        && v.get("level").is_some()
        && v.get("msg").is_some()
}

fn record(w: &Walk, v: &Value) -> Result<Hit, ReportError> {
    let n = w.root(v);
    let detector = n.req_str("DetectorName")?;
    let raw = n.req_str("Raw")?;
    let raw_v2 = n.opt_nonempty("RawV2")?;
    let mut prov = Provenance {
        scanner: FORMAT.into(),
        rule: Some(detector.to_owned()),
        ..Provenance::default()
    };
    if let Some(meta) = n.get("SourceMetadata")? {
        if let Some(data) = meta.node().get("Data")? {
            // One key naming the source (`Git`, `Github`, `Filesystem`, ...).
            for (_, src) in data.node().entries()? {
                let s = src.node();
                if !s.v.is_object() {
                    continue;
                }
                prov.file = s.opt_nonempty("file")?;
                prov.line = s.opt_u64("line")?;
                prov.commit = s.opt_nonempty("commit")?;
                prov.url = s.opt_nonempty("link")?;
            }
        }
    }
    let text = match raw_v2 {
        Some(v2) => aws_pair(&v2).unwrap_or(v2),
        None => raw.to_owned(),
    };
    Ok(Hit {
        prov,
        column: None,
        text: Secret::new(text),
        what: format!("trufflehog detector `{detector}`"),
    })
}

/// Old trufflehog versions concatenate an AWS key id and its secret with no
/// separator; put one in so the classifier sees two words.
fn aws_pair(v2: &str) -> Option<String> {
    let is_id = v2.len() == 60
        && (v2.starts_with("AKIA") || v2.starts_with("ASIA"))
        && v2.is_char_boundary(20);
    is_id.then(|| format!("{}:{}", &v2[..20], &v2[20..]))
}
