//! Writing plans into the workspace, and what the gate would say of them.

use cordon_connector::PlanStep;

use crate::audit::payload::PlanPayload;
use crate::audit::{Kind, RecordDraft};
use crate::error::Error;
use crate::gate::{BreakGlass, Decision, Gate, GateInput, Principal};
use crate::plan::{
    now_ms, plan_id, sha256_hex, Plan, PlanMeta, PrincipalKind, Requester, PLAN_VERSION,
};
use crate::state::{ObjectKind, Store};

use super::{attachable, sign_and_store, Workspace};

impl Workspace {
    /// Write a plan: canonical bytes into the store, a `plan` audit record, and
    /// the requester's signature when `meta.key` is given.
    pub fn write_plan(
        &self,
        meta: &PlanMeta,
        steps: Vec<PlanStep>,
    ) -> Result<(String, Vec<u8>, Plan), Error> {
        let name = meta.requester_name();
        let kind = PrincipalKind::of_name(&name);
        let incident = attachable(self, meta.incident.as_deref())?;
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
        plan.validate().map_err(|e| Error::failed(e.to_string()))?;
        let bytes = plan
            .to_canonical_bytes()
            .map_err(|e| Error::failed(e.to_string()))?;
        let id = plan_id(&bytes);
        self.home
            .put_new(ObjectKind::Plan, &format!("{id}.json"), &bytes)?;
        let mut d = RecordDraft::new(Kind::Plan, Principal::claim(&name, kind));
        d.plan = Some(id.clone());
        d.incident = plan.incident.clone();
        d.message = plan.reason.clone();
        d.data = Some(
            serde_json::to_value(PlanPayload {
                sha256: sha256_hex(&bytes),
                steps: plan.steps.len(),
                severity: plan.severity,
                source: plan.source,
            })
            .map_err(|e| Error::failed(format!("cannot encode the plan record: {e}")))?,
        );
        self.log.append(d)?;
        if let Some(key) = &meta.key {
            sign_and_store(self, &id, &bytes, key, Some(&name))?;
        }
        Ok((id, bytes, plan))
    }

    /// What the gate would decide for each step if the plan's requester ran
    /// it now, unproven and unapproved (a dry run: nothing is recorded).
    pub fn dry_run_decisions(&self, id: &str, plan: &Plan) -> Vec<(String, Decision)> {
        let gate = self.gate();
        let who = Principal::claim(&plan.requester.name, plan.requester.kind);
        plan.steps
            .iter()
            .map(|s| {
                let d = gate.decide(&GateInput {
                    plan_id: id,
                    plan,
                    step: s,
                    requester: &who,
                    approvals: &[],
                    break_glass: None::<&BreakGlass>,
                    now: now_ms(),
                });
                (s.id.clone(), d)
            })
            .collect()
    }
}
