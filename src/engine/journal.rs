//! What the audit log already says about a plan's steps.

use std::collections::HashMap;

use cordon_connector::{Outcome, Verification};

use crate::audit::{Kind, Record};

#[derive(Debug, Default, Clone)]
pub struct StepJournal {
    pub intent: bool,
    pub outcome: Option<Outcome>,
    pub verification: Option<Verification>,
    pub evidence: Option<String>,
    /// Why the change went ahead without evidence (the intent's note).
    pub no_evidence: Option<String>,
    pub outcomes: usize,
}

#[derive(Debug, Default)]
pub struct Journal {
    steps: HashMap<String, StepJournal>,
}

impl Journal {
    pub fn for_plan(records: &[Record], plan_id: &str) -> Journal {
        let mut steps: HashMap<String, StepJournal> = HashMap::new();
        for r in records {
            if r.plan.as_deref() != Some(plan_id) {
                continue;
            }
            let Some(step) = &r.step else { continue };
            let j = steps.entry(step.clone()).or_default();
            match r.kind {
                Kind::Intent => {
                    j.intent = true;
                    j.no_evidence = r
                        .message
                        .as_deref()
                        .and_then(|m| m.find(super::NO_EVIDENCE).map(|i| &m[i..]))
                        .and_then(|m| m.strip_prefix(super::NO_EVIDENCE))
                        .map(str::to_owned);
                }
                Kind::Outcome => {
                    j.outcome = r.outcome.clone();
                    j.outcomes += 1;
                }
                Kind::Verify => j.verification = r.verification.clone(),
                Kind::Evidence => j.evidence = r.evidence.clone(),
                _ => {}
            }
        }
        Journal { steps }
    }

    pub fn step(&self, id: &str) -> Option<&StepJournal> {
        self.steps.get(id)
    }
}
