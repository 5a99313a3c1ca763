//! `cordon mcp`: a Model Context Protocol server on stdio (the official Rust
//! SDK, `rmcp`), through which an AI assistant helps with containment inside
//! bounds: it classifies, asks the policy, reads status, pending plans and
//! reports, and proposes plans as the automation principal `assistant`.
//!
//! What it cannot do, by construction:
//! - approve: there is no approve tool, and approvals are SSH signatures by
//!   people (`cordon approve`), which the gate never takes from automation;
//! - act beyond the policy: `apply` runs a plan the assistant proposed through
//!   the same gate as every other path, as `assistant` (proven by
//!   `CORDON_ASSISTANT_SECRET` in the server's environment, else a bare claim
//!   that acts on nothing real); the shipped policy never lets it act on a
//!   production or unlabelled target, its `[limits.assistant]` bound the rest,
//!   and `cordon halt` stops it;
//! - see secrets: a secret reaches a proposal by reference (a report file or
//!   an environment variable the server reads), tool results carry
//!   fingerprints and key ids only, and arguments that hold a credential are
//!   refused before anything is recorded or done.
//!
//! Every call is an audit record (`tool-call`) before it runs. stdout is the
//! protocol channel: the commands run here print into a capture, never to it.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, ServiceExt};
use serde_json::{json, Map, Value};

use super::context::Context;
use super::error::{CmdResult, CommandError, Exit};
use super::output::Out;
use crate::audit::{Kind, RecordDraft};
use crate::engine::SecretBag;
use crate::intake::classify::{classify, Found};
use crate::intake::report::{Credential, Format, ParseOptions, MAX_REPORT_BYTES};
use crate::plan::{PlanMeta, PrincipalKind, Severity, Source};
use crate::respond::{parse_intake, respond, Intake, RespondOpts};
use crate::workspace::RunOptions;

/// The automation principal every tool acts as.
pub const ASSISTANT: &str = "assistant";

#[derive(Args, Debug)]
pub struct McpArgs {}

#[derive(Clone)]
struct Server {
    ctx: Arc<Context>,
    home: Option<PathBuf>,
    policy: Option<PathBuf>,
}

pub async fn cmd_mcp(
    ctx: Context,
    home: Option<PathBuf>,
    policy: Option<PathBuf>,
    _a: McpArgs,
) -> CmdResult {
    let server = Server {
        ctx: Arc::new(ctx),
        home,
        policy,
    };
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| CommandError::failed(format!("mcp: the session did not start: {e}")))?;
    running
        .waiting()
        .await
        .map_err(|e| CommandError::failed(format!("mcp: the session ended abnormally: {e}")))?;
    Ok(Exit::Ok)
}

fn schema(props: Value, required: &[&str]) -> Arc<Map<String, Value>> {
    let v = json!({
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": false,
    });
    Arc::new(match v {
        Value::Object(m) => m,
        _ => Map::new(),
    })
}

impl Server {
    /// The assistant's bounds in words, from the policy in force.
    fn bounds_text(&self) -> String {
        let gate = self.ctx.gate();
        let limits = match gate.policy() {
            Ok(p) => match p.roster().limits.get(ASSISTANT) {
                Some(l) => crate::policy::bounds::describe_limits(l),
                None => "no [limits.assistant] in the roster".into(),
            },
            Err(_) => "the policy does not load, so nothing is allowed".into(),
        };
        format!(
            "You act as the automation principal `assistant`. You propose; people approve (there is no approve tool, and none of your calls counts as an approval). \
             apply acts only where the authority policy lets `assistant` act: never on a production or unlabelled identity (those plans wait for a person to apply them), \
             and within its stop conditions ({limits}); past them, or while a person has set `cordon halt`, steps wait for a person. \
             Never put a secret in an argument: name the report file or environment variable that holds it (arguments holding a credential are refused). \
             Results name credentials by fingerprint or key id only. Every call is recorded in the audit log."
        )
    }

    fn tools(&self) -> Vec<Tool> {
        let b = self.bounds_text();
        let src = json!({
            "report": {"type": "string", "description": "path of a scanner report file (gitleaks, SARIF, trufflehog, ggshield, detect-secrets, secretlint, GitHub alerts, plain text) that holds the credentials"},
            "report_env": {"type": "string", "description": "name of an environment variable of the cordon mcp process that holds the report or the credential text"},
            "format": {"type": "string", "enum": ["auto","gitleaks","sarif","trufflehog","ggshield","detect-secrets","secretlint","github-alert","plain"], "description": "the report's format (default auto)"},
        });
        let mut plan_props = src.clone();
        if let Value::Object(m) = &mut plan_props {
            m.insert("quarantine_user".into(), json!({"type": "boolean", "description": "also propose quarantining the IAM user of each leaked AWS key"}));
            m.insert(
                "severity".into(),
                json!({"type": "string", "enum": ["low","medium","high","critical"]}),
            );
            m.insert(
                "incident".into(),
                json!({"type": "string", "description": "incident id to attach the plan to"}),
            );
            m.insert(
                "reason".into(),
                json!({"type": "string", "description": "why, in words (recorded in the plan)"}),
            );
        }
        let mut apply_props = src;
        if let Value::Object(m) = &mut apply_props {
            m.insert("plan".into(), json!({"type": "string", "description": "id (or unique prefix) of a plan proposed by `assistant`"}));
        }
        vec![
            Tool::new(
                "classify",
                format!("List the credentials in a file or environment variable by kind and fingerprint or key id; never returns a secret. {b}"),
                schema(json!({
                    "file": {"type": "string", "description": "path of a file to scan"},
                    "env": {"type": "string", "description": "name of an environment variable of the cordon mcp process to scan"},
                }), &[]),
            ),
            Tool::new(
                "policy_explain",
                format!("Ask the authority policy whether a principal may take an action on a target, which rules decide, what is missing, and the principal's stop conditions. Acts on nothing. {b}"),
                schema(json!({
                    "action": {"type": "string", "description": "an action id, e.g. aws:disable-access-key, github:revoke-token, aws:quarantine-user"},
                    "target": {"type": "string", "description": "provider:kind/id, e.g. aws:access-key/AKIA..., aws:user/deploy-bot"},
                    "as": {"type": "string", "description": "principal to ask about (default assistant)"},
                    "environment": {"type": "string"},
                    "account": {"type": "string"},
                    "severity": {"type": "string", "enum": ["low","medium","high","critical"]},
                    "approvals": {"type": "array", "items": {"type": "string"}, "description": "approvers to assume"},
                }), &["action", "target"]),
            ),
            Tool::new(
                "status",
                format!("The incident's status: what is contained, verified, failed, blocked and waiting for whom. {b}"),
                schema(json!({"incident": {"type": "string", "description": "incident id (default: the only open one)"}}), &[]),
            ),
            Tool::new(
                "pending",
                format!("Plans waiting for people, and what each step still needs (approvals, a limit, the halt switch). {b}"),
                schema(json!({"incident": {"type": "string"}}), &[]),
            ),
            Tool::new(
                "plan",
                format!("Propose containment for the credentials in a report (by file path or environment variable): identify them, write an immutable plan as `assistant`, and return its id and what the policy says of each step. Acts on nothing; people review (`cordon plan show`), approve (`cordon approve`) and apply. {b}"),
                schema(plan_props, &[]),
            ),
            Tool::new(
                "apply",
                format!("Run a plan proposed by `assistant`, as `assistant`, through the authority gate: only the steps the policy lets `assistant` take run; the rest are denied or wait for a person, and every decision is recorded. The report (file or environment variable) supplies the leaked secrets the steps need. {b}"),
                schema(apply_props, &["plan"]),
            ),
            Tool::new(
                "report",
                format!("The post-incident report (markdown or JSON) from the audit log: timeline, approvals, evidence, time to contain, open items. {b}"),
                schema(json!({
                    "incident": {"type": "string"},
                    "format": {"type": "string", "enum": ["md", "json"]},
                }), &[]),
            ),
        ]
    }

    /// Record the call (arguments hold references only; checked first).
    fn record(
        &self,
        tool: &str,
        args: &Map<String, Value>,
        refused: Option<&str>,
    ) -> Result<(), CommandError> {
        let mut d = RecordDraft::new(
            Kind::ToolCall,
            crate::gate::Principal::claim(ASSISTANT, PrincipalKind::Automation),
        );
        d.message = Some(match refused {
            Some(why) => format!("mcp tool `{tool}` refused: {why}"),
            None => format!("mcp tool `{tool}`"),
        });
        d.data = Some(if refused.is_some() {
            json!({"tool": tool, "transport": "stdio"})
        } else {
            json!({"tool": tool, "arguments": args, "transport": "stdio"})
        });
        self.ctx.log.append(d)?;
        Ok(())
    }

    async fn run(&self, tool: &str, args: Map<String, Value>) -> Result<Value, CommandError> {
        // A credential in the arguments has already been through the model:
        // refuse it, record the refusal without the arguments, do nothing.
        let text = serde_json::to_string(&args).unwrap_or_default();
        if holds_credential(&text) {
            let why = "an argument holds a credential: name the file or environment variable that holds it instead";
            self.record(tool, &Map::new(), Some(why))?;
            return Err(CommandError::usage(why));
        }
        let known = [
            "classify",
            "policy_explain",
            "status",
            "pending",
            "plan",
            "apply",
            "report",
        ];
        if !known.contains(&tool) {
            let why = format!("no tool `{tool}` (there is no approve tool: approvals are people's SSH signatures)");
            self.record(tool, &Map::new(), Some(&why))?;
            return Err(CommandError::usage(why));
        }
        self.record(tool, &args, None)?;
        let ctx = self.ctx.as_ref();
        let out = Out::capturing();
        let captured = |exit: Exit, out: &Out| -> Value {
            let text = out.captured();
            let body = serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text));
            json!({"exit": exit.code(), "result": body})
        };
        match tool {
            "classify" => {
                let text = read_ref(
                    str_arg(&args, "file")?.map(PathBuf::from),
                    str_arg(&args, "env")?,
                )?;
                let exit = super::classify::classify_text(&out, text)?;
                Ok(captured(exit, &out))
            }
            "policy_explain" => {
                let severity = match str_arg(&args, "severity")? {
                    Some(s) => parse_severity(&s)?,
                    None => Severity::High,
                };
                let principal = str_arg(&args, "as")?.unwrap_or_else(|| ASSISTANT.into());
                let cmd = super::policy::PolicyCommand::Explain {
                    source: (principal == ASSISTANT).then_some(Source::Assistant),
                    principal,
                    unverified: false,
                    action: req_arg(&args, "action")?,
                    target: req_arg(&args, "target")?,
                    environment: str_arg(&args, "environment")?,
                    account: str_arg(&args, "account")?,
                    severity,
                    approvals: list_arg(&args, "approvals")?,
                    elapsed: 0,
                    break_glass: false,
                };
                let exit =
                    super::policy::cmd_policy(self.home.clone(), self.policy.clone(), &out, cmd)?;
                Ok(captured(exit, &out))
            }
            "status" => {
                let a = super::status::StatusArgs {
                    incident: str_arg(&args, "incident")?,
                    watch: false,
                    interval: 2.0,
                };
                let exit = super::status::cmd_status(ctx, &out, a).await?;
                Ok(captured(exit, &out))
            }
            "pending" => {
                let a = super::pending::PendingArgs {
                    incident: str_arg(&args, "incident")?,
                };
                let exit = super::pending::cmd_pending(ctx, &out, a)?;
                Ok(captured(exit, &out))
            }
            "report" => {
                let format = match str_arg(&args, "format")?.as_deref() {
                    None | Some("md") => super::report::Format::Md,
                    Some("json") => super::report::Format::Json,
                    Some(f) => {
                        return Err(CommandError::usage(format!(
                            "`format` is `md` or `json`, not `{f}`"
                        )))
                    }
                };
                let a = super::report::ReportArgs {
                    incident: str_arg(&args, "incident")?,
                    format,
                    output: None,
                };
                // Text mode, so markdown stays markdown.
                let text_out = Out::capturing_text();
                let exit = super::report::cmd_report(ctx, &text_out, a)?;
                Ok(captured(exit, &text_out))
            }
            "plan" => self.propose(&args).await,
            "apply" => self.apply(&args).await,
            _ => Err(CommandError::usage(format!("no tool `{tool}`"))),
        }
    }

    async fn propose(&self, args: &Map<String, Value>) -> Result<Value, CommandError> {
        let intake = self.intake(args)?;
        let severity = match str_arg(args, "severity")? {
            Some(s) => parse_severity(&s)?,
            None => Severity::High,
        };
        let opts = RespondOpts {
            meta: PlanMeta {
                requester: Some(ASSISTANT.into()),
                severity,
                source: Source::Assistant,
                incident: str_arg(args, "incident")?,
                reason: str_arg(args, "reason")?,
                key: None,
            },
            // Propose only: the plan is written and nothing is done.
            dry_run: true,
            run: assistant_run(),
            quarantine_user: bool_arg(args, "quarantine_user")?,
            github_repo: None,
            github_app_id: None,
            // A dry run: nothing is revoked, so nothing is searched.
            github_orgs: vec![],
            progress: None,
        };
        let s = respond(&self.ctx, intake, &opts).await?;
        Ok(json!({
            "plan": s.plan,
            "requester": ASSISTANT,
            "report": {"format": s.format, "origin": s.origin, "sha256": s.report_sha256},
            "findings": s.findings,
            "next": s.plan.as_ref().map(|p| format!(
                "people review it (`cordon plan show {p}`), approve it (`cordon approve {p} --key ...`) and apply it (`cordon apply {p}`); the apply tool runs only what the policy lets `assistant` do"
            )),
        }))
    }

    async fn apply(&self, args: &Map<String, Value>) -> Result<Value, CommandError> {
        let ctx = self.ctx.as_ref();
        let (id, bytes, plan) = ctx.load_plan(&req_arg(args, "plan")?)?;
        if plan.requester.name != ASSISTANT {
            return Err(CommandError::new(
                Exit::Denied,
                format!(
                    "plan `{id}` was written by `{}`, not by `assistant`: the assistant applies only its own proposals",
                    plan.requester.name
                ),
            ));
        }
        let mut secrets = SecretBag::default();
        if args.contains_key("report") || args.contains_key("report_env") {
            for f in self.intake(args)?.report.findings {
                match f.item {
                    Ok(Credential::Github { secret, .. }) => secrets.insert(secret),
                    Ok(Credential::AwsKey {
                        secret: Some(secret),
                        ..
                    }) => secrets.insert(secret),
                    _ => {}
                }
            }
        }
        let run = ctx
            .execute(&id, &bytes, &plan, &assistant_run(), &secrets)
            .await?;
        let (report, principal) = (run.report, run.principal);
        let exit = ctx.refusal_exit(super::apply::exit_for(&report));
        let steps: Vec<Value> = report
            .steps
            .iter()
            .map(|s| {
                json!({
                    "step": s.step,
                    "action": s.action,
                    "target": s.target,
                    "allowed": s.decision.as_ref().map(|d| d.is_allow()),
                    "policies": s.decision.as_ref().map(|d| d.policies.clone()),
                    "stopped": s.decision.as_ref().and_then(|d| d.stopped.clone()),
                    "missing": s.decision.as_ref().map(|d| d.missing.clone()),
                    "errors": s.decision.as_ref().map(|d| d.errors.clone()),
                    "reasons": s.decision.as_ref().map(|d| d.reasons.clone()),
                    "outcome": s.outcome,
                    "verification": s.verification,
                })
            })
            .collect();
        Ok(json!({
            "plan": id,
            "requester": principal.name,
            "requester_verified": principal.verified,
            "exit": exit.code(),
            "steps": steps,
            "notes": run.notes,
        }))
    }

    /// A report from a file or an environment variable, parsed.
    fn intake(&self, args: &Map<String, Value>) -> Result<Intake, CommandError> {
        let file = str_arg(args, "report")?.map(PathBuf::from);
        let env = str_arg(args, "report_env")?;
        let format = match str_arg(args, "format")? {
            None => Format::Auto,
            Some(f) => <Format as clap::ValueEnum>::from_str(&f, true)
                .map_err(|_| CommandError::usage(format!("unknown report format `{f}`")))?,
        };
        let origin = match (&file, &env) {
            (Some(f), _) => f.display().to_string(),
            (None, Some(v)) => format!("env {v}"),
            (None, None) => String::new(),
        };
        let root = file
            .as_ref()
            .and_then(|f| f.parent().map(PathBuf::from))
            .or_else(|| std::env::current_dir().ok());
        let text = read_ref(file, env)?;
        parse_intake(
            text.expose().as_bytes(),
            format,
            origin,
            ParseOptions { root },
        )
    }
}

/// How the assistant's plans run: as `assistant`, never break-glass, at the
/// command line's default pace.
fn assistant_run() -> RunOptions {
    RunOptions {
        requester: Some(ASSISTANT.into()),
        break_glass: false,
        reason: None,
        concurrency: crate::engine::EngineConfig::default().concurrency,
        rate: None,
        since: None,
        progress: None,
    }
}

/// Whether `text` holds anything that must not pass through a model: a
/// GitHub token (even one whose checksum is wrong) or an AWS secret.
/// A bare AWS key id is not a secret and may be named.
fn holds_credential(text: &str) -> bool {
    classify(text).into_iter().any(|f| match f {
        Found::GithubToken { .. }
        | Found::AwsSecretUnpaired { .. }
        | Found::PrivateKey { .. }
        | Found::Invalid { .. } => true,
        Found::AwsKey { secret, .. } => secret.is_some(),
        Found::Unrecognised { .. } => false,
    })
}

/// The text of a file or an environment variable (exactly one), bounded.
fn read_ref(
    file: Option<PathBuf>,
    env: Option<String>,
) -> Result<cordon_connector::Secret, CommandError> {
    let text = match (file, env) {
        (Some(f), None) => {
            use std::io::Read;
            let h = std::fs::File::open(&f).map_err(|e| {
                CommandError::usage(format!("cannot read `{}`: {e}", f.display()))
            })?;
            let mut b = Vec::new();
            h.take(MAX_REPORT_BYTES as u64 + 1)
                .read_to_end(&mut b)
                .map_err(|e| CommandError::usage(format!("cannot read `{}`: {e}", f.display())))?;
            if b.len() > MAX_REPORT_BYTES {
                return Err(CommandError::usage(format!(
                    "`{}` is larger than {MAX_REPORT_BYTES} bytes",
                    f.display()
                )));
            }
            String::from_utf8(b).map_err(|_| {
                CommandError::usage(format!("`{}` is not UTF-8 text", f.display()))
            })?
        }
        (None, Some(v)) => std::env::var(&v).map_err(|_| {
            CommandError::usage(format!("environment variable `{v}` is not set in the cordon mcp process"))
        })?,
        _ => {
            return Err(CommandError::usage(
                "give exactly one of a file (`report`/`file`) or an environment variable (`report_env`/`env`)",
            ))
        }
    };
    Ok(cordon_connector::Secret::new(text))
}

fn str_arg(args: &Map<String, Value>, k: &str) -> Result<Option<String>, CommandError> {
    match args.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(CommandError::usage(format!("`{k}` must be a string"))),
    }
}

fn req_arg(args: &Map<String, Value>, k: &str) -> Result<String, CommandError> {
    str_arg(args, k)?.ok_or_else(|| CommandError::usage(format!("`{k}` is required")))
}

fn bool_arg(args: &Map<String, Value>, k: &str) -> Result<bool, CommandError> {
    match args.get(k) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(CommandError::usage(format!("`{k}` must be true or false"))),
    }
}

fn list_arg(args: &Map<String, Value>, k: &str) -> Result<Vec<String>, CommandError> {
    match args.get(k) {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| CommandError::usage(format!("`{k}` must be a list of strings")))
            })
            .collect(),
        Some(_) => Err(CommandError::usage(format!(
            "`{k}` must be a list of strings"
        ))),
    }
}

fn parse_severity(s: &str) -> Result<Severity, CommandError> {
    <Severity as clap::ValueEnum>::from_str(s, true).map_err(|_| {
        CommandError::usage(format!(
            "unknown severity `{s}` (low, medium, high, critical)"
        ))
    })
}

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        let mut info = Implementation::new("cordon", env!("CARGO_PKG_VERSION"));
        info.title = Some("cordon: the emergency brake for non-human identities".into());
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(info)
            .with_instructions(self.bounds_text())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.tools()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools().into_iter().find(|t| t.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let name: Cow<'static, str> = request.name.clone();
        let args = request.arguments.clone().unwrap_or_default();
        let me = self.clone();
        let handle = tokio::runtime::Handle::current();
        // The commands' futures need not be Send: run them on a blocking
        // thread of this runtime.
        let result = tokio::task::spawn_blocking(move || handle.block_on(me.run(&name, args)))
            .await
            .map_err(|e| McpError::internal_error(format!("the tool did not finish: {e}"), None))?;
        Ok(CallToolResponse::from(match result {
            Ok(v) => {
                let text = serde_json::to_string_pretty(&v).unwrap_or_default();
                let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
                r.structured_content = Some(v);
                r
            }
            Err(e) => {
                let v = json!({"error": e.message, "hints": e.hints, "exit": e.exit.code()});
                let mut r = CallToolResult::error(vec![ContentBlock::text(
                    serde_json::to_string_pretty(&v).unwrap_or_default(),
                )]);
                r.structured_content = Some(v);
                r
            }
        }))
    }
}
