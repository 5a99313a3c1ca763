//! `cordon pending`: plans with steps the policy refused for want of
//! approvals, and what each still needs, decided again now (approvals may
//! have arrived since). `cordon apply PLAN` continues such a plan where it
//! stopped: steps already done are not repeated.

use std::collections::BTreeMap;

use clap::Args;
use serde::Serialize;

use super::context::Context;
use super::error::{CmdResult, Exit};
use super::output::Out;
use crate::audit::Kind;
use crate::gate::{Gate, GateInput};
use crate::plan::now_ms;
use crate::workspace::authenticate_plan;

#[derive(Args, Debug)]
pub struct PendingArgs {
    /// Only plans of this incident.
    #[arg(long, env = "CORDON_INCIDENT")]
    pub incident: Option<String>,
}

#[derive(Debug, Default)]
struct StepState {
    /// The last decision's "what is missing", when it was a deny.
    waiting: Option<Vec<String>>,
    done: bool,
    /// Who asked, as the last decision recorded it.
    actor: String,
}

#[derive(Debug, Serialize)]
pub struct PendingStep {
    pub step: String,
    pub action: String,
    pub target: String,
    /// What the policy still needs now; empty when the step may run now.
    pub needs: Vec<String>,
    pub ready: bool,
}

#[derive(Debug, Serialize)]
pub struct PendingPlan {
    pub plan: String,
    pub created_at: String,
    pub requester: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
    /// Approvers whose signatures count so far.
    pub approved_by: Vec<String>,
    pub steps: Vec<PendingStep>,
}

pub fn cmd_pending(ctx: &Context, out: &Out, a: PendingArgs) -> CmdResult {
    let pending = find_pending(ctx, a.incident.as_deref())?;
    if out.json {
        out.json(&serde_json::json!({ "pending": pending }));
        return Ok(Exit::Ok);
    }
    if pending.is_empty() {
        out.line("no plan is waiting for approval");
        return Ok(Exit::Ok);
    }
    let mut rows = Vec::new();
    for p in &pending {
        for s in &p.steps {
            rows.push(vec![
                p.plan.clone(),
                p.incident.clone().unwrap_or_else(|| "-".into()),
                p.requester.clone(),
                s.step.clone(),
                s.action.clone(),
                s.target.clone(),
                if s.ready {
                    "nothing: ready to apply".into()
                } else {
                    s.needs.join("; ")
                },
            ]);
        }
    }
    out.table(
        &[
            "PLAN",
            "INCIDENT",
            "REQUESTER",
            "STEP",
            "ACTION",
            "TARGET",
            "STILL NEEDS",
        ],
        &rows,
    );
    for p in &pending {
        let approved = if p.approved_by.is_empty() {
            "no approvals yet".to_owned()
        } else {
            format!("approved by {}", p.approved_by.join(", "))
        };
        if p.steps.iter().all(|s| s.ready) {
            out.line(format!(
                "{}: {approved}; run `cordon apply {}`",
                p.plan, p.plan
            ));
        } else {
            out.line(format!(
                "{}: {approved}; approvers run `cordon approve {} --key ~/.ssh/id_ed25519`, then `cordon apply {}`",
                p.plan, p.plan, p.plan
            ));
        }
    }
    Ok(Exit::Ok)
}

/// Plans with at least one step whose last decision was a deny that named
/// what is missing, and no successful outcome since.
pub fn find_pending(
    ctx: &Context,
    incident: Option<&str>,
) -> Result<Vec<PendingPlan>, super::error::CommandError> {
    let records = ctx.log.read_all()?;
    let mut plans: BTreeMap<String, BTreeMap<String, StepState>> = BTreeMap::new();
    for r in &records {
        let (Some(plan), Some(step)) = (&r.plan, &r.step) else {
            continue;
        };
        let st = plans
            .entry(plan.clone())
            .or_default()
            .entry(step.clone())
            .or_default();
        match r.kind {
            Kind::Decision => {
                if let Some(d) = &r.decision {
                    st.actor = r.actor.name.clone();
                    st.waiting = d.awaits_people().then(|| d.missing.clone());
                }
            }
            Kind::Outcome if r.outcome.as_ref().is_some_and(|o| o.is_success()) => {
                st.done = true;
            }
            _ => {}
        }
    }
    // Decided again now, with the halt switch and the limits as they stand
    // (what-if only: nothing here is recorded or done).
    let gate = ctx
        .gate()
        .with_bounds(crate::policy::Bounds::new(ctx.home.root(), &records, None));
    let now = now_ms();
    let mut out = Vec::new();
    for (plan_id, steps) in plans {
        let waiting: Vec<(&String, &StepState)> = steps
            .iter()
            .filter(|(_, s)| s.waiting.is_some() && !s.done)
            .collect();
        let Some((_, first)) = waiting.first() else {
            continue;
        };
        let (id, bytes, plan) = ctx.load_plan(&plan_id)?;
        if incident.is_some() && plan.incident.as_deref() != incident {
            continue;
        }
        let auth = authenticate_plan(ctx, &gate, &id, &bytes, &plan, &first.actor, now)?;
        let mut rows = Vec::new();
        for (step_id, _) in &waiting {
            let Some(step) = plan.steps.iter().find(|s| &&s.id == step_id) else {
                continue;
            };
            let d = gate.decide(&GateInput {
                plan_id: &id,
                plan: &plan,
                step,
                requester: &auth.principal,
                approvals: &auth.approvals,
                break_glass: None,
                now,
            });
            rows.push(PendingStep {
                step: step.id.clone(),
                action: step.action.id().to_owned(),
                target: step.target.display_name(),
                ready: d.is_allow(),
                needs: if d.is_allow() {
                    vec![]
                } else if d.awaits_people() {
                    d.missing
                } else {
                    vec![format!(
                        "no approval can allow this any more (the policy now denies it): {}",
                        d.why()
                    )]
                },
            });
        }
        out.push(PendingPlan {
            plan: id,
            created_at: crate::timefmt::format(&plan.created_at),
            requester: auth.principal.name.clone(),
            incident: plan.incident.clone(),
            approved_by: auth.approvals.iter().map(|a| a.signer.clone()).collect(),
            steps: rows,
        });
    }
    Ok(out)
}
