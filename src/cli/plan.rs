//! `cordon plan ...`: write, show and list plans.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use cordon_connector::{Action, PlanStep, Provider, Target};

use super::context::Context;
use super::error::{CmdResult, CommandError, Exit};
use super::output::Out;
use crate::audit::{Kind, RecordDraft};
use crate::gate::Principal;
use crate::plan::{
    now_ms, plan_id, sha256_hex, Plan, PrincipalKind, Requester, Severity, Source, PLAN_VERSION,
};
use crate::state::{ObjectKind, Store};

/// Who asks, how bad, and why: shared by every command that writes a plan.
#[derive(Args, Debug, Clone)]
pub struct PlanMeta {
    /// The requester. Unverified unless you also sign (`--key`) or are an
    /// automation principal presenting its secret.
    #[arg(long = "as", value_name = "NAME", env = "CORDON_AS")]
    pub requester: Option<String>,
    #[arg(long, value_enum, default_value = "high")]
    pub severity: Severity,
    #[arg(long, value_enum, default_value = "manual")]
    pub source: Source,
    /// Attach to an incident (it must exist and be open; default: CORDON_INCIDENT).
    #[arg(long, env = "CORDON_INCIDENT")]
    pub incident: Option<String>,
    #[arg(long)]
    pub reason: Option<String>,
    /// Sign the plan as its requester with this SSH private key.
    #[arg(long, value_name = "PATH")]
    pub key: Option<PathBuf>,
}

impl PlanMeta {
    pub fn requester_name(&self) -> String {
        self.requester
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "unknown".into())
    }
}

#[derive(Subcommand, Debug)]
pub enum PlanCommand {
    /// Plan containment of items of the built-in test connector (touches
    /// nothing outside the state dir; for drills, demos and tests).
    Test {
        /// Item names.
        #[arg(required = true)]
        items: Vec<String>,
        /// Plan the restore action instead of containment.
        #[arg(long)]
        restore: bool,
        #[command(flatten)]
        meta: PlanMeta,
    },
    /// Show a plan.
    Show { id: String },
    /// List plans.
    List,
}

pub fn principal_claim(name: &str, kind: PrincipalKind) -> Principal {
    Principal {
        name: name.to_owned(),
        kind,
        verified: false,
        proof: None,
    }
}

/// Write a plan: canonical bytes into the store, a `plan` audit record, and
/// the requester's signature when `--key` was given.
pub fn write_plan(
    ctx: &Context,
    meta: &PlanMeta,
    steps: Vec<PlanStep>,
) -> Result<(String, Vec<u8>, Plan), CommandError> {
    let name = meta.requester_name();
    let kind = if matches!(name.as_str(), "ci" | "agent" | "assistant") {
        PrincipalKind::Automation
    } else {
        PrincipalKind::Person
    };
    let incident = super::incident::attachable(ctx, meta.incident.as_deref())?;
    let plan = Plan {
        version: PLAN_VERSION,
        created_at: now_ms(),
        requester: Requester {
            name: name.clone(),
            kind,
        },
        source: meta.source,
        severity: meta.severity,
        incident,
        reason: meta.reason.clone(),
        steps,
    };
    plan.validate()
        .map_err(|e| CommandError::failed(e.to_string()))?;
    let bytes = plan
        .to_canonical_bytes()
        .map_err(|e| CommandError::failed(e.to_string()))?;
    let id = plan_id(&bytes);
    ctx.home
        .put_new(ObjectKind::Plan, &format!("{id}.json"), &bytes)?;
    let mut d = RecordDraft::new(Kind::Plan, principal_claim(&name, kind));
    d.plan = Some(id.clone());
    d.incident = plan.incident.clone();
    d.message = plan.reason.clone();
    d.data = Some(serde_json::json!({
        "sha256": sha256_hex(&bytes),
        "steps": plan.steps.len(),
        "severity": plan.severity,
        "source": plan.source,
    }));
    ctx.log.append(d)?;
    if let Some(key) = &meta.key {
        super::approve::sign_and_store(ctx, &id, &bytes, key, Some(&name))?;
    }
    Ok((id, bytes, plan))
}

pub async fn cmd_plan(ctx: &Context, out: &Out, cmd: PlanCommand) -> CmdResult {
    match cmd {
        PlanCommand::Test {
            items,
            restore,
            meta,
        } => {
            let steps = items
                .iter()
                .enumerate()
                .map(|(i, item)| PlanStep {
                    id: format!("s{}", i + 1),
                    action: if restore {
                        Action::TestRestore
                    } else {
                        Action::TestContain
                    },
                    target: Target::new(Provider::Test, "item", item.as_str()),
                    secret: None,
                    params: BTreeMap::new(),
                })
                .collect();
            let (id, _, plan) = write_plan(ctx, &meta, steps)?;
            print_written(out, &id, &plan);
            Ok(Exit::Ok)
        }
        PlanCommand::Show { id } => {
            let (id, _, plan) = ctx.load_plan(&id)?;
            if out.json {
                out.json(&serde_json::json!({ "id": id, "plan": plan }));
            } else {
                print_plan(out, &id, &plan);
            }
            Ok(Exit::Ok)
        }
        PlanCommand::List => {
            let mut rows = Vec::new();
            let mut list = Vec::new();
            for name in ctx.home.list(ObjectKind::Plan, "")? {
                let id = name.trim_end_matches(".json");
                match ctx.load_plan(id) {
                    Ok((id, _, p)) => {
                        rows.push(vec![
                            id.clone(),
                            crate::timefmt::format(&p.created_at),
                            p.requester.name.clone(),
                            p.severity.as_str().into(),
                            p.steps.len().to_string(),
                            p.incident.clone().unwrap_or_default(),
                        ]);
                        list.push(serde_json::json!({"id": id, "created_at": crate::timefmt::format(&p.created_at), "requester": p.requester.name, "steps": p.steps.len(), "incident": p.incident}));
                    }
                    Err(e) => rows.push(vec![id.to_owned(), format!("unusable: {}", e.message)]),
                }
            }
            if out.json {
                out.json(&list);
            } else {
                out.table(
                    &[
                        "PLAN",
                        "CREATED",
                        "REQUESTER",
                        "SEVERITY",
                        "STEPS",
                        "INCIDENT",
                    ],
                    &rows,
                );
            }
            Ok(Exit::Ok)
        }
    }
}

pub fn print_written(out: &Out, id: &str, plan: &Plan) {
    if out.json {
        out.json(&serde_json::json!({ "id": id, "plan": plan }));
    } else {
        print_plan(out, id, plan);
        out.line(format!("next: `cordon apply {id}` (or have it approved: `cordon approve {id} --key ~/.ssh/id_ed25519`)"));
    }
}

pub fn print_plan(out: &Out, id: &str, plan: &Plan) {
    out.line(format!(
        "plan {id}  requester {}  severity {}  source {}{}",
        plan.requester.name,
        plan.severity.as_str(),
        plan.source.as_str(),
        plan.incident
            .as_ref()
            .map(|i| format!("  incident {i}"))
            .unwrap_or_default()
    ));
    let rows: Vec<Vec<String>> = plan
        .steps
        .iter()
        .map(|s| {
            vec![
                s.id.clone(),
                s.action.id().to_owned(),
                s.target.display_name(),
                s.target.account.clone().unwrap_or_else(|| "-".into()),
                s.secret
                    .as_deref()
                    .map(|f| format!("sha256:{}", &f[..12.min(f.len())]))
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    out.table(&["STEP", "ACTION", "TARGET", "ACCOUNT", "SECRET"], &rows);
}
