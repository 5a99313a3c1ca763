//! The decision memo: one Cedar evaluation per distinct request *as the
//! policies can see it*.
//!
//! A plan of 1,000 leaked keys asks the gate 1,000 times the same question
//! about targets that differ only in their id, which no shipped rule reads.
//! On a policy's second request (a command deciding once does not pay for
//! it), the policies' JSON form is read for every place where a condition or
//! scope looks at the request: which target attributes and tags, which
//! context attributes, or the target or context as a whole ([`Reads`]). A request's key ([`key`]) holds the action, the whole
//! requester (name, kind, proof, roles), what the schema checks of the request
//! depend on (the `RequestShape` facts) and the value of every attribute the
//! policies read (its absence included); two requests with the same key are
//! the same request to every policy, so Cedar's answer for one is its answer
//! for the other. An evaluation with an error is never kept (its message may
//! name the target); a schema that declares an enumerated entity type, a
//! template link, a slot or any JSON form this reading does not know turns the
//! memo off (every request evaluated), as does the reference way
//! (`Policy::rebuilding_entities_per_request`).
//!
//! Cedar evaluates a request from its principal, action, resource and context
//! and the entities it can reach from them and from the policies' literals.
//! Here the principal's entity is built from the requester alone (its name,
//! claimed kind and roles, all in the key), the roles and actions are the same
//! entities for every request, and the target's attributes, tags and the
//! context hold strings, numbers, booleans, sets and records of them: no
//! entity a policy could reach through them. The target itself (its uid, in
//! `==`, `in`, `is` or passed whole anywhere) and the context used whole put
//! all of it in the key. The tests
//! `memo_decides_as_rebuilding_for_policies_reading_the_target` and
//! `shared_entities_decide_as_rebuilding_them_per_request`, and the `policy`
//! fuzz target, compare with the reference way.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use cedar_policy::PolicySet;
use serde_json::Value;

use super::decide::{Case, Eval, RequestContext};

/// What the policies read of a request beyond its action and principal.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Reads {
    /// The target used as a value (`resource == …`, `resource in …`, a scope
    /// other than `is Target`, …): every part of it matters.
    pub target_whole: bool,
    pub target_attrs: BTreeSet<String>,
    /// A tag named by something other than a string literal.
    pub tags_all: bool,
    pub tags: BTreeSet<String>,
    pub context_whole: bool,
    pub context_attrs: BTreeSet<String>,
}

impl Reads {
    fn var(&mut self, name: &str) -> bool {
        match name {
            "resource" => self.target_whole = true,
            "context" => self.context_whole = true,
            "principal" | "action" => {}
            _ => return false,
        }
        true
    }

    fn attr(&mut self, var: &str, attr: &str) -> bool {
        match var {
            "resource" => {
                self.target_attrs.insert(attr.to_owned());
            }
            "context" => {
                self.context_attrs.insert(attr.to_owned());
            }
            "principal" | "action" => {}
            _ => return false,
        }
        true
    }
}

/// What `policies` read of a request, or `None` when one of them cannot be
/// read this way (a template, a slot, an unknown form): then no request is
/// answered from the memo.
pub(crate) fn reads_of(policies: &PolicySet) -> Option<Reads> {
    let mut r = Reads::default();
    for p in policies.policies() {
        if !p.is_static() {
            return None;
        }
        let json = p.to_json().ok()?;
        if !read_policy(&json, &mut r) {
            return None;
        }
    }
    // Read whole is every attribute read (and, for the target, every tag:
    // `key`), so the key lists them all.
    if r.target_whole {
        r.target_attrs
            .extend(TARGET_ATTRS.iter().map(|a| (*a).to_owned()));
    }
    if r.context_whole {
        r.context_attrs
            .extend(CONTEXT_ATTRS.iter().map(|a| (*a).to_owned()));
    }
    Some(r)
}

/// One policy's JSON form (`Policy::to_json`): its resource scope and its
/// conditions. The principal and action scopes need nothing: both are in
/// every key whole.
fn read_policy(json: &Value, r: &mut Reads) -> bool {
    let Some(scope) = json.get("resource") else {
        return false;
    };
    match scope.get("op").and_then(Value::as_str) {
        Some("All") => {}
        // `resource is T`: the resource is always a `Target`.
        Some("is") if scope.get("in").is_none() => {}
        _ => r.target_whole = true,
    }
    match json.get("conditions") {
        Some(Value::Array(c)) => c.iter().all(|c| match c.get("body") {
            Some(body) => read_expr(body, r),
            None => false,
        }),
        _ => false,
    }
}

/// `{"Var": v}` → `v`.
fn var_of(e: &Value) -> Option<&str> {
    match e {
        Value::Object(m) if m.len() == 1 => m.get("Var").and_then(Value::as_str),
        _ => None,
    }
}

/// Every read in an expression. Attribute access (`.`, `has`) and tag access
/// (`getTag`, `hasTag`) straight on a variable are read as what they are;
/// a variable anywhere else counts as read whole; everything else is walked
/// through (reading a literal as an expression can only add reads).
fn read_expr(e: &Value, r: &mut Reads) -> bool {
    match e {
        Value::Array(a) => a.iter().all(|x| read_expr(x, r)),
        Value::Object(m) => {
            if let Some((k, x)) = m.iter().next().filter(|_| m.len() == 1) {
                match (k.as_str(), x) {
                    ("Var", Value::String(v)) => return r.var(v),
                    ("Slot" | "Unknown", _) => return false,
                    ("." | "has", Value::Object(o)) if o.len() == 2 => {
                        let first = match o.get("attr") {
                            Some(Value::String(s)) => Some(s.as_str()),
                            Some(Value::Array(a)) => a.first().and_then(Value::as_str),
                            _ => None,
                        };
                        if let (Some(v), Some(attr)) = (o.get("left").and_then(var_of), first) {
                            return r.attr(v, attr);
                        }
                    }
                    ("getTag" | "hasTag", Value::Object(o)) if o.len() == 2 => {
                        if let (Some("resource"), Some(right)) =
                            (o.get("left").and_then(var_of), o.get("right"))
                        {
                            match right.get("Value").and_then(Value::as_str) {
                                Some(tag) if right.as_object().is_some_and(|m| m.len() == 1) => {
                                    r.tags.insert(tag.to_owned());
                                    return true;
                                }
                                _ => {
                                    r.tags_all = true;
                                    return read_expr(right, r);
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            m.values().all(|x| read_expr(x, r))
        }
        _ => true,
    }
}

/// Every attribute of the context cordon builds (`decide::context_pairs`).
pub(crate) const CONTEXT_ATTRS: [&str; 15] = [
    "severity",
    "severity_level",
    "source",
    "incident",
    "approvals",
    "decision_class",
    "owner_role",
    "backup_role",
    "escalate_after_minutes",
    "escalated",
    "minutes_since_created",
    "break_glass",
    "without_evidence",
    "hour",
    "weekday",
];

/// Every attribute of the target entity cordon builds.
const TARGET_ATTRS: [&str; 5] = ["provider", "kind", "id", "account", "environment"];

struct Key(Vec<u8>);

impl Key {
    fn str(&mut self, s: &str) {
        self.0.extend_from_slice(&(s.len() as u64).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn opt(&mut self, s: Option<&str>) {
        match s {
            Some(s) => {
                self.0.push(1);
                self.str(s);
            }
            None => self.0.push(0),
        }
    }
    fn num(&mut self, n: i64) {
        self.0.extend_from_slice(&n.to_le_bytes());
    }
    fn flag(&mut self, b: bool) {
        self.0.push(u8::from(b));
    }
    fn strs<'a>(&mut self, v: impl ExactSizeIterator<Item = &'a String>) {
        self.num(v.len() as i64);
        for s in v {
            self.str(s);
        }
    }

    fn context_attr(&mut self, c: &RequestContext, name: &str) {
        self.str(name);
        match name {
            "severity" => self.str(c.severity),
            "severity_level" => self.num(c.severity_level),
            "source" => self.str(c.source),
            "incident" => self.opt(c.incident.as_deref()),
            "approvals" => {
                let a = &c.approvals;
                self.num(a.count);
                self.strs(a.signers.iter());
                self.strs(a.roles.iter());
                self.num(a.distinct_roles);
                self.num(a.owner);
                self.num(a.backup);
            }
            "decision_class" => self.str(c.decision_class),
            "owner_role" => self.str(&c.owner_role),
            "backup_role" => self.opt(c.backup_role.as_deref()),
            "escalate_after_minutes" => self.num(c.escalate_after_minutes),
            "escalated" => self.flag(c.escalated),
            "minutes_since_created" => self.num(c.minutes_since_created),
            "break_glass" => self.flag(c.break_glass),
            "without_evidence" => self.flag(c.without_evidence),
            "hour" => self.num(c.hour),
            "weekday" => self.str(c.weekday),
            // Not in any context cordon builds: absent from every request.
            _ => self.0.push(0xff),
        }
    }

    fn target_attr(&mut self, case: &Case<'_>, name: &str) {
        let t = case.target;
        self.str(name);
        match name {
            "provider" => self.str(t.provider.as_str()),
            "kind" => self.str(&t.kind),
            "id" => self.str(&t.id),
            "account" => self.opt(t.account.as_deref()),
            "environment" => self.opt(t.environment.as_deref()),
            // Not an attribute of any target: absent from every request.
            _ => self.0.push(0xff),
        }
    }
}

/// The key of one request: two requests with the same key are the same to
/// every policy `reads` was taken from (see the module docs).
pub(crate) fn key(reads: &Reads, case: &Case<'_>, ctx: &RequestContext) -> Vec<u8> {
    let mut k = Key(Vec::with_capacity(256));
    k.str(case.action.id());
    let s = &case.subject;
    k.str(&s.name);
    k.flag(s.kind == crate::plan::PrincipalKind::Person);
    k.flag(s.verified);
    match &s.roles {
        Some(r) => {
            k.0.push(1);
            k.strs(r.iter());
        }
        None => k.0.push(0),
    }
    // What the schema checks depend on besides the requester and the action
    // (`decide::RequestShape`), and the booleans that choose the policy set.
    let t = case.target;
    k.flag(t.account.is_some());
    k.flag(t.environment.is_some());
    k.flag(t.tags.is_empty());
    k.flag(ctx.incident.is_some());
    k.flag(ctx.backup_role.is_some());
    k.flag(ctx.approvals.signers.is_empty());
    k.flag(ctx.approvals.roles.is_empty());
    k.flag(ctx.escalated);
    k.flag(case.break_glass);
    k.flag(case.without_evidence);
    // The target (its uid is `provider:kind/id`, all three among the
    // attributes read when it is read whole: `reads_of`).
    for a in &reads.target_attrs {
        k.target_attr(case, a);
    }
    if reads.target_whole || reads.tags_all {
        k.num(t.tags.len() as i64);
        for (name, v) in &t.tags {
            k.str(name);
            k.str(v);
        }
    } else {
        for name in &reads.tags {
            k.str(name);
            k.opt(t.tags.get(name).map(String::as_str));
        }
    }
    // The context.
    for a in &reads.context_attrs {
        k.context_attr(ctx, a);
    }
    k.0
}

/// At most this many answers are kept; when full the memo starts afresh
/// (a plan of many distinct targets costs evaluations, never memory).
const MAX_ENTRIES: usize = 4096;

/// The answers of one loaded policy, by request key.
#[derive(Debug)]
pub(crate) struct Memo {
    on: bool,
    /// Set by the first request: reading the policies costs about 0.1 ms a
    /// policy (Cedar parses each one's text again for its JSON form), more
    /// than a single evaluation, so it is done on the second request, not
    /// for a command that decides once.
    asked: AtomicBool,
    reads: OnceLock<Option<Reads>>,
    answers: Mutex<HashMap<Vec<u8>, Eval>>,
    hits: AtomicU64,
}

impl Memo {
    /// `on` false: every request evaluated.
    pub(crate) fn new(on: bool) -> Self {
        Memo {
            on,
            asked: AtomicBool::new(false),
            reads: OnceLock::new(),
            answers: Mutex::new(HashMap::new()),
            hits: AtomicU64::new(0),
        }
    }

    pub(crate) fn off(&mut self) {
        self.on = false;
    }

    /// The request's key, or `None` when the memo is off for this policy.
    pub(crate) fn key_of(
        &self,
        policies: &PolicySet,
        case: &Case<'_>,
        ctx: &RequestContext,
    ) -> Option<Vec<u8>> {
        if !self.on || !self.asked.swap(true, Ordering::Relaxed) {
            return None;
        }
        let reads = self.reads.get_or_init(|| reads_of(policies)).as_ref()?;
        Some(key(reads, case, ctx))
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<Eval> {
        let e = self.answers.lock().ok()?.get(key).cloned();
        if e.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        e
    }

    /// Keep an answer (one without errors only).
    pub(crate) fn put(&self, key: Vec<u8>, eval: &Eval) {
        if !eval.errors.is_empty() {
            return;
        }
        if let Ok(mut m) = self.answers.lock() {
            if m.len() >= MAX_ENTRIES {
                m.clear();
            }
            m.insert(key, eval.clone());
        }
    }

    /// Requests answered from the memo so far.
    pub(crate) fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    fn reads(text: &str) -> Option<Reads> {
        reads_of(&text.parse::<PolicySet>().unwrap())
    }

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn attribute_and_tag_reads_are_found_where_they_are() {
        let r = reads(
            r#"permit (principal is Person in Role::"x", action == Action::"a", resource is Target)
               when { resource.kind == "k" && resource has environment && context.approvals.owner >= 1
                      && resource.hasTag("team") && resource.getTag("team") == "t" }
               unless { context has incident.x };"#,
        )
        .unwrap();
        assert_eq!(r.target_attrs, set(&["environment", "kind"]));
        assert_eq!(r.context_attrs, set(&["approvals", "incident"]));
        assert_eq!(r.tags, set(&["team"]));
        assert!(!r.target_whole && !r.tags_all && !r.context_whole);
    }

    #[test]
    fn a_target_or_context_used_whole_is_read_whole() {
        for (text, target, tags, context) in [
            (
                r#"permit (principal, action, resource == Target::"a");"#,
                true,
                false,
                false,
            ),
            (
                r#"permit (principal, action, resource in Target::"a");"#,
                true,
                false,
                false,
            ),
            (
                r#"permit (principal, action, resource is Target in Target::"a");"#,
                true,
                false,
                false,
            ),
            (
                r#"permit (principal, action, resource) when { resource is Target };"#,
                true,
                false,
                false,
            ),
            (
                r#"permit (principal, action, resource) when { [resource].isEmpty() };"#,
                true,
                false,
                false,
            ),
            (
                r#"permit (principal, action, resource) when { resource.hasTag(context.source) };"#,
                false,
                true,
                false,
            ),
            (
                r#"permit (principal, action, resource) when { context == {} };"#,
                false,
                false,
                true,
            ),
            (
                r#"permit (principal, action, resource) when { context.approvals.owner > 0 };"#,
                false,
                false,
                false,
            ),
        ] {
            let r = reads(text).unwrap();
            assert_eq!(
                (r.target_whole, r.tags_all, r.context_whole),
                (target, tags, context),
                "{text}"
            );
        }
    }

    #[test]
    fn templates_and_unknown_forms_turn_the_memo_off() {
        // A template is asked only through its links, which are not static.
        let mut linked: PolicySet = r#"permit (principal == ?principal, action, resource);"#
            .parse()
            .unwrap();
        assert_eq!(reads_of(&linked), Some(Reads::default()));
        let template = linked.templates().next().unwrap().id().clone();
        let person: cedar_policy::EntityUid = r#"Person::"a""#.parse().unwrap();
        linked
            .link(
                template,
                cedar_policy::PolicyId::new("linked"),
                HashMap::from([(cedar_policy::SlotId::principal(), person)]),
            )
            .unwrap();
        assert!(reads_of(&linked).is_none());
        let mut r = Reads::default();
        assert!(!read_expr(
            &serde_json::json!({"Unknown": {"name": "x"}}),
            &mut r
        ));
        assert!(!read_expr(&serde_json::json!({"Var": "other"}), &mut r));
        assert!(!read_policy(&serde_json::json!({"conditions": []}), &mut r));
        assert!(!read_policy(
            &serde_json::json!({"resource": {"op": "All"}, "conditions": [{"kind": "when"}]}),
            &mut r
        ));
    }

    #[test]
    fn the_key_names_every_context_attribute_cordon_builds() {
        let built: BTreeSet<String> = super::super::decide::context_attribute_names()
            .into_iter()
            .collect();
        let listed: BTreeSet<String> = CONTEXT_ATTRS.into_iter().map(str::to_owned).collect();
        assert_eq!(built, listed);
    }
}
