use chrono::{DateTime, Utc};
use cordon_connector::{Outcome, Target, Verification};
use serde::{Deserialize, Serialize};

use crate::gate::{Decision, Principal, VerifiedApproval};
use crate::plan::{sha256_hex, PrincipalKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A plan was written.
    Plan,
    /// A signature over a plan was recorded.
    Approval,
    /// The authority gate decided a step.
    Decision,
    /// Evidence was snapshotted before a change.
    Evidence,
    /// A side effect is about to happen (fsynced before it does).
    Intent,
    /// What the side effect did.
    Outcome,
    /// Proof that a credential is dead (or not).
    Verify,
    /// A scanner report, webhook or alert was received: its findings, with
    /// provenance and credential references (never the secrets).
    Finding,
    /// Incident, task and role changes.
    Incident,
    Task,
    /// Anything else worth keeping (torn-tail recovery, operator notes).
    Note,
    /// The halt switch was set or released (`cordon halt`, `cordon resume`).
    Halt,
    /// A tool of the MCP server (`cordon mcp`) was called.
    ToolCall,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Plan => "plan",
            Kind::Approval => "approval",
            Kind::Decision => "decision",
            Kind::Evidence => "evidence",
            Kind::Intent => "intent",
            Kind::Outcome => "outcome",
            Kind::Verify => "verify",
            Kind::Finding => "finding",
            Kind::Incident => "incident",
            Kind::Task => "task",
            Kind::Note => "note",
            Kind::Halt => "halt",
            Kind::ToolCall => "tool-call",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approver {
    pub id: String,
    pub key_fingerprint: String,
    #[serde(with = "crate::timefmt")]
    pub signed_at: DateTime<Utc>,
}

impl From<&VerifiedApproval> for Approver {
    fn from(a: &VerifiedApproval) -> Self {
        Approver {
            id: a.signer.clone(),
            key_fingerprint: a.key_fingerprint.clone(),
            signed_at: a.signed_at,
        }
    }
}

/// One line of the audit log. Targets are already fingerprinted (a token
/// target's id is its fingerprint): no record ever holds a secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    #[serde(with = "crate::timefmt")]
    pub time: DateTime<Utc>,
    pub kind: Kind,
    pub actor: Principal,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<Approver>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    /// SHA-256 (hex) of an evidence object in the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    /// The reason, when the action rests on break-glass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Kind-specific details (incident fields, task fields, plan digest...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    /// Set on a record copied into a shared log from an emergency local log
    /// (`cordon log import`): which record of which chain it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported: Option<Imported>,
    pub prev: String,
    pub hash: String,
}

/// Where an imported record came from: the local chain (named by the hash
/// of its first record), and the record's own seq and hash there, so that
/// anyone holding the local log can match the two.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Imported {
    pub log: String,
    pub seq: u64,
    pub hash: String,
}

/// A record before it is chained: everything but seq, prev and hash.
#[derive(Debug, Clone)]
pub struct RecordDraft {
    pub time: DateTime<Utc>,
    pub kind: Kind,
    pub actor: Principal,
    pub approvers: Vec<Approver>,
    pub incident: Option<String>,
    pub plan: Option<String>,
    pub step: Option<String>,
    pub action: Option<String>,
    pub target: Option<Target>,
    pub decision: Option<Decision>,
    pub outcome: Option<Outcome>,
    pub verification: Option<Verification>,
    pub evidence: Option<String>,
    pub break_glass: Option<String>,
    pub message: Option<String>,
    pub data: Option<serde_json::Value>,
    pub imported: Option<Imported>,
}

impl RecordDraft {
    /// The draft of an existing record (everything but its place in its
    /// chain), for copying it into another log.
    pub fn from_record(r: &Record) -> RecordDraft {
        RecordDraft {
            time: r.time,
            kind: r.kind,
            actor: r.actor.clone(),
            approvers: r.approvers.clone(),
            incident: r.incident.clone(),
            plan: r.plan.clone(),
            step: r.step.clone(),
            action: r.action.clone(),
            target: r.target.clone(),
            decision: r.decision.clone(),
            outcome: r.outcome.clone(),
            verification: r.verification.clone(),
            evidence: r.evidence.clone(),
            break_glass: r.break_glass.clone(),
            message: r.message.clone(),
            data: r.data.clone(),
            imported: r.imported.clone(),
        }
    }

    pub fn new(kind: Kind, actor: Principal) -> RecordDraft {
        RecordDraft {
            time: crate::plan::now_ms(),
            kind,
            actor,
            approvers: vec![],
            incident: None,
            plan: None,
            step: None,
            action: None,
            target: None,
            decision: None,
            outcome: None,
            verification: None,
            evidence: None,
            break_glass: None,
            message: None,
            data: None,
            imported: None,
        }
    }

    /// A note from cordon itself.
    pub fn note(actor: &str, message: String) -> RecordDraft {
        let mut d = RecordDraft::new(
            Kind::Note,
            Principal {
                name: actor.to_owned(),
                kind: PrincipalKind::Automation,
                verified: false,
                proof: None,
            },
        );
        d.message = Some(message);
        d
    }

    pub fn seal(self, seq: u64, prev: &str) -> Record {
        let mut r = Record {
            seq,
            time: self.time,
            kind: self.kind,
            actor: self.actor,
            approvers: self.approvers,
            incident: self.incident,
            plan: self.plan,
            step: self.step,
            action: self.action,
            target: self.target,
            decision: self.decision,
            outcome: self.outcome,
            verification: self.verification,
            evidence: self.evidence,
            break_glass: self.break_glass,
            message: self.message,
            data: self.data,
            imported: self.imported,
            prev: prev.to_owned(),
            hash: String::new(),
        };
        r.hash = r.compute_hash().unwrap_or_default();
        r
    }
}

impl Record {
    /// SHA-256 over the canonical bytes of the record without `hash`.
    pub fn compute_hash(&self) -> Result<String, String> {
        let mut v = serde_json::to_value(self).map_err(|e| e.to_string())?;
        hash_value(&mut v)
    }

    /// The canonical line (no newline).
    pub fn canonical_line(&self) -> Result<Vec<u8>, String> {
        let v = serde_json::to_value(self).map_err(|e| e.to_string())?;
        serde_json::to_vec(&v).map_err(|e| e.to_string())
    }
}

/// Hash of a record given as a JSON value: its `hash` member is removed first.
pub(crate) fn hash_value(v: &mut serde_json::Value) -> Result<String, String> {
    let obj = v.as_object_mut().ok_or("record is not a JSON object")?;
    obj.remove("hash");
    let bytes = serde_json::to_vec(v).map_err(|e| e.to_string())?;
    Ok(sha256_hex(&bytes))
}
