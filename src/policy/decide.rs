//! The Cedar gate: one request per plan step, and what would change a deny.
//!
//! Principal: `Person::"name"` or `Automation::"name"` (with the roster's
//! roles as parents) when proven, `Unverified::"name"` (no roles) when only
//! claimed. Action: `Action::"<Action::id()>"`, a member of `contain` or
//! `restore`. Resource: `Target::"provider:kind/id"` with its attributes and
//! its tags as Cedar entity tags. Context: see `authority.cedarschema`.
//!
//! Fail closed: an error building the request or evaluating any policy is a
//! deny that carries the error, even if some permit matched.

use std::collections::{BTreeMap, BTreeSet};

use cedar_policy::{
    ActionConstraint, Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicySet,
    PrincipalConstraint, Request, RestrictedExpression,
};
use chrono::{DateTime, Datelike, Timelike, Utc};
use cordon_connector::{Action, DecisionClass, Target};
use serde::Serialize;

use super::reason::Reason;
use super::roster::{ClassDef, Member};
use super::Policy;
use crate::gate::{Decision, Effect, GateInput};
use crate::plan::{PrincipalKind, Severity, Source};

/// The requester as the gate sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subject {
    pub name: String,
    pub kind: PrincipalKind,
    pub verified: bool,
    /// Roles for a hypothetical principal (what-if probes); `None` means the
    /// roster's roles for `name`.
    pub roles: Option<Vec<String>>,
}

/// An approver: a name and the roster roles the name holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Approver {
    pub name: String,
    pub roles: BTreeSet<String>,
}

/// Everything one decision depends on.
#[derive(Debug, Clone)]
pub(crate) struct Case<'a> {
    pub subject: Subject,
    pub action: Action,
    pub target: &'a Target,
    pub severity: Severity,
    pub source: Source,
    pub incident: Option<&'a str>,
    pub approvers: Vec<Approver>,
    pub minutes: i64,
    pub now: DateTime<Utc>,
    pub break_glass: bool,
    /// The step's evidence snapshot could not be taken and the engine asks
    /// whether its change may go ahead without it (issue 16 item 7).
    pub without_evidence: bool,
}

/// The raw answer of one Cedar evaluation.
#[derive(Debug, Clone)]
pub(crate) struct Eval {
    pub allow: bool,
    pub policies: Vec<String>,
    pub errors: Vec<String>,
}

/// The approvals as the context presents them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalSummary {
    pub count: i64,
    pub signers: Vec<String>,
    pub roles: BTreeSet<String>,
    pub distinct_roles: i64,
    pub owner: i64,
    pub backup: i64,
}

/// The Cedar context of one request, as a plain record (also shown by
/// `explain`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestContext {
    pub severity: &'static str,
    pub severity_level: i64,
    pub source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
    pub approvals: ApprovalSummary,
    pub decision_class: &'static str,
    pub owner_role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_role: Option<String>,
    pub escalate_after_minutes: i64,
    pub escalated: bool,
    pub minutes_since_created: i64,
    pub break_glass: bool,
    /// True only when the engine asks whether a change may proceed although
    /// its evidence snapshot could not be taken.
    pub without_evidence: bool,
    pub hour: i64,
    pub weekday: &'static str,
}

pub(crate) fn class_name(a: Action) -> &'static str {
    match a.class() {
        DecisionClass::Contain => "contain",
        DecisionClass::Restore => "restore",
    }
}

fn severity_level(s: Severity) -> i64 {
    match s {
        Severity::Low => 1,
        Severity::Medium => 2,
        Severity::High => 3,
        Severity::Critical => 4,
    }
}

fn weekday(t: &DateTime<Utc>) -> &'static str {
    match t.weekday() {
        chrono::Weekday::Mon => "mon",
        chrono::Weekday::Tue => "tue",
        chrono::Weekday::Wed => "wed",
        chrono::Weekday::Thu => "thu",
        chrono::Weekday::Fri => "fri",
        chrono::Weekday::Sat => "sat",
        chrono::Weekday::Sun => "sun",
    }
}

/// The largest number of approvers that can each be credited to a different
/// role (bipartite matching, Kuhn's algorithm; the sets are tiny).
fn distinct_roles(approvers: &[Approver]) -> i64 {
    fn try_assign<'a>(
        i: usize,
        approvers: &'a [Approver],
        owner_of: &mut BTreeMap<&'a str, usize>,
        seen: &mut BTreeSet<&'a str>,
    ) -> bool {
        for r in &approvers[i].roles {
            if seen.insert(r.as_str()) {
                let prev = owner_of.get(r.as_str()).copied();
                if prev.is_none_or(|j| try_assign(j, approvers, owner_of, seen)) {
                    owner_of.insert(r.as_str(), i);
                    return true;
                }
            }
        }
        false
    }
    let mut owner_of = BTreeMap::new();
    let mut n = 0;
    for i in 0..approvers.len() {
        let mut seen = BTreeSet::new();
        if try_assign(i, approvers, &mut owner_of, &mut seen) {
            n += 1;
        }
    }
    n
}

pub(crate) fn summarize(
    approvers: &[Approver],
    class: &ClassDef,
    escalated: bool,
) -> ApprovalSummary {
    let has = |a: &Approver, r: &Option<String>| r.as_ref().is_some_and(|r| a.roles.contains(r));
    ApprovalSummary {
        count: approvers.len() as i64,
        signers: approvers.iter().map(|a| a.name.clone()).collect(),
        roles: approvers
            .iter()
            .flat_map(|a| a.roles.iter().cloned())
            .collect(),
        distinct_roles: distinct_roles(approvers),
        owner: approvers
            .iter()
            .filter(|a| a.roles.contains(&class.owner) || (escalated && has(a, &class.backup)))
            .count() as i64,
        backup: approvers.iter().filter(|a| has(a, &class.backup)).count() as i64,
    }
}

impl Policy {
    fn class_of(&self, a: Action) -> Result<&ClassDef, String> {
        let name = class_name(a);
        self.roster.class(name).ok_or_else(|| {
            format!("roster.toml has no decision class `{name}`: add [classes.{name}]")
        })
    }

    /// The approvers of `approvals`, with their roles, the requester and
    /// automation principals left out (the gate re-checks what
    /// `authenticate` already enforces) and each person once.
    pub(crate) fn approvers_of(&self, requester: &str, names: &[&str]) -> Vec<Approver> {
        let mut out: Vec<Approver> = Vec::new();
        for n in names {
            if *n == requester
                || out.iter().any(|a| a.name == *n)
                || matches!(self.roster.member(n), Some(Member::Automation(_)))
            {
                continue;
            }
            out.push(Approver {
                name: (*n).to_owned(),
                roles: self.roster.roles_of(n).iter().cloned().collect(),
            });
        }
        out
    }

    /// The principal type of a roster member's own requests ("" for a name
    /// not in the roster).
    fn member_type(&self, name: &str) -> &'static str {
        match self.roster.member(name) {
            Some(Member::Person(_)) => "Person",
            Some(Member::Automation(_)) => "Automation",
            None => "",
        }
    }

    pub(crate) fn context_of(&self, case: &Case<'_>) -> Result<RequestContext, String> {
        let class = self.class_of(case.action)?;
        let escalate = i64::from(class.escalate_after_minutes);
        let escalated = case.minutes >= escalate;
        Ok(RequestContext {
            severity: case.severity.as_str(),
            severity_level: severity_level(case.severity),
            source: case.source.as_str(),
            incident: case.incident.map(str::to_owned),
            approvals: summarize(&case.approvers, class, escalated),
            decision_class: class_name(case.action),
            owner_role: class.owner.clone(),
            backup_role: class.backup.clone(),
            escalate_after_minutes: escalate,
            escalated,
            minutes_since_created: case.minutes,
            break_glass: case.break_glass,
            without_evidence: case.without_evidence,
            hour: i64::from(case.now.hour()),
            weekday: weekday(&case.now),
        })
    }

    /// One Cedar evaluation, or its answer to the same request as the
    /// policies see it (`memo`).
    pub(crate) fn evaluate(&self, case: &Case<'_>) -> Eval {
        let failed = |err| Eval {
            allow: false,
            policies: vec![],
            errors: vec![err],
        };
        let ctx = match self.context_of(case) {
            Ok(c) => c,
            Err(err) => return failed(err),
        };
        let key = self.memo.key_of(&self.policies, case, &ctx);
        if let Some(e) = key.as_deref().and_then(|k| self.memo.get(k)) {
            return e;
        }
        let e = self.evaluate_inner(case, ctx).unwrap_or_else(failed);
        if let Some(k) = key {
            self.memo.put(k, &e);
        }
        e
    }

    fn evaluate_inner(&self, case: &Case<'_>, ctx: RequestContext) -> Result<Eval, String> {
        let s = &case.subject;
        let roles: Vec<String> = match (&s.roles, s.verified) {
            (_, false) => vec![],
            (Some(r), true) => r.clone(),
            (None, true) => self.roster.roles_of(&s.name).to_vec(),
        };
        let role_uids: Vec<EntityUid> = roles
            .iter()
            .map(|r| uid("Role", r))
            .collect::<Result<_, _>>()?;
        let (ptype, kind_attr) = match (s.verified, s.kind) {
            (true, PrincipalKind::Person) => ("Person", None),
            (true, PrincipalKind::Automation) => ("Automation", None),
            (false, k) => (
                "Unverified",
                Some(match k {
                    PrincipalKind::Person => "person",
                    PrincipalKind::Automation => "automation",
                }),
            ),
        };
        let principal_uid = uid(ptype, &s.name)?;
        let mut pattrs = vec![("name".to_owned(), str_expr(&s.name))];
        if let Some(k) = kind_attr {
            pattrs.push(("claimed_kind".to_owned(), str_expr(k)));
        }
        let principal = Entity::new(
            principal_uid.clone(),
            pattrs.into_iter().collect(),
            role_uids.iter().cloned().collect(),
        )
        .map_err(|e| format!("cannot build the principal entity: {e}"))?;

        let t = case.target;
        let target_uid = uid("Target", &t.display_name())?;
        let mut tattrs = vec![
            ("provider".to_owned(), str_expr(t.provider.as_str())),
            ("kind".to_owned(), str_expr(&t.kind)),
            ("id".to_owned(), str_expr(&t.id)),
        ];
        if let Some(a) = &t.account {
            tattrs.push(("account".to_owned(), str_expr(a)));
        }
        if let Some(e) = &t.environment {
            tattrs.push(("environment".to_owned(), str_expr(e)));
        }
        let target = Entity::new_with_tags(
            target_uid.clone(),
            tattrs,
            [],
            t.tags.iter().map(|(k, v)| (k.clone(), str_expr(v))),
        )
        .map_err(|e| format!("cannot build the target entity: {e}"))?;

        // The schema checks of the request's entities and of the request:
        // skipped for a request of a shape (`RequestShape`) that has passed
        // them before, since their outcome depends on nothing else.
        let shape = RequestShape {
            action: case.action,
            principal_type: ptype,
            claimed_kind: kind_attr.is_some(),
            roles: !role_uids.is_empty(),
            account: t.account.is_some(),
            environment: t.environment.is_some(),
            tags: !t.tags.is_empty(),
            incident: ctx.incident.is_some(),
            backup_role: ctx.backup_role.is_some(),
            signers: ctx.approvals.signers.is_empty(),
            approver_roles: ctx.approvals.roles.is_empty(),
            bools: [ctx.escalated, ctx.break_glass, ctx.without_evidence],
        };
        let passed = !self.rebuild_entities && self.request_shapes.passed(&shape);
        let schema = if passed { None } else { Some(&self.schema) };

        let mut entities = vec![principal, target];
        entities.extend(role_uids.into_iter().map(Entity::with_uid));
        let store = if self.rebuild_entities {
            None
        } else {
            self.stores.get(&case.action)
        };
        let entities = match store {
            // The action's entities were taken from the schema once
            // (`action_stores`); only what this request brings is added (and
            // validated against the schema, as `from_entities` does below).
            Some(store) => store.clone().add_entities(entities, schema),
            // The reference way (benchmark and equivalence test only), and
            // any action without a store: everything built and validated per
            // request, the schema's action entities included.
            None => Entities::from_entities(entities, Some(&self.schema)),
        }
        .map_err(|e| format!("the request's entities do not match the schema: {e}"))?;

        let action_uid = uid("Action", case.action.id())?;
        let context = Context::from_pairs(context_pairs(&ctx))
            .map_err(|e| format!("cannot build the request context: {e}"))?;
        let request = Request::new(principal_uid, action_uid, target_uid, context, schema)
            .map_err(|e| format!("the request does not match the schema: {e}"))?;
        if !passed && !self.rebuild_entities {
            self.request_shapes.record(shape);
        }
        // Only the policies whose scope can match this action and principal
        // type (`scoped_sets`), narrower for a roster member (`member_sets`),
        // and without the policies led by `context.break_glass` when it is
        // false (`without_break_glass`); the reference way asks every policy.
        let calm = !case.break_glass;
        let member = match (&s.roles, s.verified) {
            (None, true) if ptype == self.member_type(&s.name) => Some(s.name.as_str()),
            _ => None,
        };
        let mine = member
            .filter(|_| !self.rebuild_entities)
            .and_then(|n| Some((n, self.members.get(n)?)))
            .map(|(n, cell)| {
                cell.get_or_init(|| member_sets(&self.scoped, &self.roster, n, &self.led))
            });
        let key = (case.action, ptype);
        let policies = if self.rebuild_entities {
            &self.policies
        } else {
            mine.and_then(|m| calm.then(|| m.calm.get(&case.action)).flatten())
                .or_else(|| mine.and_then(|m| m.any.get(&case.action)))
                .or_else(|| calm.then(|| self.calm_scoped.get(&key)).flatten())
                .or_else(|| self.scoped.get(&key))
                .unwrap_or(&self.policies)
        };
        let resp = self.authorizer.is_authorized(&request, policies, &entities);
        let errors: Vec<String> = resp
            .diagnostics()
            .errors()
            .map(|e| format!("evaluation error: {e}"))
            .collect();
        let mut policies: Vec<String> =
            resp.diagnostics().reason().map(|p| p.to_string()).collect();
        policies.sort();
        Ok(Eval {
            allow: errors.is_empty() && resp.decision() == cedar_policy::Decision::Allow,
            policies,
            errors,
        })
    }

    /// The full decision for one case: break-glass handling, errors, and what
    /// is missing after a deny.
    pub(crate) fn decide_case(&self, case: &Case<'_>) -> Decision {
        let mut decision = Decision {
            effect: Effect::Deny,
            policies: vec![],
            policy_hash: self.hash.clone(),
            errors: vec![],
            missing: vec![],
            break_glass: false,
            stopped: None,
            reasons: vec![],
        };
        // With break-glass requested, first ask without it: the allow "rests
        // on" break-glass only if it is not allowed otherwise.
        let mut plain = case.clone();
        plain.break_glass = false;
        let first = self.evaluate(&plain);
        if !first.errors.is_empty() {
            decision.policies = first.policies;
            for detail in first.errors {
                decision.push(Reason::EvaluationError { detail });
            }
            return decision;
        }
        if first.allow {
            decision.effect = Effect::Allow;
            decision.policies = first.policies;
            return decision;
        }
        if case.break_glass {
            let bg = self.evaluate(case);
            if !bg.errors.is_empty() {
                decision.policies = bg.policies;
                for detail in bg.errors {
                    decision.push(Reason::EvaluationError { detail });
                }
                return decision;
            }
            if bg.allow {
                decision.effect = Effect::Allow;
                decision.policies = bg.policies;
                decision.break_glass = true;
                return decision;
            }
            // Break-glass did not help: say why (its forbids), then what
            // would allow the step the ordinary way.
            let plain_forbids = self.forbids_in(&first);
            let mut missing: Vec<Reason> = self
                .forbids_in(&bg)
                .into_iter()
                .filter(|f| !plain_forbids.contains(f))
                .map(|f| Reason::BreakGlassForbidden { policy: f.clone() })
                .collect();
            missing.extend(self.missing(&plain, &first));
            missing.dedup();
            decision.policies = bg.policies;
            for r in missing {
                decision.push(r);
            }
            return decision;
        }
        decision.policies = first.policies.clone();
        for r in self.missing(&plain, &first) {
            decision.push(r);
        }
        decision
    }

    /// The gate: one decision for one plan step.
    pub fn decide(&self, input: &GateInput<'_>) -> Decision {
        self.decide_case(&self.case_of(input, false))
    }

    /// The evidence rule: may the step's change go ahead although its
    /// evidence snapshot could not be taken? The same request with
    /// `context.without_evidence` true: a policy refuses it with a `forbid`
    /// on that attribute (the shipped policy has none: it may).
    pub fn decide_without_evidence(&self, input: &GateInput<'_>) -> Decision {
        self.decide_case(&self.case_of(input, true))
    }

    fn case_of<'i>(&self, input: &GateInput<'i>, without_evidence: bool) -> Case<'i> {
        let names: Vec<&str> = input.approvals.iter().map(|a| a.signer.as_str()).collect();
        let approvers = self.approvers_of(&input.requester.name, &names);
        let minutes = (input.now - input.plan.created_at).num_minutes().max(0);
        Case {
            subject: Subject {
                name: input.requester.name.clone(),
                kind: input.requester.kind,
                verified: input.requester.verified,
                roles: None,
            },
            action: input.step.action,
            target: &input.step.target,
            severity: input.plan.severity,
            source: input.plan.source,
            incident: input.plan.incident.as_deref(),
            approvers,
            minutes,
            now: input.now,
            break_glass: input.break_glass.is_some(),
            without_evidence,
        }
    }

    /// Approvals of this plan from the contain (or restore) owner role, or its
    /// backup once escalated: a person's word, which lifts the stop
    /// conditions of an automation principal (`bounds`).
    pub(crate) fn owner_approvals(&self, input: &GateInput<'_>) -> i64 {
        let names: Vec<&str> = input.approvals.iter().map(|a| a.signer.as_str()).collect();
        let approvers = self.approvers_of(&input.requester.name, &names);
        let Ok(class) = self.class_of(input.step.action) else {
            return 0;
        };
        let minutes = (input.now - input.plan.created_at).num_minutes().max(0);
        let escalated = minutes >= i64::from(class.escalate_after_minutes);
        summarize(&approvers, class, escalated).owner
    }

    fn forbids_in<'e>(&self, eval: &'e Eval) -> Vec<&'e String> {
        eval.policies
            .iter()
            .filter(|id| {
                self.info
                    .iter()
                    .any(|p| &p.id == *id && p.effect == "forbid")
            })
            .collect()
    }

    /// What would turn this deny into an allow (worded by [`Reason`]'s
    /// `Display`). Found by asking Cedar again with the case changed one way
    /// at a time: the requester proven, time passed, more approvals,
    /// break-glass.
    pub(crate) fn missing(&self, case: &Case<'_>, eval: &Eval) -> Vec<Reason> {
        let mut out = Vec::new();
        let forbids = self.forbids_in(eval);
        for f in &forbids {
            out.push(Reason::Forbidden {
                policy: (*f).clone(),
            });
        }
        let Ok(class) = self.class_of(case.action) else {
            return out;
        };
        let mut found = false;

        // 1. The requester proven.
        if !case.subject.verified {
            let mut proven = case.clone();
            proven.subject.verified = true;
            if let Some(Member::Automation(_)) = self.roster.member(&case.subject.name) {
                proven.subject.kind = PrincipalKind::Automation;
            }
            let how = |then: Option<Reason>| Reason::RequesterUnproven {
                name: case.subject.name.clone(),
                automation: proven.subject.kind == PrincipalKind::Automation,
                then: then.map(Box::new),
            };
            if self.evaluate(&proven).allow {
                out.push(how(None));
                return out;
            }
            if let Some(need) = self.approval_needs(&proven, class) {
                out.push(how(Some(need)));
                return out;
            }
            let mut proven_bg = proven.clone();
            proven_bg.break_glass = true;
            if self.evaluate(&proven_bg).allow {
                out.push(how(Some(Reason::BreakGlassAvailable {
                    name: case.subject.name.clone(),
                    alternative: false,
                })));
                return out;
            }
            // Proving the requester alone does not help: probe the rest as is.
        }

        // 2. Time: approvals already given by the backup role count later.
        if !case.approvers.is_empty() {
            if let Some(backup) = &class.backup {
                let escalate = i64::from(class.escalate_after_minutes);
                if case.minutes < escalate
                    && case.approvers.iter().any(|a| a.roles.contains(backup))
                {
                    let mut later = case.clone();
                    later.minutes = escalate;
                    later.now = case.now + chrono::Duration::minutes(escalate - case.minutes);
                    if self.evaluate(&later).allow {
                        out.push(Reason::Escalation {
                            in_minutes: escalate - case.minutes,
                            backup_role: backup.clone(),
                            class: class_name(case.action).into(),
                            after_minutes: escalate,
                        });
                        found = true;
                    }
                }
            }
        }

        // 3. More approvals.
        if let Some(Reason::NeedsApprovals { count, need, .. }) = self.approval_needs(case, class) {
            out.push(Reason::NeedsApprovals {
                count,
                need,
                alternative: found,
            });
            found = true;
        }

        // 4. Break-glass.
        if !case.break_glass {
            let mut bg = case.clone();
            bg.break_glass = true;
            if self.evaluate(&bg).allow {
                out.push(Reason::BreakGlassAvailable {
                    name: case.subject.name.clone(),
                    alternative: found,
                });
                found = true;
            } else {
                let roles: Vec<&String> = self
                    .roster
                    .roles
                    .keys()
                    .filter(|r| {
                        let mut c = bg.clone();
                        c.subject = Subject {
                            name: format!("<a member of {r}>"),
                            kind: PrincipalKind::Person,
                            verified: true,
                            roles: Some(vec![(*r).clone()]),
                        };
                        self.evaluate(&c).allow
                    })
                    .collect();
                if !roles.is_empty() {
                    out.push(Reason::BreakGlassOnlyFor {
                        roles: roles.into_iter().cloned().collect(),
                        name: case.subject.name.clone(),
                        alternative: found,
                    });
                    found = true;
                }
            }
        }

        if !found {
            if forbids.is_empty() {
                out.push(Reason::NoRule {
                    action: case.action.id().into(),
                    target: case.target.display_name(),
                    name: case.subject.name.clone(),
                    verified: case.subject.verified,
                });
            } else {
                out.push(Reason::ForbidIsFinal);
            }
        }
        out
    }

    /// The smallest set of extra approvals that allows the case, worded
    /// ("needs 1 approval from role `security`; ..."), or `None`.
    fn approval_needs(&self, case: &Case<'_>, class: &ClassDef) -> Option<Reason> {
        let needs = |count: usize, need: String| Reason::NeedsApprovals {
            count,
            need,
            alternative: false,
        };
        let others: Vec<&String> = self
            .roster
            .roles
            .keys()
            .filter(|r| **r != class.owner)
            .collect();
        let hypo = |n: usize, roles: &[&String]| Approver {
            name: format!("<approver {n}>"),
            roles: roles.iter().map(|r| (*r).clone()).collect(),
        };
        let with = |extra: Vec<Approver>| {
            let mut c = case.clone();
            c.approvers.extend(extra);
            self.evaluate(&c).allow
        };
        let escalate = i64::from(class.escalate_after_minutes);
        let backup_phrase = |o: usize| -> String {
            let Some(backup) = &class.backup else {
                return String::new();
            };
            // Claim that the backup counts only if it really does.
            let mut c = case.clone();
            c.minutes = c.minutes.max(escalate);
            c.approvers.extend((0..o).map(|i| hypo(i, &[backup])));
            if !self.evaluate(&c).allow {
                return String::new();
            }
            if case.minutes >= escalate {
                format!(" or its backup role `{backup}` (escalated: {escalate} min have passed)")
            } else {
                format!(
                    "; backup role `{backup}` counts after {escalate} min (in {} min)",
                    escalate - case.minutes
                )
            }
        };
        for total in 1..=3usize {
            // Anyone at all.
            if with((0..total).map(|i| hypo(i, &[])).collect()) {
                return Some(needs(
                    total,
                    format!(
                        "needs {total} more approval{} from anyone in allowed_signers other than the requester",
                        plural(total)
                    ),
                ));
            }
            for o in (0..=total).rev() {
                let x = total - o;
                let owners: Vec<Approver> = (0..o).map(|i| hypo(i, &[&class.owner])).collect();
                let mut working: BTreeSet<&String> = BTreeSet::new();
                let mut any = false;
                for combo in combinations(&others, x) {
                    let mut extra = owners.clone();
                    extra.extend(combo.iter().enumerate().map(|(i, r)| hypo(o + i, &[*r])));
                    if with(extra) {
                        any = true;
                        working.extend(combo.iter().copied());
                    }
                }
                if !any {
                    continue;
                }
                let working: Vec<&String> = working.into_iter().collect();
                let mut s = String::from("needs ");
                if o > 0 {
                    s.push_str(&format!(
                        "{o} approval{} from role `{}`{}",
                        plural(o),
                        class.owner,
                        backup_phrase(o)
                    ));
                }
                if x > 0 {
                    if o > 0 {
                        s.push_str(", and ");
                    }
                    let more = if o > 0 || !case.approvers.is_empty() {
                        "more "
                    } else {
                        ""
                    };
                    if x == 1 {
                        s.push_str(&format!(
                            "1 {more}approval from role {}",
                            join_roles(&working)
                        ));
                    } else {
                        s.push_str(&format!(
                            "{x} {more}approvals from {x} distinct roles among {}",
                            join_roles(&working)
                        ));
                    }
                }
                if case.approvers.is_empty() {
                    return Some(needs(total, s));
                }
                return Some(needs(
                    total,
                    format!("{s} (beyond the {} counted)", case.approvers.len()),
                ));
            }
        }
        None
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn join_roles(roles: &[&String]) -> String {
    let quoted: Vec<String> = roles.iter().map(|r| format!("`{r}`")).collect();
    match quoted.len() {
        0 => String::new(),
        1 => quoted[0].clone(),
        n => format!("{} or {}", quoted[..n - 1].join(", "), quoted[n - 1]),
    }
}

/// All `k`-element combinations of `items`, in order.
fn combinations<T>(items: &[T], k: usize) -> Vec<Vec<&T>> {
    fn go<'a, T>(
        items: &'a [T],
        k: usize,
        start: usize,
        cur: &mut Vec<&'a T>,
        out: &mut Vec<Vec<&'a T>>,
    ) {
        if cur.len() == k {
            out.push(cur.clone());
            return;
        }
        for i in start..items.len() {
            cur.push(&items[i]);
            go(items, k, i + 1, cur, out);
            cur.pop();
        }
    }
    let mut out = Vec::new();
    go(items, k, 0, &mut Vec::new(), &mut out);
    out
}

/// Per action, the entities a request for it can look up besides its
/// principal, target and the principal's roles: the action's own entity and
/// every action entity named as a literal by a policy such a request may
/// ask (its `scoped_sets`), taken (with their ancestors) from the schema
/// once at load.
///
/// Cedar looks an entity up only for a value it evaluates: the request's
/// principal, action and resource, an entity literal of a policy, or an
/// entity held by an attribute, tag or the context, and cordon puts none in
/// those (strings, numbers, booleans, sets and records of them). The
/// reference way (`Entities::from_entities` with the schema) also holds the
/// schema's other actions, which no evaluation of these policies can reach,
/// so a store from here plus what the request brings (validated against the
/// schema the same way) gives every policy the same answer, errors included,
/// with a transitive-closure pass over a few entities instead of all the
/// actions. An action missing from the schema (or a schema whose actions do
/// not build) gets no store: its requests are built the reference way, with
/// its error. The test `shared_entities_decide_as_rebuilding_them_per_request`
/// and `stores_decide_as_rebuilding_for_unusual_policies` compare both ways.
pub(crate) fn action_stores(
    schema: &cedar_policy::Schema,
    policies: &PolicySet,
    scoped: &std::collections::HashMap<(Action, &'static str), PolicySet>,
) -> std::collections::HashMap<Action, Entities> {
    let mut out = std::collections::HashMap::new();
    let Ok(actions) = schema.action_entities() else {
        return out;
    };
    for a in Action::ALL {
        let Ok(auid) = uid("Action", a.id()) else {
            continue;
        };
        if actions.get(&auid).is_none() {
            continue;
        }
        // The policies a request for this action may ask (`scoped_sets`,
        // and the narrower `member_sets`, subsets of it); all of them when
        // a principal type has no scoped set.
        let sets: Option<Vec<&PolicySet>> = PRINCIPAL_TYPES
            .iter()
            .map(|t| scoped.get(&(*a, *t)))
            .collect();
        let asked: Vec<&cedar_policy::Policy> = match sets {
            Some(sets) => sets.into_iter().flat_map(|s| s.policies()).collect(),
            None => policies.policies().collect(),
        };
        let mut uids = vec![auid];
        for p in asked {
            for u in p.entity_literals() {
                if actions.get(&u).is_some() && !uids.contains(&u) {
                    uids.push(u);
                }
            }
        }
        let entities: Vec<Entity> = uids
            .iter()
            .filter_map(|u| actions.get(u).cloned())
            .collect();
        if let Ok(store) = Entities::from_entities(entities, None) {
            out.insert(*a, store);
        }
    }
    out
}

/// What the schema checks of a request's entities (`add_entities` with the
/// schema) and of the request (`Request::new` with the schema) can depend on,
/// for the requests cordon builds: the action; the principal's entity type,
/// whether it has a `claimed_kind` and whether it has roles (every parent is
/// a `Role`); which optional attributes the target has and whether it has
/// tags; which optional context attributes are present, whether each set in
/// the context is empty (an empty set has every set type) and the booleans.
/// The checks look at entity types (and, for an enumerated entity type, ids:
/// see [`RequestShapes`]), whether the action is declared and applies to the
/// principal's and resource's types, and whether each entity and the context
/// have the declared attributes (and tags) with values of the declared types;
/// every other value is a string or a number, whose type does not depend on
/// the value, and the resource is always a `Target`. So one request of a
/// shape passing both checks means every request of that shape does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct RequestShape {
    action: Action,
    principal_type: &'static str,
    claimed_kind: bool,
    roles: bool,
    account: bool,
    environment: bool,
    tags: bool,
    incident: bool,
    backup_role: bool,
    signers: bool,
    approver_roles: bool,
    bools: [bool; 3],
}

/// The request shapes that have passed the schema checks. A request of such
/// a shape is built without repeating them; any other request is checked
/// (and its shape recorded if it passes), so a request that fails a check
/// fails it every time, with the same error. Disabled (every request
/// checked) when the schema declares an enumerated entity type, where the
/// check also depends on the principal's and target's ids. The policies are
/// still evaluated for every request this lets through (the decision memo,
/// `memo`, is a separate step with its own argument).
#[derive(Debug)]
pub(crate) struct RequestShapes {
    passed: Option<std::sync::Mutex<std::collections::HashSet<RequestShape>>>,
}

impl RequestShapes {
    /// `schema_text` is the schema file (Cedar syntax) the schema was built
    /// from: any `enum` in it (an enumerated entity type, or only a word in a
    /// name or comment: this errs on the side of checking) turns the
    /// shortcut off.
    pub(crate) fn new(schema_text: &str) -> Self {
        let enumerated = schema_text
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .any(|w| w == "enum");
        RequestShapes {
            passed: (!enumerated).then(Default::default),
        }
    }

    /// Whether the shortcut is on (off for enumerated entity types).
    pub(crate) fn enabled(&self) -> bool {
        self.passed.is_some()
    }

    fn passed(&self, shape: &RequestShape) -> bool {
        self.passed
            .as_ref()
            .and_then(|m| m.lock().ok())
            .is_some_and(|s| s.contains(shape))
    }

    fn record(&self, shape: RequestShape) {
        if let Some(mut s) = self.passed.as_ref().and_then(|m| m.lock().ok()) {
            s.insert(shape);
        }
    }
}

/// The principal types a request can have (see the module docs).
const PRINCIPAL_TYPES: [&str; 3] = ["Person", "Automation", "Unverified"];

/// For each action and principal type, the policies whose scope can match a
/// request with them: Cedar evaluates every policy of the set it is given,
/// building each one's condition anew, and most of a policy set is about
/// other actions.
///
/// A policy left out is one whose condition Cedar would find false without
/// an error, whatever the request's other parts: its condition is
/// `principal-scope && (action-scope && (resource-scope && body))`, evaluated
/// left to right with `&&` short-circuiting, a scope constraint never errs,
/// and here either the action scope is false for this action (`==` another
/// action, or `in` groups the action is not in, by the schema's action
/// hierarchy, the same entities every request is evaluated with) or the
/// principal scope names another type (`is`, or `==` an entity of another
/// type). Such a policy neither allows, forbids nor errs, so the decision,
/// its deciding policies and its errors are the same without it. Anything
/// not sure (a policy that cannot be added to a set, an action missing from
/// the schema's hierarchy) keeps every policy for that key; the test
/// `shared_entities_decide_as_rebuilding_them_per_request` compares both
/// ways over the whole decision matrix.
pub(crate) fn scoped_sets(
    schema: &cedar_policy::Schema,
    policies: &PolicySet,
) -> std::collections::HashMap<(Action, &'static str), PolicySet> {
    let mut out = std::collections::HashMap::new();
    let Ok(actions) = schema.action_entities() else {
        return out;
    };
    for a in Action::ALL {
        let Ok(auid) = uid("Action", a.id()) else {
            continue;
        };
        let Some(ancestors) = actions.ancestors(&auid) else {
            continue;
        };
        let ancestors: Vec<&EntityUid> = ancestors.collect();
        let action_may = |c: ActionConstraint| match c {
            ActionConstraint::Any => true,
            ActionConstraint::Eq(u) => u == auid,
            ActionConstraint::In(us) => us.iter().any(|u| *u == auid || ancestors.contains(&u)),
        };
        for ptype in PRINCIPAL_TYPES {
            let Ok(t) = ptype.parse::<EntityTypeName>() else {
                continue;
            };
            let principal_may = |c: PrincipalConstraint| match c {
                PrincipalConstraint::Is(ty) | PrincipalConstraint::IsIn(ty, _) => ty == t,
                PrincipalConstraint::Eq(u) => *u.type_name() == t,
                PrincipalConstraint::Any | PrincipalConstraint::In(_) => true,
            };
            let mut set = PolicySet::new();
            let complete = policies.policies().all(|p| {
                !(action_may(p.action_constraint()) && principal_may(p.principal_constraint()))
                    || set.add(p.clone()).is_ok()
            });
            if complete {
                out.insert((*a, ptype), set);
            }
        }
    }
    out
}

/// For one roster member (a verified principal whose roles are the
/// roster's; built on the member's first request, not at load, since a
/// large policy times many members is costly to build), per action, the
/// policies of `scoped` for the member's principal type whose
/// principal scope can match this very principal: a scope `principal ==
/// E` with another `E`, or `principal in Role::"r"` (alone or after `is`)
/// for a role the member does not hold, is false for every request of the
/// member, without an error. The principal entity of such a request has the
/// member's roles as its parents and nothing else above it (a `Role` entity
/// is built without parents, the reference way too), so `principal in E`
/// holds exactly when `E` is the principal or one of those roles. As for
/// `scoped_sets`, a policy left out neither allows, forbids nor errs, so the
/// decision, its policies and its errors are the same without it; any key
/// for which a set cannot be built is left out (the request then asks the
/// scoped set). The tests `shared_entities_decide_as_rebuilding_them_per_request`
/// and `stores_decide_as_rebuilding_for_unusual_policies` compare both ways.
pub(crate) fn member_sets(
    scoped: &std::collections::HashMap<(Action, &'static str), PolicySet>,
    roster: &super::roster::Roster,
    name: &str,
    led: &[cedar_policy::PolicyId],
) -> MemberSets {
    let mut out = MemberSets::default();
    // The type the member's own requests have (`Policy::member_type`).
    let ptype = match roster.member(name) {
        Some(Member::Person(_)) => "Person",
        Some(Member::Automation(_)) => "Automation",
        None => return out,
    };
    let Ok(me) = uid(ptype, name) else {
        return out;
    };
    let Ok(roles) = roster
        .roles_of(name)
        .iter()
        .map(|r| uid("Role", r))
        .collect::<Result<Vec<_>, _>>()
    else {
        return out;
    };
    let is_me_or_above = |e: &EntityUid| *e == me || roles.contains(e);
    let may = |c: PrincipalConstraint| match c {
        PrincipalConstraint::Eq(e) => e == me,
        PrincipalConstraint::In(e) | PrincipalConstraint::IsIn(_, e) => is_me_or_above(&e),
        PrincipalConstraint::Any | PrincipalConstraint::Is(_) => true,
    };
    for ((action, t), set) in scoped {
        if *t != ptype {
            continue;
        }
        let mut narrowed = PolicySet::new();
        let complete = set
            .policies()
            .all(|p| !may(p.principal_constraint()) || narrowed.add(p.clone()).is_ok());
        if complete {
            if let Some(calm) = without_break_glass(&narrowed, led) {
                out.calm.insert(*action, calm);
            }
            out.any.insert(*action, narrowed);
        }
    }
    out
}

/// [`member_sets`] of one member, per action: `any` for every request, `calm`
/// for requests without break-glass ([`without_break_glass`]).
#[derive(Debug, Default)]
pub(crate) struct MemberSets {
    pub any: std::collections::HashMap<Action, PolicySet>,
    pub calm: std::collections::HashMap<Action, PolicySet>,
}

/// For requests without break-glass: a set of `scoped_sets` or
/// `member_sets` less the policies (`led`) whose first condition starts with
/// `context.break_glass` (`when { context.break_glass ... }` or `when {
/// context.break_glass && ... }`). Such a policy's condition is `scope &&
/// (context.break_glass && ...)`, evaluated left to right with `&&`
/// short-circuiting; the scope never errs and every request cordon builds
/// has the boolean `break_glass` in its context, so with it false the
/// condition is false without an error: the policy neither allows, forbids
/// nor errs, and the decision, its policies and its errors are the same
/// without it. `None` if the set cannot be rebuilt (the request then asks
/// the set with every policy).
pub(crate) fn without_break_glass(
    set: &PolicySet,
    led: &[cedar_policy::PolicyId],
) -> Option<PolicySet> {
    let mut out = PolicySet::new();
    for p in set.policies() {
        if !led.contains(p.id()) {
            out.add(p.clone()).ok()?;
        }
    }
    Some(out)
}

/// The ids of the policies led by `context.break_glass` (see
/// [`without_break_glass`]). A policy's JSON form is costly to build (about
/// a millisecond for 200 policies per load): only a policy whose text
/// mentions `break_glass` at all is read that way.
pub(crate) fn led_by_break_glass_ids(policies: &PolicySet) -> Vec<cedar_policy::PolicyId> {
    policies
        .policies()
        .filter(|p| p.to_string().contains("break_glass") && led_by_break_glass(p))
        .map(|p| p.id().clone())
        .collect()
}

/// True when the policy's first condition is a `when` whose leftmost
/// conjunct is `context.break_glass` (read from the policy's JSON form; a
/// policy that cannot be read that way is kept).
fn led_by_break_glass(p: &cedar_policy::Policy) -> bool {
    let Ok(json) = p.to_json() else {
        return false;
    };
    let Some(first) = json
        .get("conditions")
        .and_then(|c| c.as_array())
        .and_then(|c| c.first())
    else {
        return false;
    };
    if first.get("kind").and_then(|k| k.as_str()) != Some("when") {
        return false;
    }
    let mut e = first.get("body");
    while let Some(left) = e.and_then(|b| b.get("&&")).and_then(|a| a.get("left")) {
        e = Some(left);
    }
    let want = serde_json::json!({".": {"left": {"Var": "context"}, "attr": "break_glass"}});
    e == Some(&want)
}

fn uid(ty: &str, id: &str) -> Result<EntityUid, String> {
    let t: EntityTypeName = ty
        .parse()
        .map_err(|e| format!("bad entity type `{ty}`: {e}"))?;
    Ok(EntityUid::from_type_name_and_id(t, EntityId::new(id)))
}

fn str_expr(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_owned())
}

fn context_pairs(c: &RequestContext) -> Vec<(String, RestrictedExpression)> {
    let strs = |v: &mut dyn Iterator<Item = &String>| {
        RestrictedExpression::new_set(v.map(|s| str_expr(s)).collect::<Vec<_>>())
    };
    let a = &c.approvals;
    let approvals = RestrictedExpression::new_record([
        ("count".to_owned(), RestrictedExpression::new_long(a.count)),
        ("signers".to_owned(), strs(&mut a.signers.iter())),
        ("roles".to_owned(), strs(&mut a.roles.iter())),
        (
            "distinct_roles".to_owned(),
            RestrictedExpression::new_long(a.distinct_roles),
        ),
        ("owner".to_owned(), RestrictedExpression::new_long(a.owner)),
        (
            "backup".to_owned(),
            RestrictedExpression::new_long(a.backup),
        ),
    ]);
    let mut pairs = vec![
        ("severity".to_owned(), str_expr(c.severity)),
        (
            "severity_level".to_owned(),
            RestrictedExpression::new_long(c.severity_level),
        ),
        ("source".to_owned(), str_expr(c.source)),
        ("decision_class".to_owned(), str_expr(c.decision_class)),
        ("owner_role".to_owned(), str_expr(&c.owner_role)),
        (
            "escalate_after_minutes".to_owned(),
            RestrictedExpression::new_long(c.escalate_after_minutes),
        ),
        (
            "escalated".to_owned(),
            RestrictedExpression::new_bool(c.escalated),
        ),
        (
            "minutes_since_created".to_owned(),
            RestrictedExpression::new_long(c.minutes_since_created),
        ),
        (
            "break_glass".to_owned(),
            RestrictedExpression::new_bool(c.break_glass),
        ),
        (
            "without_evidence".to_owned(),
            RestrictedExpression::new_bool(c.without_evidence),
        ),
        ("hour".to_owned(), RestrictedExpression::new_long(c.hour)),
        ("weekday".to_owned(), str_expr(c.weekday)),
    ];
    if let Some(i) = &c.incident {
        pairs.push(("incident".to_owned(), str_expr(i)));
    }
    if let Some(b) = &c.backup_role {
        pairs.push(("backup_role".to_owned(), str_expr(b)));
    }
    // A record with unique keys cannot fail to build; if it ever did, the
    // missing attribute fails the request's schema check: a deny.
    if let Ok(a) = approvals {
        pairs.push(("approvals".to_owned(), a));
    }
    pairs
}

/// The attributes of a context with every optional one present.
#[cfg(test)]
pub(crate) fn context_attribute_names() -> Vec<String> {
    let ctx = RequestContext {
        severity: "high",
        severity_level: 3,
        source: "manual",
        incident: Some("INC-1".into()),
        approvals: ApprovalSummary {
            count: 0,
            signers: vec![],
            roles: BTreeSet::new(),
            distinct_roles: 0,
            owner: 0,
            backup: 0,
        },
        decision_class: "contain",
        owner_role: "security".into(),
        backup_role: Some("sre".into()),
        escalate_after_minutes: 15,
        escalated: false,
        minutes_since_created: 0,
        break_glass: false,
        without_evidence: false,
        hour: 3,
        weekday: "sun",
    };
    context_pairs(&ctx).into_iter().map(|(n, _)| n).collect()
}
