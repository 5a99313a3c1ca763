//! Scanner reports → findings. Each finding keeps its provenance (scanner,
//! rule, file, line, commit) as evidence and the credential only as a
//! [`Secret`]. A report that cannot be read is an error and yields nothing:
//! no side effect may come from half a report.
//!
//! Formats: gitleaks JSON, SARIF, trufflehog JSON lines, ggshield
//! `secret scan --json`, detect-secrets JSON, secretlint JSON, GitHub secret
//! scanning alerts (REST alert objects carry the secret; webhook deliveries do
//! not, and become [`AlertRef`]s to fetch), and plain text.

use cordon_connector::Secret;
use serde::Serialize;

use super::classify::{classify, Found, GithubKind};

mod detect_secrets;
mod ggshield;
mod github_alert;
mod gitleaks;
mod hits;
mod json;
mod plain;
pub mod readback;
mod sarif;
mod secretlint;
mod trufflehog;

/// A report format. `Auto` looks at the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Auto,
    Gitleaks,
    Sarif,
    Trufflehog,
    Ggshield,
    DetectSecrets,
    Secretlint,
    GithubAlert,
    Plain,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Gitleaks => "gitleaks",
            Format::Sarif => "sarif",
            Format::Trufflehog => "trufflehog",
            Format::Ggshield => "ggshield",
            Format::DetectSecrets => "detect-secrets",
            Format::Secretlint => "secretlint",
            Format::GithubAlert => "github-alert",
            Format::Plain => "plain",
        }
    }
}

/// Where a finding came from. Safe to print and to record: never the secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Provenance {
    pub scanner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// A link to the finding (GitHub alert `html_url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Set when the report located the secret without carrying it, and
    /// cordon read it back from the scanned file under `--root`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_back: Option<readback::ReadBack>,
}

/// A credential cordon knows how to contain.
#[derive(Debug)]
pub enum Credential {
    Github {
        kind: GithubKind,
        secret: Secret,
    },
    AwsKey {
        key_id: String,
        /// `ASIA`: session credentials.
        session: bool,
        /// The secret access key, when the report held it (used to prove the
        /// key dead with a signed call).
        secret: Option<Secret>,
    },
    /// A private key block: a repository's deploy key (found by its public
    /// half's fingerprint), or a GitHub App's key (an RSA key in PEM).
    PrivateKey {
        secret: Secret,
        info: crate::intake::private_key::PrivateKeyInfo,
    },
}

/// Why a finding cannot be contained. Never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotContainable {
    pub reason: String,
    /// Fingerprint of the text, so a user can match it up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

#[derive(Debug)]
pub struct Finding {
    pub provenance: Provenance,
    pub item: Result<Credential, NotContainable>,
}

/// A GitHub secret scanning alert to fetch (webhook deliveries carry no secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AlertRef {
    pub owner: String,
    pub repo: String,
    pub number: u64,
}

#[derive(Debug, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub alerts: Vec<AlertRef>,
}

/// What went wrong reading a report. Names the format and where; never the secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReportError {
    #[error("cannot tell the report's format: {0}")]
    UnknownFormat(String),
    #[error("{format} report is malformed at {at}: {reason}")]
    Malformed {
        format: &'static str,
        at: String,
        reason: String,
    },
    #[error("report is {size} bytes, more than the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
}

/// Options for parsers that need more than the bytes (detect-secrets stores
/// only a hash, a SARIF result may have no snippet: the file is read back at
/// the reported line, under `root` only; see [`readback`]).
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    /// Directory the report's relative paths are relative to.
    pub root: Option<std::path::PathBuf>,
}

/// The largest report read (a finding list, not a repository dump).
pub const MAX_REPORT_BYTES: usize = 64 * 1024 * 1024;

/// Parse `bytes` as `format` (`Auto` detects).
pub fn parse(bytes: &[u8], format: Format, opts: &ParseOptions) -> Result<Report, ReportError> {
    if bytes.len() > MAX_REPORT_BYTES {
        return Err(ReportError::TooLarge {
            size: bytes.len(),
            limit: MAX_REPORT_BYTES,
        });
    }
    let format = match format {
        Format::Auto => detect(bytes)?,
        f => f,
    };
    if format == Format::Plain {
        return plain::parse(bytes);
    }
    let name = format.name();
    let text = std::str::from_utf8(bytes).map_err(|e| ReportError::Malformed {
        format: name,
        at: format!("byte {}", e.valid_up_to()),
        reason: "not UTF-8 text".into(),
    })?;
    match format {
        Format::Gitleaks => gitleaks::parse(text),
        Format::Sarif => sarif::parse(text, opts),
        Format::Trufflehog => trufflehog::parse(text),
        Format::Ggshield => ggshield::parse(text),
        Format::DetectSecrets => detect_secrets::parse(text, opts),
        Format::Secretlint => secretlint::parse(text, opts),
        Format::GithubAlert => github_alert::parse(text),
        Format::Plain => plain::parse(bytes),
        Format::Auto => Err(ReportError::UnknownFormat(
            "cannot tell the report's format; pass --format".into(),
        )),
    }
}

/// Guess the format from the bytes: JSON is told apart by the keys each
/// scanner writes; anything that is not JSON is plain text. JSON that does
/// not parse (a truncated report) is told apart by the keys it contains, so
/// that the format's parser reports where it breaks.
pub fn detect(bytes: &[u8]) -> Result<Format, ReportError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        ReportError::UnknownFormat(format!("not UTF-8 text (at byte {})", e.valid_up_to()))
    })?;
    let t = text.trim_start();
    if !(t.starts_with('{') || t.starts_with('[')) {
        return Ok(Format::Plain);
    }
    match skeleton(t) {
        Ok(v) => detect_value(&v).ok_or_else(|| {
            ReportError::UnknownFormat(format!(
                "JSON of a shape cordon does not know ({}); pass --format with one of: gitleaks, sarif, trufflehog, ggshield, detect-secrets, secretlint, github-alert",
                shape(&v)
            ))
        }),
        Err(_) => {
            // JSON lines: the first record decides.
            if let Some(first) = t.lines().next() {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(first) {
                    if let Some(f) = detect_value(&v) {
                        return Ok(f);
                    }
                }
            }
            detect_by_keys(t).ok_or_else(|| {
                ReportError::UnknownFormat(
                    "the report looks like JSON but does not parse, and holds none of the keys of a known scanner; pass --format to see where it breaks".into(),
                )
            })
        }
    }
}

/// What of a JSON document tells the formats apart, read without building
/// its tree (a 100,000-finding report is one large array; issue 21): an
/// array keeps its first element only, an object its keys (values null)
/// except `alert`, kept whole. The whole text is still checked as JSON, so a
/// document that does not parse is an error here as with a full parse.
fn skeleton(t: &str) -> Result<serde_json::Value, serde_json::Error> {
    use serde::de::{Deserializer as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use serde_json::Value;
    struct Skeleton;
    impl<'de> Visitor<'de> for Skeleton {
        type Value = Value;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON array or object")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let first = seq.next_element::<Value>()?;
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(Value::Array(first.into_iter().collect()))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut keys = serde_json::Map::new();
            while let Some(k) = map.next_key::<String>()? {
                let v = if k == "alert" {
                    map.next_value::<Value>()?
                } else {
                    map.next_value::<IgnoredAny>()?;
                    Value::Null
                };
                keys.insert(k, v);
            }
            Ok(Value::Object(keys))
        }
    }
    let mut de = serde_json::Deserializer::from_str(t);
    let v = de.deserialize_any(Skeleton)?;
    de.end()?;
    Ok(v)
}

/// A short description of a JSON value's shape (keys only, never values).
fn shape(v: &serde_json::Value) -> String {
    let keys = |o: &serde_json::Map<String, serde_json::Value>| {
        let mut k: Vec<String> = o.keys().take(6).map(|k| format!("`{k}`")).collect();
        if o.len() > 6 {
            k.push("…".into());
        }
        k.join(", ")
    };
    match v {
        serde_json::Value::Object(o) => format!("an object with keys {}", keys(o)),
        serde_json::Value::Array(a) => match a.first() {
            Some(serde_json::Value::Object(o)) => {
                format!("an array of objects with keys {}", keys(o))
            }
            Some(other) => format!("an array of {}", json::kind(other)),
            None => "an empty array".into(),
        },
        other => json::kind(other).into(),
    }
}

fn detect_value(v: &serde_json::Value) -> Option<Format> {
    use serde_json::Value;
    let has = |o: &serde_json::Map<String, Value>, k: &str| o.contains_key(k);
    match v {
        // `[]` is what gitleaks writes when it finds nothing.
        Value::Array(a) if a.is_empty() => Some(Format::Gitleaks),
        Value::Array(a) => match a.first() {
            Some(Value::Object(o)) if has(o, "RuleID") => Some(Format::Gitleaks),
            Some(Value::Object(o)) if has(o, "filePath") && has(o, "messages") => {
                Some(Format::Secretlint)
            }
            Some(Value::Object(o)) if has(o, "secret_type") && has(o, "number") => {
                Some(Format::GithubAlert)
            }
            _ => None,
        },
        Value::Object(o) => {
            if has(o, "runs") && (has(o, "$schema") || has(o, "version")) {
                Some(Format::Sarif)
            } else if has(o, "DetectorName") || has(o, "SourceMetadata") {
                Some(Format::Trufflehog)
            } else if has(o, "entities_with_incidents")
                || (has(o, "total_incidents") && has(o, "type"))
            {
                Some(Format::Ggshield)
            } else if has(o, "results") && (has(o, "plugins_used") || has(o, "filters_used")) {
                Some(Format::DetectSecrets)
            } else if (has(o, "secret_type") && has(o, "number"))
                || o.get("alert")
                    .and_then(Value::as_object)
                    .is_some_and(|a| has(a, "secret_type"))
            {
                Some(Format::GithubAlert)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// For JSON that does not parse: the keys each format writes early on.
fn detect_by_keys(t: &str) -> Option<Format> {
    let head = match t.char_indices().nth(64 * 1024) {
        Some((i, _)) => &t[..i],
        None => t,
    };
    let k = |key: &str| head.contains(&format!("\"{key}\""));
    if k("DetectorName") || k("SourceMetadata") {
        Some(Format::Trufflehog)
    } else if k("runs") && (k("$schema") || k("version")) && head.contains("sarif") {
        Some(Format::Sarif)
    } else if k("RuleID") {
        Some(Format::Gitleaks)
    } else if k("entities_with_incidents") || k("total_incidents") {
        Some(Format::Ggshield)
    } else if k("hashed_secret") || k("plugins_used") {
        Some(Format::DetectSecrets)
    } else if k("filePath") && k("messages") {
        Some(Format::Secretlint)
    } else if k("secret_type") {
        Some(Format::GithubAlert)
    } else {
        None
    }
}

impl Credential {
    /// The credential in a classifier finding, or why there is none.
    pub fn from_found(f: Found) -> Option<Result<Credential, NotContainable>> {
        match f {
            Found::GithubToken { kind, secret, .. } => Some(Ok(Credential::Github { kind, secret })),
            Found::AwsKey {
                key_id,
                session,
                secret,
                ..
            } => Some(Ok(Credential::AwsKey {
                key_id,
                session,
                secret,
            })),
            Found::Invalid {
                what,
                reason,
                fingerprint,
                ..
            } => Some(Err(NotContainable {
                reason: format!("not a valid {what}: {reason}"),
                fingerprint: Some(fingerprint),
            })),
            Found::AwsSecretUnpaired { secret, .. } => Some(Err(NotContainable {
                reason: "an AWS secret access key without its key id: cordon cannot tell which key to disable".into(),
                fingerprint: Some(secret.fingerprint()),
            })),
            Found::PrivateKey { secret, info, .. } => {
                Some(Ok(Credential::PrivateKey { secret, info }))
            }
            Found::Unrecognised { .. } => None,
        }
    }
}

/// Classify a piece of text a scanner reported and turn every credential in
/// it into a finding with `prov`; nothing recognised is one not-containable
/// finding (the scanner saw a secret of a type no connector handles).
pub fn findings_from_text(text: &str, prov: &Provenance, what: &str) -> Vec<Finding> {
    let mut out: Vec<Finding> = classify(text)
        .into_iter()
        .filter_map(Credential::from_found)
        .map(|item| Finding {
            provenance: prov.clone(),
            item,
        })
        .collect();
    if out.is_empty() {
        out.push(Finding {
            provenance: prov.clone(),
            item: Err(NotContainable {
                reason: format!("{what}: no connector handles this kind of secret"),
                fingerprint: (!text.is_empty()).then(|| Secret::new(text).fingerprint()),
            }),
        });
    }
    out
}

#[cfg(test)]
mod tests;
