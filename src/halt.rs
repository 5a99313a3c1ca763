//! The halt switch: one signed file in the state directory that stops every
//! automation principal (`ci`, `agent`, `assistant`) at once.
//!
//! `cordon halt` writes `halt.json` (the statement a person signed, and the
//! signature) and records it in the audit log; `cordon resume` records the
//! resume and removes the file. The authority gate reads the file at every
//! decision of an automation principal (`policy::bounds`): while it exists,
//! nothing an automation principal asks for is done, and a file that cannot
//! be read counts as a halt (fail closed). People still act under their own
//! names.
//!
//! The switch holds for every process sharing the state directory, and, on
//! a shared state (`--state s3://…`), for every machine: there the audit
//! log's latest `halt` record is the switch (no local file is written), and
//! the gate reads it from the log every run reads anyway ([`from_log`]).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The file's name in the state directory.
pub const HALT_FILE: &str = "halt.json";

/// What a person signs to halt or resume: canonical JSON of this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// Always `cordon-halt` (so the bytes can never be taken for a plan).
    pub statement: String,
    /// `halt` or `resume`.
    pub action: String,
    pub reason: String,
    #[serde(with = "crate::timefmt")]
    pub at: DateTime<Utc>,
}

impl Statement {
    pub fn new(action: &str, reason: &str, at: DateTime<Utc>) -> Statement {
        Statement {
            statement: "cordon-halt".into(),
            action: action.into(),
            reason: reason.into(),
            at,
        }
    }

    /// The bytes that are signed.
    pub fn bytes(&self) -> Result<Vec<u8>, String> {
        crate::plan::canonical_json(self).map_err(|e| e.to_string())
    }
}

/// The halt in force: the signed statement and who proved it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Halt {
    pub statement: Statement,
    /// The person whose signature it is (allowed_signers principal).
    pub by: String,
    /// `SHA256:...` of the key that signed it.
    pub key_fingerprint: String,
    /// The armored SSH signature over `statement.bytes()`.
    pub signature: String,
}

pub fn path(root: &Path) -> PathBuf {
    root.join(HALT_FILE)
}

/// The halt in force, if any. `Err` when the file exists but cannot be read
/// or parsed: callers treat that as halted (fail closed).
pub fn read(root: &Path) -> Result<Option<Halt>, String> {
    let p = path(root);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| format!("`{}` is not a halt record: {e}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read `{}`: {e}", p.display())),
    }
}

/// One line that says who halted, when and why.
pub fn describe(h: &Halt) -> String {
    format!(
        "halted by `{}` at {}: {}",
        h.by,
        h.statement.at.format("%Y-%m-%dT%H:%M:%SZ"),
        h.statement.reason
    )
}

/// The halt the audit log says is in force: its latest `halt` record, when
/// that record halts (a `resume` record releases it). The record holds the
/// signed statement, the key's fingerprint and the signature, as the file.
pub fn from_log(records: &[crate::audit::Record]) -> Option<Halt> {
    let last = records
        .iter()
        .rev()
        .find(|r| r.kind == crate::audit::Kind::Halt)?;
    match HaltPayload::deserialize(last.data.as_ref()?).ok()? {
        HaltPayload::Halt {
            statement,
            key_fingerprint,
            signature,
        } => Some(Halt {
            statement,
            by: last.actor.name.clone(),
            key_fingerprint,
            signature,
        }),
        HaltPayload::Resume { .. } => None,
    }
}

/// The `data` of a `halt` record (`cordon halt` and `cordon resume`),
/// written and read back through this type, not by key name. The JSON is the
/// on-disk format of the records written before it (see the tests).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum HaltPayload {
    Halt {
        statement: Statement,
        #[serde(default)]
        key_fingerprint: String,
        #[serde(default)]
        signature: String,
    },
    Resume {
        statement: Statement,
        #[serde(default)]
        key_fingerprint: String,
        #[serde(default)]
        signature: String,
        /// The halt it released, if one was in force.
        #[serde(default)]
        released: Option<Released>,
    },
}

/// Who set the halt a resume released, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Released {
    pub by: String,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::TimeZone as _;

    /// The payload writes what the `json!` literals it replaced wrote (the
    /// on-disk format of existing `halt` records), and reads those back.
    #[test]
    fn halt_records_keep_their_on_disk_format() {
        let at = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap();
        let statement = Statement::new("halt", "runaway agent", at);
        let halt = serde_json::json!({
            "action": "halt",
            "statement": statement,
            "key_fingerprint": "SHA256:k",
            "signature": "-----BEGIN SSH SIGNATURE-----",
        });
        let typed = HaltPayload::Halt {
            statement: statement.clone(),
            key_fingerprint: "SHA256:k".into(),
            signature: "-----BEGIN SSH SIGNATURE-----".into(),
        };
        assert_eq!(serde_json::to_value(&typed).unwrap(), halt);
        assert_eq!(HaltPayload::deserialize(&halt).unwrap(), typed);

        let resume = Statement::new("resume", "fixed", at);
        for released in [
            serde_json::Value::Null,
            serde_json::json!({"by": "amara", "reason": "runaway agent"}),
        ] {
            let literal = serde_json::json!({
                "action": "resume",
                "statement": resume,
                "key_fingerprint": "SHA256:k",
                "signature": "sig",
                "released": released,
            });
            let typed = HaltPayload::Resume {
                statement: resume.clone(),
                key_fingerprint: "SHA256:k".into(),
                signature: "sig".into(),
                released: serde_json::from_value(released).unwrap(),
            };
            assert_eq!(serde_json::to_value(&typed).unwrap(), literal);
            assert_eq!(HaltPayload::deserialize(&literal).unwrap(), typed);
        }
        // A halt record without a signature still halts (fail closed).
        let bare = serde_json::json!({"action": "halt", "statement": statement});
        assert!(matches!(
            HaltPayload::deserialize(&bare).unwrap(),
            HaltPayload::Halt { .. }
        ));
    }
}
