//! The contract between cordon's engine and the systems it acts on.
//!
//! This crate is separate from the `cordon` package because `cordon` depends on
//! every connector, and every connector depends on this trait: cargo forbids the
//! cycle otherwise. It holds:
//!
//! * [`Secret`]: the only type a raw credential may live in;
//! * the shared model: [`Target`], [`Action`], [`PlanStep`], [`Outcome`];
//! * the [`Connector`] trait and its error classification ([`ConnectorError`]);
//! * [`testkit`]: the compliance checks every connector's integration tests run.

pub mod aws_key;
mod connector;
pub mod github_token;
mod model;
mod pause;
mod secret;
pub mod testkit;

pub use connector::{
    Answers, BatchResult, Connector, ConnectorError, ErrorClass, StepContext, TargetState,
    Verification,
};
pub use model::{Action, DecisionClass, Outcome, PlanStep, Provider, Target};
pub use pause::{install_pause, pause, PauseFuture};
pub use secret::{fingerprint, Secret};
