//! Approvals: SSH signatures over a plan's bytes, stored beside the plan and
//! recorded in the audit log (one review per reviewer).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::audit::{Approver, Kind, RecordDraft};
use crate::error::{Error, Exit};
use crate::gate::Principal;
use crate::plan::{now_ms, PrincipalKind};
use crate::policy::StoredSignature;
use crate::state::{ObjectKind, Store};

use super::Workspace;

#[derive(Debug, Serialize, Deserialize)]
struct StoredFile {
    armored: String,
    #[serde(with = "crate::timefmt")]
    recorded_at: chrono::DateTime<chrono::Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    claimed_signer: Option<String>,
}

/// The signatures stored for a plan, oldest first (the requester's first).
pub fn stored_signatures(ws: &Workspace, plan_id: &str) -> Result<Vec<StoredSignature>, Error> {
    let mut out = Vec::new();
    for name in ws.home.list(ObjectKind::Approval, plan_id)? {
        let Some(bytes) = ws.home.get(ObjectKind::Approval, &name)? else {
            continue;
        };
        let f: StoredFile = serde_json::from_slice(&bytes)
            .map_err(|e| Error::failed(format!("approval file `{name}` is unreadable: {e}")))?;
        out.push(StoredSignature {
            armored: f.armored,
            recorded_at: f.recorded_at,
            claimed_signer: f.claimed_signer,
        });
    }
    Ok(out)
}

/// Check a signature over the plan bytes and store it (the approval record
/// goes to the audit log).
pub fn store_signature(
    ws: &Workspace,
    plan_id: &str,
    bytes: &[u8],
    armored: String,
    claimed: Option<&str>,
) -> Result<(String, String), Error> {
    let gate = ws.gate();
    let policy = gate.policy().map_err(|e| {
        Error::new(
            Exit::PolicyInvalid,
            format!("cannot check the signature: {}", e.summary()),
        )
        .hint("run `cordon policy check`")
    })?;
    let now = now_ms();
    let check = policy
        .verify_signature(bytes, &armored, claimed, now)
        .map_err(|e| Error::failed(format!("signature refused: {e}")))?;
    // One review per reviewer.
    for s in stored_signatures(ws, plan_id)? {
        if let Ok(prev) = policy.verify_signature(
            bytes,
            &s.armored,
            s.claimed_signer.as_deref(),
            s.recorded_at,
        ) {
            if prev.signer == check.signer {
                return Err(Error::failed(format!(
                    "`{}` has already signed plan `{plan_id}`: a second approval by the same person does not count",
                    check.signer
                ))
                .hint("ask another approver"));
            }
        }
    }
    let file = StoredFile {
        armored,
        recorded_at: now,
        claimed_signer: claimed.map(str::to_owned),
    };
    let json = serde_json::to_vec(&file).map_err(|e| Error::failed(e.to_string()))?;
    let name = format!(
        "{plan_id}/{}-{}.json",
        now.format("%Y%m%dT%H%M%S%.3fZ"),
        check.signer
    );
    ws.home.put_new(ObjectKind::Approval, &name, &json)?;
    let mut d = RecordDraft::new(
        Kind::Approval,
        Principal {
            name: check.signer.clone(),
            kind: PrincipalKind::Person,
            verified: true,
            proof: Some(format!("ssh:{}", check.fingerprint)),
        },
    );
    d.plan = Some(plan_id.to_owned());
    d.approvers = vec![Approver {
        id: check.signer.clone(),
        key_fingerprint: check.fingerprint.clone(),
        signed_at: now,
    }];
    ws.log.append(d)?;
    Ok((check.signer, check.fingerprint))
}

pub fn sign_and_store(
    ws: &Workspace,
    plan_id: &str,
    bytes: &[u8],
    key: &Path,
    claimed: Option<&str>,
) -> Result<(String, String), Error> {
    let armored = crate::policy::sign(bytes, key).map_err(|e| Error::failed(e.to_string()))?;
    store_signature(ws, plan_id, bytes, armored, claimed)
}
