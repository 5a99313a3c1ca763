//! Incidents: one record of roles, tasks, blockers and containment, kept
//! nowhere but in the audit log.
//!
//! Every change (open, assign a role, add or block a task, close) is an
//! `incident` or `task` audit record whose `data` is one of the events below.
//! The current state of an incident — who holds which role, which tasks are
//! open or blocked, which credentials are contained and verified, who still
//! has to approve what — is never stored: [`replay`] rebuilds it from the log
//! (and from the immutable plan files the log names), so the shared picture
//! and the post-incident report cannot drift from the hash-chained record.
//!
//! Containment steps are tasks too, but derived ones: a step of a plan
//! attached to the incident appears as the task `PLAN:STEP` with the status
//! its `decision`, `outcome` and `verify` records give it. A `task` event may
//! give such a task an owner or a blocker; it can never mark it done (only the
//! engine's records can).
//!
//! This module does no I/O besides what its callers hand it and never
//! prints; `cli/incident.rs`, `task.rs`, `status.rs` and `report.rs` do.

mod events;
mod render;
mod replay;

pub use events::{parse_due, IncidentEvent, Role, TaskEvent};
pub use render::{render_html, render_markdown, render_status};
pub use replay::{
    build_report, name_role_holders, normalise_id, replay, status_of, BreakGlassUse, Credential,
    EvidenceRef, Incident, IncidentState, Item, Ledger, Milestone, Objects, Payload, PlanRef,
    Report, RoleSlot, Status, Task, TaskSource, TaskStatus, TimelineEntry,
};

/// Incident ids are `INC-1`, `INC-2`, ... in the order they were opened.
pub const ID_PREFIX: &str = "INC-";

#[cfg(test)]
mod tests;
