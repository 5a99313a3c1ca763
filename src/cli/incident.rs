//! `cordon incident open | list | show | close | assign`, and the helpers the
//! task, status and report commands share: who is acting, which incident is
//! meant, and replaying the log.

use clap::{Args, Subcommand};

use super::context::Context;
use super::error::{CmdResult, CommandError, Exit};
use super::output::Out;
use crate::audit::{Kind, Record, RecordDraft};
use crate::gate::Principal;
use crate::incident::{render_status, status_of, IncidentEvent, IncidentState, Ledger, Role};
use crate::plan::{now_ms, PrincipalKind, Severity};
use crate::policy::roster::Member;
use crate::policy::Roster;

/// Who records the event.
#[derive(Args, Debug, Clone)]
pub struct ActorArgs {
    /// Who is acting (default `$USER`). Recorded as an unverified claim,
    /// unless it is an automation principal presenting its secret.
    #[arg(long = "as", value_name = "NAME", env = "CORDON_AS", value_parser = crate::text::free_text)]
    pub actor: Option<String>,
}

impl ActorArgs {
    /// The actor as the audit record states it: a claim, or an automation
    /// principal proven by its configured secret (as `cordon apply` does).
    pub fn principal(&self, ctx: &Context) -> Principal {
        let name = self
            .actor
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "unknown".into());
        // A policy that does not load proves nobody: the name stays a claim.
        match ctx.gate().policy() {
            Ok(policy) => policy.actor(&name),
            Err(_) => Principal::claim(&name, PrincipalKind::Person),
        }
    }
}

pub use crate::workspace::{ensure_open, ledger_of, load_ledger, resolve};

/// The people holding a roster role, for "waiting for whom"; empty when the
/// policy does not load (the status must still show).
pub fn role_holders(ctx: &Context) -> impl Fn(&str) -> Vec<String> {
    let roster = ctx.gate().policy().ok().map(|p| p.roster().clone());
    move |role: &str| {
        roster
            .as_ref()
            .map(|r| {
                r.people
                    .iter()
                    .filter(|(_, p)| p.roles.iter().any(|x| x == role))
                    .map(|(n, _)| n.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub fn roster(ctx: &Context) -> Result<Roster, CommandError> {
    let gate = ctx.gate();
    match gate.policy() {
        Ok(p) => Ok(p.roster().clone()),
        Err(e) => Err(CommandError::new(
            Exit::PolicyInvalid,
            format!(
                "cannot check names against the roster: the policy in `{}` failed to load: {}",
                ctx.policy_dir.display(),
                e.summary()
            ),
        )
        .hint("run `cordon policy check` and fix what it names")),
    }
}

/// A name that may own a task: a person or automation principal of the roster.
pub fn check_member(roster: &Roster, ctx: &Context, name: &str) -> Result<(), CommandError> {
    if roster.member(name).is_some() {
        return Ok(());
    }
    Err(not_in_roster(roster, ctx, name))
}

fn not_in_roster(roster: &Roster, ctx: &Context, name: &str) -> CommandError {
    CommandError::failed(format!(
        "`{name}` is not in the roster (`{}`)",
        ctx.policy_dir.join("roster.toml").display()
    ))
    .hint(format!(
        "people in the roster: {}; add them under [people] in roster.toml",
        roster.people.keys().cloned().collect::<Vec<_>>().join(", ")
    ))
}

/// A person eligible for an incident role: in the roster, holding one of the
/// roster roles the incident role needs.
pub fn check_eligible(
    roster: &Roster,
    ctx: &Context,
    role: Role,
    name: &str,
) -> Result<(), CommandError> {
    let needs = role.roster_roles();
    let eligible: Vec<&str> = roster
        .people
        .iter()
        .filter(|(_, p)| p.roles.iter().any(|r| needs.contains(&r.as_str())))
        .map(|(n, _)| n.as_str())
        .collect();
    let needs_text = needs
        .iter()
        .map(|r| format!("`{r}`"))
        .collect::<Vec<_>>()
        .join(" or ");
    match roster.member(name) {
        None => Err(not_in_roster(roster, ctx, name)),
        Some(Member::Automation(_)) => Err(CommandError::failed(format!(
            "`{name}` is an automation principal: only people hold incident roles"
        ))
        .hint(eligible_hint(role, &eligible, &needs_text))),
        Some(Member::Person(p)) => {
            if p.roles.iter().any(|r| needs.contains(&r.as_str())) {
                Ok(())
            } else {
                Err(CommandError::failed(format!(
                    "`{name}` cannot be {}: it needs roster role {needs_text}, and `{name}` holds {}",
                    role.as_str(),
                    if p.roles.is_empty() {
                        "none".to_owned()
                    } else {
                        p.roles
                            .iter()
                            .map(|r| format!("`{r}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ))
                .hint(eligible_hint(role, &eligible, &needs_text)))
            }
        }
    }
}

fn eligible_hint(role: Role, eligible: &[&str], needs: &str) -> String {
    if eligible.is_empty() {
        format!(
            "nobody in the roster can be {}: give someone roster role {needs} in roster.toml",
            role.as_str()
        )
    } else {
        format!("eligible for {}: {}", role.as_str(), eligible.join(", "))
    }
}

/// Append an event whose validity depends on the log's current state; the
/// check runs under the log's lock (see `AuditLog::append_with`).
pub fn append_checked(
    ctx: &Context,
    build: impl FnOnce(&Ledger) -> Result<RecordDraft, CommandError>,
) -> Result<Record, CommandError> {
    ctx.log
        .append_with(|records| build(&ledger_of(ctx, records)))?
}

pub fn draft(
    kind: Kind,
    actor: Principal,
    incident: &str,
    data: serde_json::Value,
    message: String,
) -> RecordDraft {
    let mut d = RecordDraft::new(kind, actor);
    d.incident = Some(incident.to_owned());
    d.data = Some(data);
    d.message = Some(message);
    d
}

pub fn event_value<T: serde::Serialize>(v: &T) -> Result<serde_json::Value, CommandError> {
    serde_json::to_value(v).map_err(|e| CommandError::failed(format!("cannot encode event: {e}")))
}

#[derive(Subcommand, Debug)]
pub enum IncidentCommand {
    /// Open an incident; plans attach to it with `--incident ID` or CORDON_INCIDENT.
    Open {
        #[arg(long, value_parser = crate::text::free_text)]
        title: String,
        #[arg(long, value_enum, default_value = "high")]
        severity: Severity,
        #[command(flatten)]
        who: ActorArgs,
    },
    /// List incidents.
    List,
    /// Show an incident: roles, tasks, plans.
    Show {
        /// Incident id (default: CORDON_INCIDENT, else the only open incident).
        #[arg(env = "CORDON_INCIDENT")]
        id: Option<String>,
    },
    /// Close an incident with a summary.
    Close {
        #[arg(env = "CORDON_INCIDENT")]
        id: Option<String>,
        #[arg(long, value_parser = crate::text::free_text)]
        summary: String,
        #[command(flatten)]
        who: ActorArgs,
    },
    /// Give an incident role to a person of the roster.
    Assign {
        #[arg(value_enum)]
        role: Role,
        #[arg(value_parser = crate::text::free_text)]
        person: String,
        #[arg(long, env = "CORDON_INCIDENT")]
        incident: Option<String>,
        #[command(flatten)]
        who: ActorArgs,
    },
}

/// What an incident or task command prints: the event and its audit record.
pub fn recorded(out: &Out, rec: &Record, text: String) {
    if out.json {
        out.json(&serde_json::json!({
            "incident": rec.incident,
            "seq": rec.seq,
            "hash": rec.hash,
            "actor": rec.actor,
            "event": rec.data,
        }));
    } else {
        out.line(format!("{text} (audit record {})", rec.seq));
    }
}

pub fn cmd_incident(ctx: &Context, out: &Out, cmd: IncidentCommand) -> CmdResult {
    match cmd {
        IncidentCommand::Open {
            title,
            severity,
            who,
        } => {
            let title = title.trim().to_owned();
            if title.is_empty() {
                return Err(CommandError::usage("`--title` is empty: say what happened"));
            }
            let actor = who.principal(ctx);
            let ev = IncidentEvent::Open {
                title: title.clone(),
                severity,
            };
            let data = event_value(&ev)?;
            let rec = append_checked(ctx, |ledger| {
                let id = ledger.next_id();
                Ok(draft(
                    Kind::Incident,
                    actor,
                    &id,
                    data,
                    format!("opened `{title}` (severity {})", severity.as_str()),
                ))
            })?;
            let id = rec.incident.clone().unwrap_or_default();
            recorded(out, &rec, format!("opened incident {id}: {title}"));
            if !out.json {
                out.line(format!(
                    "next: `export CORDON_INCIDENT={id}`, `cordon incident assign commander PERSON`, `cordon status`"
                ));
            }
            Ok(Exit::Ok)
        }
        IncidentCommand::List => {
            let ledger = load_ledger(ctx)?;
            if out.json {
                let list: Vec<serde_json::Value> = ledger
                    .incidents
                    .iter()
                    .map(|i| {
                        serde_json::json!({
                            "id": i.id,
                            "title": i.title,
                            "severity": i.severity,
                            "state": i.state,
                            "opened_at": crate::timefmt::format(&i.opened_at),
                            "commander": i.role(Role::Commander),
                            "open_tasks": i.tasks.iter().filter(|t| !t.status.is_finished()).count(),
                        })
                    })
                    .collect();
                out.json(&list);
                return Ok(Exit::Ok);
            }
            let rows: Vec<Vec<String>> = ledger
                .incidents
                .iter()
                .map(|i| {
                    vec![
                        i.id.clone(),
                        format!("{:?}", i.state).to_lowercase(),
                        i.severity.as_str().to_owned(),
                        crate::timefmt::format(&i.opened_at),
                        i.role(Role::Commander).unwrap_or("-").to_owned(),
                        i.tasks
                            .iter()
                            .filter(|t| !t.status.is_finished())
                            .count()
                            .to_string(),
                        i.title.clone(),
                    ]
                })
                .collect();
            out.table(
                &[
                    "ID",
                    "STATE",
                    "SEVERITY",
                    "OPENED",
                    "COMMANDER",
                    "OPEN TASKS",
                    "TITLE",
                ],
                &rows,
            );
            Ok(Exit::Ok)
        }
        IncidentCommand::Show { id } => {
            let ledger = load_ledger(ctx)?;
            let inc = resolve(&ledger, id.as_deref())?;
            if out.json {
                out.json(inc);
                return Ok(Exit::Ok);
            }
            let now = now_ms();
            let mut st = status_of(inc, now);
            crate::incident::name_role_holders(&mut st.waiting, &role_holders(ctx));
            out.line(render_status(&st, now).trim_end());
            if !inc.plans.is_empty() {
                out.line("\nPLANS");
                let rows: Vec<Vec<String>> = inc
                    .plans
                    .iter()
                    .map(|p| {
                        vec![
                            p.id.clone(),
                            crate::timefmt::format(&p.at),
                            p.requester.clone(),
                            p.steps.to_string(),
                            p.reason.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                out.table(&["PLAN", "WRITTEN", "REQUESTER", "STEPS", "REASON"], &rows);
            }
            if let Some(s) = &inc.summary {
                out.line(format!("\nsummary: {s}"));
            }
            Ok(Exit::Ok)
        }
        IncidentCommand::Close { id, summary, who } => {
            let summary = summary.trim().to_owned();
            if summary.is_empty() {
                return Err(CommandError::usage(
                    "`--summary` is empty: say how the incident ended",
                ));
            }
            let actor = who.principal(ctx);
            let data = event_value(&IncidentEvent::Close {
                summary: summary.clone(),
            })?;
            let mut open_items = 0;
            let rec = append_checked(ctx, |ledger| {
                let inc = resolve(ledger, id.as_deref())?;
                if inc.state == IncidentState::Closed {
                    return Err(CommandError::failed(format!(
                        "incident {} is already closed ({})",
                        inc.id,
                        inc.closed_at
                            .as_ref()
                            .map(crate::timefmt::format)
                            .unwrap_or_default()
                    ))
                    .hint(format!("see it with `cordon report {}`", inc.id)));
                }
                open_items = inc.tasks.iter().filter(|t| !t.status.is_finished()).count();
                Ok(draft(
                    Kind::Incident,
                    actor,
                    &inc.id,
                    data,
                    format!("closed: {summary}"),
                ))
            })?;
            let id = rec.incident.clone().unwrap_or_default();
            recorded(out, &rec, format!("closed incident {id}"));
            if open_items > 0 && !out.json {
                out.line(format!(
                    "note: {open_items} task(s) were not done at closing; the report lists them as open items (`cordon report {id}`)"
                ));
            }
            Ok(Exit::Ok)
        }
        IncidentCommand::Assign {
            role,
            person,
            incident,
            who,
        } => {
            let roster = roster(ctx)?;
            check_eligible(&roster, ctx, role, &person)?;
            let actor = who.principal(ctx);
            let data = event_value(&IncidentEvent::Assign {
                role,
                person: person.clone(),
            })?;
            let rec = append_checked(ctx, |ledger| {
                let inc = resolve(ledger, incident.as_deref())?;
                ensure_open(inc)?;
                if inc.role(role) == Some(person.as_str()) {
                    return Err(CommandError::failed(format!(
                        "`{person}` already is {} of {}",
                        role.as_str(),
                        inc.id
                    )));
                }
                Ok(draft(
                    Kind::Incident,
                    actor,
                    &inc.id,
                    data,
                    format!("{person} is {}", role.as_str()),
                ))
            })?;
            recorded(
                out,
                &rec,
                format!(
                    "{person} is {} of {}",
                    role.as_str(),
                    rec.incident.clone().unwrap_or_default()
                ),
            );
            Ok(Exit::Ok)
        }
    }
}
