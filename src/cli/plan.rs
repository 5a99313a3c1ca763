//! `cordon plan ...`: write, show and list plans.

#[cfg(feature = "test-connector")]
use std::collections::BTreeMap;

use clap::Subcommand;
#[cfg(feature = "test-connector")]
use cordon_connector::{Action, PlanStep, Provider, Target};

use super::context::Context;
use super::error::{CmdResult, Exit};
use super::output::Out;
use crate::plan::Plan;
#[cfg(feature = "test-connector")]
use crate::plan::PlanMeta;
use crate::state::{ObjectKind, Store};

#[derive(Subcommand, Debug)]
pub enum PlanCommand {
    /// Plan containment of items of the built-in test connector (touches
    /// nothing outside the state dir; for drills, demos and tests). Only in
    /// builds with the `test-connector` feature.
    #[cfg(feature = "test-connector")]
    Test {
        /// Item names.
        #[arg(required = true, value_parser = crate::text::free_text)]
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

pub async fn cmd_plan(ctx: &Context, out: &Out, cmd: PlanCommand) -> CmdResult {
    match cmd {
        #[cfg(feature = "test-connector")]
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
            let (id, _, plan) = ctx.write_plan(&meta, steps)?;
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

#[cfg(feature = "test-connector")]
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
