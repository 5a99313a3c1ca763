//! Intake: turning raw text, scanner reports and webhooks into credentials.

pub mod classify;
pub mod private_key;
pub mod report;
pub mod webhook;
