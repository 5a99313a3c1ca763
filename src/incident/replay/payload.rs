//! A record's `data`, read once as the type its kind carries (serde), never
//! by key name. The JSON is the on-disk format: records written before these
//! types read back the same (tests/fixtures/incident-log-v1).

use crate::audit::payload::{FindingPayload, PlanPayload};
use crate::audit::{Kind, Record};
use crate::incident::events::{IncidentEvent, TaskEvent};

/// What a record's `data` holds, by the record's kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// An `incident` record: open, assign a role, close.
    Incident(IncidentEvent),
    /// A `task` record.
    Task(TaskEvent),
    /// A `plan` record: its digest, read leniently (the plan file is the
    /// authority; a record without the digest still names the plan).
    Plan(Option<PlanPayload>),
    /// A `finding` record.
    Finding(FindingPayload),
    /// `data` that is not its kind's type: which (`incident event`, ...)
    /// and serde's complaint.
    Unreadable { what: &'static str, error: String },
    /// No `data`, or a kind whose details are typed fields of the record
    /// itself (decision, outcome, verification, evidence).
    None,
}

impl Payload {
    pub fn read(r: &Record) -> Payload {
        let Some(data) = r.data.as_ref() else {
            return match r.kind {
                Kind::Plan => Payload::Plan(None),
                _ => Payload::None,
            };
        };
        fn typed<T: serde::de::DeserializeOwned>(
            data: &serde_json::Value,
            what: &'static str,
            wrap: impl FnOnce(T) -> Payload,
        ) -> Payload {
            match T::deserialize(data) {
                Ok(v) => wrap(v),
                Err(e) => Payload::Unreadable {
                    what,
                    error: e.to_string(),
                },
            }
        }
        match r.kind {
            Kind::Incident => typed(data, "incident event", Payload::Incident),
            Kind::Task => typed(data, "task event", Payload::Task),
            Kind::Finding => typed(data, "finding record", Payload::Finding),
            Kind::Plan => Payload::Plan(PlanPayload::deserialize(data).ok()),
            _ => Payload::None,
        }
    }
}

use serde::Deserialize as _;
