//! Intake: turning raw text, scanner reports and webhooks into credentials.

pub mod classify;
pub mod report;
pub mod webhook;
