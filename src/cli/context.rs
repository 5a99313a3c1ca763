//! A command's context is the library's workspace (`crate::workspace`):
//! the home, the audit log, the authority policy and the connectors.

pub use crate::workspace::{demo_switch, Workspace as Context};
