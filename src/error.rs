//! One error type for the library's front-end operations (the respond
//! pipeline, the workspace) and every command: a kind that maps to the
//! documented exit code, the message, and hints that say what to run next.
//! The command line re-exports it as `CommandError`.

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
pub struct Error {
    pub exit: Exit,
    pub message: String,
    pub hints: Vec<String>,
    /// The error's sources, outermost first, each as its message says it
    /// (`--json` has them as `causes`, `-v` prints them as `caused by:`).
    /// A source whose text the message already quotes is not repeated.
    pub causes: Vec<String>,
}

impl Error {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Error {
            exit,
            message: message.into(),
            hints: vec![],
            causes: vec![],
        }
    }

    /// An error from a library error, keeping its source chain.
    pub fn from_source(exit: Exit, e: &(dyn std::error::Error + 'static)) -> Self {
        let mut out = Self::new(exit, e.to_string());
        let mut next = e.source();
        while let Some(s) = next {
            let text = s.to_string();
            if !out.message.contains(&text) && !out.causes.iter().any(|c| c.contains(&text)) {
                out.causes.push(text);
            }
            next = s.source();
        }
        out
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

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)
    }
}

impl From<crate::state::StateError> for Error {
    fn from(e: crate::state::StateError) -> Self {
        Error::from_source(Exit::Failed, &e)
    }
}

impl From<crate::audit::AuditError> for Error {
    fn from(e: crate::audit::AuditError) -> Self {
        Error::from_source(Exit::Failed, &e)
    }
}

impl From<crate::engine::EngineError> for Error {
    fn from(e: crate::engine::EngineError) -> Self {
        Error::from_source(Exit::Failed, &e)
            .hint("fix the state directory, then re-run the same `cordon apply`: it resumes where it stopped")
    }
}

impl From<cordon_connector::ConnectorError> for Error {
    fn from(e: cordon_connector::ConnectorError) -> Self {
        Error::failed(e.message)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);
    #[derive(Debug, thiserror::Error)]
    #[error("middle: {0}")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn the_source_chain_is_kept_and_text_the_message_quotes_is_not_repeated() {
        let e = Outer(Middle(std::io::Error::other("disk full")));
        let err = Error::from_source(Exit::Failed, &e);
        assert_eq!(err.message, "outer");
        // `middle: disk full` already quotes `disk full`.
        assert_eq!(err.causes, vec!["middle: disk full".to_owned()]);
    }
}
