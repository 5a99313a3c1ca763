//! Running a stored plan: prove who is asking, gate, execute, checkpoint.
//! Shared by `apply`, the one-shot commands and the respond pipeline; the
//! front ends print what [`Executed`] says.

#[cfg(feature = "cli")]
use std::collections::HashMap;
#[cfg(feature = "cli")]
use std::sync::Arc;

use crate::engine::ApplyReport;
#[cfg(feature = "cli")]
use crate::engine::{ApplyRequest, Engine, EngineConfig, SecretBag};
use crate::error::Error;
#[cfg(feature = "cli")]
use crate::gate::BreakGlass;
use crate::gate::{Principal, VerifiedApproval};
#[cfg(feature = "cli")]
use crate::plan::now_ms;
use crate::plan::Plan;
use crate::policy::{AuthRequest, PolicyGate};
#[cfg(feature = "cli")]
use crate::state::ObjectKind;

use super::{stored_signatures, Workspace};

/// How to run a plan (the command line's `--as`, `--break-glass`,
/// `--reason`, `--concurrency`, `--rate`).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Act as this principal (default: the plan's requester).
    pub requester: Option<String>,
    pub break_glass: bool,
    /// Why break-glass is needed (recorded).
    pub reason: Option<String>,
    /// Steps in flight at once.
    pub concurrency: usize,
    /// Operations per second per account: the cap of the adaptive rate, or
    /// `None` for the default ceiling (see `EngineConfig`).
    pub rate: Option<f64>,
    /// When the clock of time-to-dead started (the agent: the webhook's
    /// receipt); `None`: when the plan starts running.
    pub since: Option<std::time::Instant>,
    /// Counts the plan's steps as the engine finishes them (a progress bar
    /// on a terminal reads it); `None`: not counted.
    pub progress: Option<std::sync::Arc<std::sync::atomic::AtomicUsize>>,
}

/// Who is asking for a stored plan and which approvals count: the requester
/// is proven by a signature or an automation secret, or stays a claim.
pub struct Authenticated {
    pub principal: Principal,
    pub approvals: Vec<VerifiedApproval>,
    /// Why signatures did not count (`code`, message): printed as notes.
    pub rejected: Vec<(String, String)>,
}

pub fn authenticate_plan(
    ws: &Workspace,
    gate: &PolicyGate,
    id: &str,
    bytes: &[u8],
    plan: &Plan,
    claimed: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Authenticated, Error> {
    let signatures = stored_signatures(ws, id)?;
    Ok(match gate.policy() {
        Ok(policy) => {
            let auto_secret = policy.automation_secret(claimed);
            let auth = policy.authenticate(&AuthRequest {
                plan,
                plan_bytes: bytes,
                claimed_requester: claimed,
                signatures: &signatures,
                automation_secret: auto_secret.as_ref(),
                now,
            });
            Authenticated {
                principal: auth.principal,
                approvals: auth.approvals,
                rejected: auth
                    .rejected
                    .into_iter()
                    .map(|r| (r.code.to_string(), r.message))
                    .collect(),
            }
        }
        // A policy that does not load denies every step; the requester stays a claim.
        Err(_) => Authenticated {
            principal: Principal::claim(claimed, plan.requester.kind),
            approvals: vec![],
            rejected: vec![],
        },
    })
}

/// A plan run: the engine's report, who ran it, and the notes a front end
/// shows beside the report (a policy that failed to load, signatures that do
/// not count, a checkpoint that could not be written).
pub struct Executed {
    pub report: ApplyReport,
    pub principal: Principal,
    pub notes: Vec<String>,
}

#[cfg(feature = "cli")]
impl Workspace {
    /// Authenticate, gate and run a stored plan, then write a signed
    /// checkpoint of the audit log.
    pub async fn execute(
        &self,
        id: &str,
        bytes: &[u8],
        plan: &Plan,
        opts: &RunOptions,
        secrets: &SecretBag,
    ) -> Result<Executed, Error> {
        let gate = self.gate();
        let now = now_ms();
        let mut notes = Vec::new();
        let claimed = opts
            .requester
            .clone()
            .unwrap_or_else(|| plan.requester.name.clone());
        if let Err(e) = gate.policy() {
            notes.push(format!("warning: {}", e.summary()));
        }
        let Authenticated {
            principal,
            approvals,
            rejected,
        } = authenticate_plan(self, &gate, id, bytes, plan, &claimed, now)?;
        for (code, message) in &rejected {
            tracing::debug!(code = code.as_str(), "proof not counted: {message}");
            // Name what was rejected: an automation secret is not a signature.
            let what = if code.starts_with("secret-") {
                "the automation secret"
            } else {
                "a signature"
            };
            notes.push(format!("note: {what} does not count ({code}): {message}"));
        }
        let break_glass = if opts.break_glass {
            Some(BreakGlass {
                reason: opts.reason.clone().unwrap_or_default(),
            })
        } else {
            None
        };
        // Restore steps get the snapshot they undo.
        let mut restore_evidence = HashMap::new();
        for s in &plan.steps {
            if let Some(h) = s.param_str("evidence_hash") {
                let b = self
                    .store
                    .get(ObjectKind::Evidence, &format!("{h}.json"))?
                    .ok_or_else(|| {
                        Error::failed(format!(
                            "evidence `{h}` for step `{}` is missing from the state dir",
                            s.id
                        ))
                    })?;
                // The name is the SHA-256 of the snapshot's bytes: a snapshot
                // edited since it was taken no longer has it, and restoring
                // from it would apply someone else's idea of the prior state.
                if crate::plan::sha256_hex(&b) != h {
                    return Err(Error::failed(format!(
                        "evidence `{h}` for step `{}` was modified after it was taken (its bytes no longer hash to its name): nothing was restored",
                        s.id
                    ))
                    .hint("restore the snapshot from a backup of the state directory, or undo the change by hand; `cordon report` lists the evidence"));
                }
                let v: serde_json::Value = serde_json::from_slice(&b)
                    .map_err(|e| Error::failed(format!("evidence `{h}`: {e}")))?;
                restore_evidence.insert(s.id.clone(), v);
            }
        }
        // The halt switch and the automation principals' limits, for this run.
        let gate = gate.with_bounds(
            self.bounds(principal.kind == crate::plan::PrincipalKind::Automation)
                .await?,
        );
        let github_probe = self.probe_allowed(id, plan, &gate, &principal, &approvals, now)?;
        let registry = self.registry_for(plan, github_probe).await?;
        let config = EngineConfig {
            concurrency: opts.concurrency.max(1),
            ..EngineConfig::default()
        }
        .with_rate_cap(opts.rate);
        let engine = Engine::new(
            self.store(),
            self.log.clone(),
            Arc::new(gate) as Arc<PolicyGate>,
            registry,
            config,
        );
        let report = engine
            .apply(&ApplyRequest {
                plan_id: id,
                plan,
                requester: &principal,
                approvals: &approvals,
                break_glass: break_glass.as_ref(),
                secrets,
                restore_evidence: &restore_evidence,
                now,
                since: opts.since,
                steps_done: opts.progress.as_deref(),
            })
            .await?;
        // Every plan run ends with a signed checkpoint of the audit log. The
        // run's records are already durable, so a checkpoint that cannot be
        // written is reported, not turned into a failed run.
        // A shared log's checkpoint is kept beside it in the store.
        if let Err(e) = crate::audit::checkpoint::write_for(&self.log, &self.home) {
            tracing::warn!("audit checkpoint not written: {e}");
            notes.push(format!("warning: audit checkpoint not written: {e}"));
        }
        Ok(Executed {
            report,
            principal,
            notes,
        })
    }

    /// Ask the policy whether cordon may identify leaked GitHub tokens with
    /// `GET /user` (it shows in the owner's logs). The decision is recorded.
    pub(crate) fn probe_allowed(
        &self,
        id: &str,
        plan: &Plan,
        gate: &PolicyGate,
        principal: &Principal,
        approvals: &[VerifiedApproval],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, Error> {
        use crate::gate::{Gate, GateInput};
        let Some(step) = plan.steps.iter().find(|s| {
            matches!(
                s.action,
                cordon_connector::Action::GithubRevokeToken
                    | cordon_connector::Action::GithubRevokeInstallationToken
            )
        }) else {
            return Ok(false);
        };
        let probe = cordon_connector::PlanStep {
            id: format!("{}-probe", step.id),
            action: cordon_connector::Action::GithubProbeToken,
            target: step.target.clone(),
            secret: step.secret.clone(),
            params: Default::default(),
        };
        let decision = gate.decide(&GateInput {
            plan_id: id,
            plan,
            step: &probe,
            requester: principal,
            approvals,
            break_glass: None,
            now,
        });
        let mut d = crate::audit::RecordDraft::new(crate::audit::Kind::Decision, principal.clone());
        d.plan = Some(id.to_owned());
        d.incident = plan.incident.clone();
        d.action = Some(probe.action.id().to_owned());
        d.target = Some(probe.target.clone());
        d.message = Some("may cordon identify leaked GitHub tokens with GET /user?".into());
        let allow = decision.is_allow();
        d.decision = Some(decision);
        self.log.append(d)?;
        Ok(allow)
    }
}
