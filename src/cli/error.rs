//! One error type for every command: a kind that maps to the exit code, the
//! message, and hints that say what to run next.

use std::fmt;

/// Exit codes (the README's table is generated from the same list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    Failed = 1,
    Usage = 2,
    Denied = 3,
    Partial = 4,
    AwaitingApproval = 5,
    NothingContainable = 6,
    Tampered = 7,
    TornTail = 8,
    PolicyInvalid = 9,
    Stopped = 10,
}

impl Exit {
    pub const TABLE: &'static [(Exit, &'static str)] = &[
        (
            Exit::Ok,
            "success: everything asked for was done (and verified)",
        ),
        (Exit::Failed, "failed: an error, or a step that failed"),
        (Exit::Usage, "usage: bad flags or arguments"),
        (
            Exit::Denied,
            "denied by the authority policy: nothing was done",
        ),
        (
            Exit::Partial,
            "partially contained: some steps done, others failed, denied or unverified",
        ),
        (
            Exit::AwaitingApproval,
            "awaiting approval: the policy needs approvals (`cordon approve`)",
        ),
        (
            Exit::NothingContainable,
            "nothing containable: the input held no credential cordon can act on",
        ),
        (
            Exit::Tampered,
            "audit log tampered: the chain breaks at the named seq",
        ),
        (
            Exit::TornTail,
            "audit log torn tail: a crash cut the last record short; all earlier records intact",
        ),
        (
            Exit::PolicyInvalid,
            "policy invalid: the policy failed to load or lint",
        ),
        (
            Exit::Stopped,
            "stopped: a limit of the automation principal or the halt switch held steps back; what was allowed is done, the rest waits for a person (`cordon pending`)",
        ),
    ];

    pub fn code(self) -> i32 {
        self as i32
    }
}

#[derive(Debug)]
pub struct CommandError {
    pub exit: Exit,
    pub message: String,
    pub hints: Vec<String>,
}

impl CommandError {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        CommandError {
            exit,
            message: message.into(),
            hints: vec![],
        }
    }

    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(Exit::Failed, message)
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Exit::Usage, message)
    }

    pub fn hint(mut self, h: impl Into<String>) -> Self {
        self.hints.push(h.into());
        self
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)
    }
}

impl From<crate::state::StateError> for CommandError {
    fn from(e: crate::state::StateError) -> Self {
        CommandError::failed(e.to_string())
    }
}

impl From<crate::audit::AuditError> for CommandError {
    fn from(e: crate::audit::AuditError) -> Self {
        CommandError::failed(e.to_string())
    }
}

impl From<crate::engine::EngineError> for CommandError {
    fn from(e: crate::engine::EngineError) -> Self {
        CommandError::failed(e.to_string())
            .hint("fix the state directory, then re-run the same `cordon apply`: it resumes where it stopped")
    }
}

impl From<cordon_connector::ConnectorError> for CommandError {
    fn from(e: cordon_connector::ConnectorError) -> Self {
        CommandError::failed(e.message)
    }
}

pub type CmdResult = Result<Exit, CommandError>;
