//! cordon: the emergency brake for non-human identities.
//!
//! intake → plan → authority gate → engine (journal, connector) → verify →
//! hash-chained audit log. See `DESIGN.md` in the shared folder and the README.

#[cfg(feature = "cli")]
pub mod agent;
pub mod audit;
#[cfg(feature = "cli")]
pub mod cli;
pub mod connectors;
pub mod engine;
pub mod error;
pub mod gate;
pub mod halt;
pub mod incident;
pub mod intake;
pub mod plan;
pub mod policy;
#[cfg(feature = "cli")]
pub mod respond;
pub mod state;
pub mod text;
pub mod timefmt;
pub mod workspace;
