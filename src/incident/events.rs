//! The events kept in the `data` of `incident` and `task` audit records.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::plan::Severity;

/// Incident roles. Who may hold one is decided by the roster: each role names
/// the roster roles that make a person eligible ([`Role::roster_roles`]).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Runs the response, sets priorities, resolves conflicts.
    Commander,
    /// Owns the technical containment and verification.
    #[value(alias = "tech-lead")]
    TechnicalLead,
    /// Advises on disclosure and notification duties.
    Legal,
    /// Owns customer, partner and public statements.
    #[value(alias = "comms")]
    Communications,
    /// The executive accountable for the incident's business decisions.
    #[value(alias = "exec")]
    ExecutiveOwner,
}

impl Role {
    pub const ALL: &'static [Role] = &[
        Role::Commander,
        Role::TechnicalLead,
        Role::Legal,
        Role::Communications,
        Role::ExecutiveOwner,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Commander => "commander",
            Role::TechnicalLead => "technical-lead",
            Role::Legal => "legal",
            Role::Communications => "communications",
            Role::ExecutiveOwner => "executive-owner",
        }
    }

    /// The roster roles (`roster.toml`, `[roles.*]`) that make a person
    /// eligible for this incident role. The mapping is fixed here, not in
    /// the roster, so that a roster edit cannot silently make, say, anyone a
    /// commander; the roster decides who holds the roster roles.
    pub fn roster_roles(self) -> &'static [&'static str] {
        match self {
            Role::Commander => &["incident-commander"],
            Role::TechnicalLead => &["security", "sre", "platform"],
            Role::Legal => &["legal"],
            Role::Communications => &["comms"],
            Role::ExecutiveOwner => &["executive"],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum IncidentEvent {
    Open { title: String, severity: Severity },
    Assign { role: Role, person: String },
    Close { summary: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum TaskEvent {
    Add {
        task: String,
        title: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
        #[serde(
            default,
            with = "crate::timefmt::option",
            skip_serializing_if = "Option::is_none"
        )]
        due: Option<DateTime<Utc>>,
    },
    Assign {
        task: String,
        owner: String,
    },
    Block {
        task: String,
        reason: String,
    },
    Unblock {
        task: String,
    },
    Done {
        task: String,
    },
}

impl TaskEvent {
    pub fn task(&self) -> &str {
        match self {
            TaskEvent::Add { task, .. }
            | TaskEvent::Assign { task, .. }
            | TaskEvent::Block { task, .. }
            | TaskEvent::Unblock { task }
            | TaskEvent::Done { task } => task,
        }
    }
}

/// A due time: RFC 3339 (`2026-11-22T18:00:00Z`) or a delay from `now`
/// (`45m`, `2h`, `1d`).
pub fn parse_due(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let bad = || {
        format!("due time `{s}` is neither RFC 3339 (`2026-11-22T18:00:00Z`) nor a delay like `45m`, `2h` or `1d`")
    };
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let d = match unit {
        "m" | "min" => Duration::try_minutes(n),
        "h" => Duration::try_hours(n),
        "d" => Duration::try_days(n),
        _ => None,
    }
    .ok_or_else(bad)?;
    now.checked_add_signed(d).ok_or_else(bad)
}
