//! Integration tests of the `cordon` binary, compiled into one test binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod activity;
mod agent;
mod bounded;
mod checkpoint;
mod cli;
mod crash;
mod evidence;
mod fire;
mod frontdoor;
mod github;
mod incident;
mod peers;
mod reasons;
mod reports;
mod respond;
mod reverify;
mod s3state;
mod state;
