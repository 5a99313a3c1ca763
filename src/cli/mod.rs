//! The command line. Each command lives in its own file with an `XxxArgs`
//! struct and one `cmd_xxx` function (as jj does); this module only parses
//! and dispatches.

mod agent;
mod apply;
mod approve;
mod args;
mod auth;
mod classify;
mod context;
mod error;
mod halt;
mod incident;
mod init;
mod log;
mod mcp;
mod output;
mod pending;
mod plan;
mod policy;
mod report;
mod respond;
mod revoke;
mod revoke_github;
#[path = "state.rs"]
mod state_cmd;
mod status;
mod task;
mod verify;

pub use error::{CommandError, Exit};

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

use context::Context;

#[derive(Parser, Debug)]
#[command(
    name = "cordon",
    version,
    about = "The emergency brake for non-human identities: contain leaked credentials, under policy, with proof.",
    after_help = "Exit codes: 0 ok, 1 failed, 2 usage, 3 denied, 4 partial, 5 awaiting approval, 6 nothing containable, 7 log tampered, 8 log torn tail, 9 policy invalid, 10 stopped by a limit or the halt switch."
)]
pub struct Cli {
    /// State directory (plans, approvals, evidence, audit log).
    #[arg(long, global = true, env = "CORDON_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Shared state for a team: plans, approvals, evidence and the audit log
    /// in s3://BUCKET/PREFIX (credentials from the AWS default chain or
    /// CORDON_STATE_PROFILE; endpoint from AWS_ENDPOINT_URL_S3). The local
    /// --home keeps the policy, this machine's keys and connector state.
    #[arg(
        long,
        global = true,
        env = "CORDON_STATE",
        value_name = "s3://BUCKET/PREFIX"
    )]
    pub state: Option<String>,
    /// Authority policy directory (default: the `policy` folder of the state directory).
    #[arg(long, global = true, env = "CORDON_POLICY", value_name = "DIR")]
    pub policy: Option<PathBuf>,
    /// Print one JSON document on stdout instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// More diagnostics on stderr (-v, -vv); `RUST_LOG` works too.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create the state directory and install the shipped authority policy.
    Init(init::InitArgs),
    /// Recognise credentials in text from stdin (never echoes them).
    Classify(classify::ClassifyArgs),
    /// Write a plan (immutable, content-addressed); `plan show` / `plan list`.
    #[command(subcommand)]
    Plan(plan::PlanCommand),
    /// Sign a plan with your SSH key (or import an `ssh-keygen -Y sign` signature).
    Approve(approve::ApproveArgs),
    /// Execute a plan's allowed steps, journaled; re-run to resume.
    Apply(apply::ApplyArgs),
    /// Contain every credential in a scanner report: plan, decide, apply, verify.
    Respond(respond::RespondArgs),
    /// Listen for GitHub webhooks and AWS EventBridge events; respond to each as `agent`.
    Agent(agent::AgentArgs),
    /// Stop every automation principal (ci, agent, assistant) at once; signed and recorded.
    Halt(halt::HaltArgs),
    /// Release the halt switch; signed and recorded.
    Resume(halt::ResumeArgs),
    /// Plans waiting for approval, and what each still needs.
    Pending(pending::PendingArgs),
    /// Identify, plan, decide, apply and verify in one go.
    #[command(subcommand)]
    Revoke(revoke::RevokeCommand),
    /// Quarantine an identity (deny-all; for roles, revoke live sessions).
    #[command(subcommand)]
    Quarantine(revoke::QuarantineCommand),
    /// Check again that what a plan contained is dead (polling up to a deadline); recorded.
    Verify(verify::VerifyArgs),
    /// Undo what a plan did, from its evidence snapshots (restore authority).
    Restore(revoke::RestoreArgs),
    /// The audit log: `log verify`, `log show`.
    #[command(subcommand)]
    Log(log::LogCommand),
    /// The authority policy: `policy check`, `policy explain`.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Incidents: `incident open | list | show | close | assign`.
    #[command(subcommand)]
    Incident(incident::IncidentCommand),
    /// Tasks of an incident: `task add | assign | block | unblock | done`.
    #[command(subcommand)]
    Task(task::TaskCommand),
    /// What is contained, verified, failed, blocked and waiting for whom.
    Status(status::StatusArgs),
    /// The post-incident report (md, html, json), from the audit log.
    Report(report::ReportArgs),
    /// Shared state on S3: `state migrate --to s3://BUCKET/PREFIX`.
    #[command(subcommand)]
    State(state_cmd::StateCommand),
    /// A Model Context Protocol server on stdio: an AI assistant proposes containment as `assistant`; people approve.
    Mcp(mcp::McpArgs),
    /// cordon's own credentials in the OS keyring.
    #[command(subcommand)]
    Auth(auth::AuthCommand),
    /// Shell completions.
    Completions { shell: clap_complete::Shell },
    /// Manual pages (roff): `cordon man | man -l -`, or `--out-dir DIR` for one
    /// page per command (`cordon.1`, `cordon-revoke.1`, ...).
    Man {
        /// Write cordon.1 and a page for every subcommand into DIR.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

pub fn init_tracing(verbose: u8) {
    // Default: cordon's own warnings only. Dependencies' warnings (the AWS
    // SDK's IMDS probe printing a kilobyte of debug structure three times
    // when there are no credentials, say) appear with -v or RUST_LOG; cordon's
    // own error says what to do.
    let default = match verbose {
        0 => "error,cordon=warn,cordon_aws=warn,cordon_github=warn,cordon_connector=warn",
        1 => "info,cordon=debug",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(output::color_enabled())
        .try_init();
}

/// `cordon man`: the manual, generated from the same definitions as `--help`.
fn man(out: &output::Out, out_dir: Option<PathBuf>) -> error::CmdResult {
    let cmd = Cli::command();
    match out_dir {
        None => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut buf)
                .map_err(|e| CommandError::failed(format!("cannot render the manual: {e}")))?;
            use std::io::Write as _;
            std::io::stdout()
                .write_all(&buf)
                .map_err(|e| CommandError::failed(format!("cannot write the manual: {e}")))?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir).map_err(|e| {
                CommandError::failed(format!("cannot create `{}`: {e}", dir.display()))
            })?;
            clap_mangen::generate_to(cmd, &dir).map_err(|e| {
                CommandError::failed(format!(
                    "cannot write the manual pages into `{}`: {e}",
                    dir.display()
                ))
            })?;
            let pages = std::fs::read_dir(&dir)
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .filter(|e| e.file_name().to_string_lossy().ends_with(".1"))
                        .count()
                })
                .unwrap_or(0);
            if out.json {
                out.json(&serde_json::json!({"dir": dir, "pages": pages}));
            } else {
                out.line(format!("{pages} manual pages in {}", dir.display()));
            }
        }
    }
    Ok(Exit::Ok)
}

static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// When this process started (the first call: `main` makes it before parsing the
/// command line): where the time to dead of `apply`, `revoke` and `respond` starts, so
/// it counts what comes before the plan runs (reading a report, identifying the keys,
/// planning), as a leaked credential's owner lives it.
pub fn started() -> std::time::Instant {
    *STARTED.get_or_init(std::time::Instant::now)
}

/// Run a parsed command line; returns the exit code.
pub fn run(cli: Cli) -> i32 {
    let out = output::Out::new(cli.json);
    let verbose = cli.verbose > 0;
    let result = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(dispatch(cli, &out)),
        Err(e) => Err(CommandError::failed(format!(
            "cannot start the runtime: {e}"
        ))),
    };
    let code = match result {
        Ok(code) => code.code(),
        Err(e) => {
            if out.json {
                let mut doc = serde_json::json!({
                    "error": e.message,
                    "hints": e.hints,
                    "exit": e.exit.code(),
                });
                if !e.causes.is_empty() {
                    doc["causes"] = serde_json::json!(e.causes);
                }
                out.json(&doc);
            }
            output::print_error(&e, verbose);
            e.exit.code()
        }
    };
    // Output that did not reach stdout is a failure, whatever was done.
    if let Some(e) = out.finish() {
        output::print_error(
            &CommandError::failed(format!("cannot write the output to stdout: {e}"))
                .hint("what was done is in the audit log: `cordon log show`"),
            verbose,
        );
        return Exit::Failed.code();
    }
    code
}

async fn dispatch(cli: Cli, out: &output::Out) -> error::CmdResult {
    let ctx = || Context::open_state(cli.home.clone(), cli.policy.clone(), cli.state.clone());
    match cli.command {
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "cordon", &mut std::io::stdout());
            Ok(Exit::Ok)
        }
        Command::Man { out_dir } => man(out, out_dir),
        Command::Init(a) => init::cmd_init(&ctx()?, out, a),
        Command::Classify(a) => classify::cmd_classify(out, a),
        Command::Plan(c) => plan::cmd_plan(&ctx()?, out, c).await,
        Command::Approve(a) => approve::cmd_approve(&ctx()?, out, a),
        Command::Apply(a) => apply::cmd_apply(&ctx()?, out, a).await,
        Command::Respond(a) => respond::cmd_respond(&ctx()?, out, a).await,
        Command::Agent(a) => agent::cmd_agent(&ctx()?, out, a).await,
        Command::Halt(a) => halt::cmd_halt(&ctx()?, out, a),
        Command::Resume(a) => halt::cmd_resume(&ctx()?, out, a),
        Command::Pending(a) => pending::cmd_pending(&ctx()?, out, a),
        Command::Revoke(c) => revoke::cmd_revoke(&ctx()?, out, c).await,
        Command::Quarantine(c) => revoke::cmd_quarantine(&ctx()?, out, c).await,
        Command::Restore(a) => revoke::cmd_restore(&ctx()?, out, a).await,
        Command::Verify(a) => verify::cmd_verify(&ctx()?, out, a).await,
        Command::Log(c) => log::cmd_log(&ctx()?, out, c),
        Command::Policy(c) => policy::cmd_policy(cli.home.clone(), cli.policy.clone(), out, c),
        Command::Mcp(a) => mcp::cmd_mcp(ctx()?, cli.home.clone(), cli.policy.clone(), a).await,
        Command::Auth(c) => auth::cmd_auth(out, c),
        Command::Incident(c) => incident::cmd_incident(&ctx()?, out, c),
        Command::Task(c) => task::cmd_task(&ctx()?, out, c),
        Command::Status(a) => status::cmd_status(&ctx()?, out, a).await,
        Command::Report(a) => report::cmd_report(&ctx()?, out, a),
        Command::State(c) => state_cmd::cmd_state(&ctx()?, out, c),
    }
}
