//! `cordon agent --listen ADDR`: GitHub webhooks and AWS EventBridge events
//! in, `cordon respond` out, with principal `agent` (see src/agent).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use cordon_connector::Secret;

use super::context::Context;
use super::error::{CmdResult, CommandError, Exit};
use super::output::Out;
use crate::agent::{serve, AgentConfig, Handler};
use crate::intake::webhook::{Event, EventSource};
use crate::plan::{sha256_hex, PlanMeta, Source};
use crate::respond::{respond, Intake, RespondOpts};
use crate::workspace::RunOptions;

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// Address to listen on. Loopback by default: put a TLS-terminating proxy
    /// in front to receive deliveries from outside.
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,
    /// Environment variable holding the GitHub webhook secret.
    #[arg(long, default_value = "CORDON_WEBHOOK_SECRET", value_name = "VAR")]
    pub github_secret_env: String,
    /// Environment variable holding the bearer token EventBridge sends.
    #[arg(long, default_value = "CORDON_EVENTBRIDGE_TOKEN", value_name = "VAR")]
    pub eventbridge_token_env: String,
    /// Largest delivery body accepted, in bytes.
    #[arg(long, default_value_t = 1024 * 1024, value_parser = super::args::max_body)]
    pub max_body: usize,
    /// Events accepted but not yet processed, at most (then 503 + Retry-After).
    #[arg(long, default_value_t = 10_000, value_parser = super::args::max_queue)]
    pub max_queue: usize,
    /// Steps in flight at once, per event.
    #[arg(long, default_value_t = 32, value_parser = super::args::concurrency)]
    pub concurrency: usize,
    /// Cap on operations per second per account (a snapshot, a change or a
    /// check). Without it the rate adapts: it starts at 10 (safe for real IAM),
    /// rises while the provider answers and halves when it throttles, up to 500.
    #[arg(long, value_parser = super::args::rate)]
    pub rate: Option<f64>,
    /// Attach the plans to this incident.
    #[arg(long, env = "CORDON_INCIDENT")]
    pub incident: Option<String>,
}

struct RespondHandler {
    home: PathBuf,
    /// The shared state (`--state`), if any.
    state: Option<String>,
    policy: PathBuf,
    concurrency: usize,
    rate: Option<f64>,
    incident: Option<String>,
    /// `Some` until drop. The server's handlers share the handler too (to
    /// record ignored deliveries), so the last reference may go inside the
    /// server's async context, where dropping a runtime normally panics.
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for RespondHandler {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            // Nothing runs on it between events: the worker blocks on it only
            // while handling one.
            rt.shutdown_background();
        }
    }
}

impl Handler for RespondHandler {
    fn handle(
        &self,
        event: &Event,
        received: std::time::Instant,
    ) -> Result<serde_json::Value, String> {
        let ctx = Context::open_state(
            Some(self.home.clone()),
            Some(self.policy.clone()),
            self.state.clone(),
        )
        .map_err(|e| e.message)?;
        let canonical = serde_json::to_vec(event).map_err(|e| e.to_string())?;
        let intake = Intake {
            report: event.to_report(),
            format: match event.source {
                EventSource::Github => "github-webhook",
                EventSource::Aws => "eventbridge",
            },
            origin: format!("{} {}", event.kind, event.id),
            sha256: sha256_hex(&canonical),
            bytes: canonical.len(),
            role_hints: event.role_hints(),
        };
        let opts = RespondOpts {
            meta: PlanMeta {
                requester: Some("agent".into()),
                severity: event.severity,
                source: Source::Agent,
                incident: self.incident.clone(),
                reason: Some(format!("{} {}", event.kind, event.id)),
                key: None,
            },
            dry_run: false,
            run: RunOptions {
                requester: None,
                break_glass: false,
                reason: Some(format!("{} {}", event.kind, event.id)),
                concurrency: self.concurrency,
                rate: self.rate,
                // Time to dead counts from the delivery's receipt.
                since: Some(received),
                progress: None,
            },
            quarantine_user: false,
            // An event names the repository of an alert, not the
            // repository a leaked private key is deployed on.
            github_repo: None,
            github_app_id: None,
            // What each leaked token did: the organisations from the
            // agent's environment, as for `cordon respond`.
            github_orgs: crate::respond::github_activity::orgs_from_env(),
            progress: None,
        };
        // The summary goes to done/ and the log; nothing is printed.
        let rt = self
            .rt
            .as_ref()
            .ok_or_else(|| "the agent is shutting down".to_owned())?;
        let summary = rt
            .block_on(respond(&ctx, intake, &opts))
            .map_err(|e| e.message)?;
        Ok(serde_json::json!({
            "plan": summary.plan,
            "requester_verified": summary.requester_verified,
            "exit": summary.exit.code(),
            "findings": summary.findings,
            // From the delivery's receipt until each credential was refused.
            "time_to_dead": summary.time_to_dead,
        }))
    }

    fn ignored(&self, source: &str, delivery: Option<&str>, why: &str) -> Result<(), String> {
        self.record_ignored(source, delivery, why)
    }
}

impl RespondHandler {
    fn record_ignored(
        &self,
        source: &str,
        delivery: Option<&str>,
        why: &str,
    ) -> Result<(), String> {
        use crate::audit::{Kind, RecordDraft};
        let ctx = Context::open_state(
            Some(self.home.clone()),
            Some(self.policy.clone()),
            self.state.clone(),
        )
        .map_err(|e| e.message)?;
        // The delivery was authenticated (webhook signature or bearer token);
        // the note records it, it decides nothing.
        let actor = crate::gate::Principal {
            name: "agent".into(),
            kind: crate::plan::PrincipalKind::Automation,
            verified: false,
            proof: None,
        };
        let mut d = RecordDraft::new(Kind::Note, actor);
        d.message = Some(format!("webhook delivery ignored: {why}"));
        d.incident = self.incident.clone();
        d.data = Some(serde_json::json!({
            "webhook": source,
            "delivery": delivery,
            "ignored": why,
        }));
        ctx.log.append(d).map(|_| ()).map_err(|e| e.to_string())
    }
}

fn secret_from(var: &str) -> Option<Secret> {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .map(Secret::new)
}

pub async fn cmd_agent(ctx: &Context, out: &Out, a: AgentArgs) -> CmdResult {
    let github_secret = secret_from(&a.github_secret_env);
    let eventbridge_token = secret_from(&a.eventbridge_token_env);
    if github_secret.is_none() && eventbridge_token.is_none() {
        return Err(CommandError::usage(format!(
            "neither `{}` nor `{}` is set: the agent would refuse every delivery",
            a.github_secret_env, a.eventbridge_token_env
        ))
        .hint(
            "set the GitHub webhook secret and/or the EventBridge bearer token in the environment",
        ));
    }
    if std::env::var_os("CORDON_AGENT_SECRET").is_none() {
        tracing::warn!("CORDON_AGENT_SECRET is not set: the agent acts as an unverified claim and the policy will refuse it");
    }
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .map_err(|e| CommandError::failed(format!("cannot listen on `{}`: {e}", a.listen)))?;
    let local = listener
        .local_addr()
        .map_err(|e| CommandError::failed(format!("cannot read the bound address: {e}")))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CommandError::failed(format!("cannot start the worker runtime: {e}")))?;
    let handler = Arc::new(RespondHandler {
        home: ctx.home.root().to_path_buf(),
        state: ctx.shared.clone(),
        policy: ctx.policy_dir.clone(),
        concurrency: a.concurrency,
        rate: a.rate,
        incident: a.incident.clone(),
        rt: Some(rt),
    });
    let config = AgentConfig {
        github_secret,
        eventbridge_token,
        max_body: a.max_body,
        max_queue: a.max_queue,
        dir: ctx.home.ensure_dir("agent")?,
        halt_root: Some(ctx.home.root().to_path_buf()),
        shared_log: ctx.shared.is_some().then(|| ctx.log.clone()),
    };
    // Watch SIGTERM and SIGINT before announcing the address: whoever reads
    // that line may stop the agent at once, and a signal that arrives before
    // its handler exists takes its default action (the process dies instead
    // of stopping gracefully).
    use tokio::signal::unix::{signal, SignalKind};
    let watch = |kind: SignalKind, name: &str| {
        signal(kind).map_err(|e| CommandError::failed(format!("cannot watch {name}: {e}")))
    };
    let mut term = watch(SignalKind::terminate(), "SIGTERM")?;
    let mut int = watch(SignalKind::interrupt(), "SIGINT")?;
    // Scripts and tests read the address from the first line.
    out.line(format!("listening on {local}"));
    let shutdown = async move {
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
        tracing::info!("stopping: no new deliveries; finishing the event in progress");
    };
    let stats = serve(config, listener, handler, shutdown)
        .await
        .map_err(|e| CommandError::failed(e.to_string()))?;
    out.line(format!(
        "stopped: {} events processed, {} failed, {} left for the next start",
        stats.processed, stats.failed, stats.left_in_inbox
    ));
    Ok(Exit::Ok)
}
