//! The shape of an AWS access key id, shared by the AWS connector and by code
//! that only parses (webhook payloads, scanner reports) and must not pull in
//! the AWS SDK.

use serde::{Deserialize, Serialize};

use crate::ConnectorError;

/// Long-term user key (`AKIA`) or temporary session credential (`ASIA`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyKind {
    LongTerm,
    Session,
}

/// Checks the shape of an access key id; returns its kind.
pub fn key_kind(key_id: &str) -> Result<KeyKind, ConnectorError> {
    let well_formed = (16..=128).contains(&key_id.len())
        && key_id
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    match key_id.get(..4) {
        Some("AKIA") if well_formed => Ok(KeyKind::LongTerm),
        Some("ASIA") if well_formed => Ok(KeyKind::Session),
        _ => Err(ConnectorError::permanent(format!(
            "`{key_id}` is not an AWS access key id: expected `AKIA...` (user key) or \
             `ASIA...` (session credential), 20 upper-case letters and digits"
        ))),
    }
}
