//! `cordon task add | assign | block | unblock | done`: tasks of an incident.
//!
//! Manual tasks are `t1`, `t2`, ...; every step of a plan attached to the
//! incident is a task too (`PLAN:STEP`, derived from the engine's records).
//! A step task may get an owner or a blocker here, but only applying the
//! plan finishes it.

use clap::Subcommand;

use super::context::Context;
use super::error::{CmdResult, CommandError, Exit};
use super::incident::{
    append_checked, check_member, draft, ensure_open, event_value, recorded, resolve, roster,
    ActorArgs,
};
use super::output::Out;
use crate::audit::Kind;
use crate::incident::{parse_due, Incident, TaskEvent, TaskSource, TaskStatus};
use crate::plan::now_ms;

#[derive(Subcommand, Debug)]
pub enum TaskCommand {
    /// Add a task to the incident.
    Add {
        #[arg(value_parser = crate::text::free_text)]
        title: String,
        /// Who owns it (a person or automation principal of the roster).
        #[arg(long, value_parser = crate::text::free_text)]
        owner: Option<String>,
        /// When it is due: RFC 3339, or a delay like `45m`, `2h`, `1d`.
        #[arg(long)]
        due: Option<String>,
        #[arg(long, env = "CORDON_INCIDENT")]
        incident: Option<String>,
        #[command(flatten)]
        who: ActorArgs,
    },
    /// Give a task (manual or a plan step, `PLAN:STEP`) an owner.
    Assign {
        task: String,
        #[arg(value_parser = crate::text::free_text)]
        person: String,
        #[arg(long, env = "CORDON_INCIDENT")]
        incident: Option<String>,
        #[command(flatten)]
        who: ActorArgs,
    },
    /// Mark a task blocked, and say on what.
    Block {
        task: String,
        #[arg(long, value_parser = crate::text::free_text)]
        reason: String,
        #[arg(long, env = "CORDON_INCIDENT")]
        incident: Option<String>,
        #[command(flatten)]
        who: ActorArgs,
    },
    /// Lift a task's blocker.
    Unblock {
        task: String,
        #[arg(long, env = "CORDON_INCIDENT")]
        incident: Option<String>,
        #[command(flatten)]
        who: ActorArgs,
    },
    /// Mark a manual task done (plan steps finish when `cordon apply` runs them).
    Done {
        task: String,
        #[arg(long, env = "CORDON_INCIDENT")]
        incident: Option<String>,
        #[command(flatten)]
        who: ActorArgs,
    },
}

fn find<'i>(inc: &'i Incident, task: &str) -> Result<&'i crate::incident::Task, CommandError> {
    inc.task(task).map_err(|e| {
        CommandError::failed(e).hint(format!("see the tasks with `cordon status {}`", inc.id))
    })
}

fn not_finished(inc: &Incident, t: &crate::incident::Task, verb: &str) -> Result<(), CommandError> {
    if t.status.is_finished() {
        return Err(CommandError::failed(format!(
            "task {} of {} is already {}: nothing to {verb}",
            t.id,
            inc.id,
            t.status.as_str()
        )));
    }
    Ok(())
}

/// Record one change to an existing task of an open incident: `change`
/// checks the task (under the log lock) and says what event to record and
/// how to describe it.
fn change_task(
    ctx: &Context,
    out: &Out,
    incident: Option<&str>,
    task: &str,
    who: ActorArgs,
    mut change: impl FnMut(
        &Incident,
        &crate::incident::Task,
    ) -> Result<(TaskEvent, String), CommandError>,
) -> CmdResult {
    let actor = who.principal(ctx);
    let mut said = String::new();
    let rec = append_checked(ctx, |ledger| {
        let inc = resolve(ledger, incident)?;
        ensure_open(inc)?;
        let t = find(inc, task)?;
        let (ev, what) = change(inc, t)?;
        said = what;
        Ok(draft(
            Kind::Task,
            actor.clone(),
            &inc.id,
            event_value(&ev)?,
            format!("task {} {said}", t.id),
        ))
    })?;
    recorded(out, &rec, format!("task {task} {said}"));
    Ok(Exit::Ok)
}

pub fn cmd_task(ctx: &Context, out: &Out, cmd: TaskCommand) -> CmdResult {
    match cmd {
        TaskCommand::Add {
            title,
            owner,
            due,
            incident,
            who,
        } => {
            let title = title.trim().to_owned();
            if title.is_empty() {
                return Err(CommandError::usage("the task title is empty"));
            }
            if let Some(o) = &owner {
                check_member(&roster(ctx)?, ctx, o)?;
            }
            let due = due
                .as_deref()
                .map(|d| parse_due(d, now_ms()))
                .transpose()
                .map_err(CommandError::usage)?;
            let actor = who.principal(ctx);
            let rec = append_checked(ctx, |ledger| {
                let inc = resolve(ledger, incident.as_deref())?;
                ensure_open(inc)?;
                let n = inc
                    .tasks
                    .iter()
                    .filter(|t| matches!(t.source, TaskSource::Manual))
                    .count();
                let ev = TaskEvent::Add {
                    task: format!("t{}", n + 1),
                    title: title.clone(),
                    owner: owner.clone(),
                    due,
                };
                Ok(draft(
                    Kind::Task,
                    actor.clone(),
                    &inc.id,
                    event_value(&ev)?,
                    format!("task {} added: {title}", ev.task()),
                ))
            })?;
            let task = match crate::incident::Payload::read(&rec) {
                crate::incident::Payload::Task(ev) => ev.task().to_owned(),
                _ => String::new(),
            };
            recorded(
                out,
                &rec,
                format!(
                    "task {task} added to {}",
                    rec.incident.clone().unwrap_or_default()
                ),
            );
            Ok(Exit::Ok)
        }
        TaskCommand::Assign {
            task,
            person,
            incident,
            who,
        } => {
            check_member(&roster(ctx)?, ctx, &person)?;
            change_task(ctx, out, incident.as_deref(), &task, who, |inc, t| {
                not_finished(inc, t, "assign")?;
                Ok((
                    TaskEvent::Assign {
                        task: t.id.clone(),
                        owner: person.clone(),
                    },
                    format!("assigned to {person}"),
                ))
            })
        }
        TaskCommand::Block {
            task,
            reason,
            incident,
            who,
        } => {
            let reason = reason.trim().to_owned();
            if reason.is_empty() {
                return Err(CommandError::usage(
                    "`--reason` is empty: say what the task is waiting on",
                ));
            }
            change_task(ctx, out, incident.as_deref(), &task, who, |inc, t| {
                not_finished(inc, t, "block")?;
                Ok((
                    TaskEvent::Block {
                        task: t.id.clone(),
                        reason: reason.clone(),
                    },
                    format!("blocked: {reason}"),
                ))
            })
        }
        TaskCommand::Unblock {
            task,
            incident,
            who,
        } => change_task(ctx, out, incident.as_deref(), &task, who, |inc, t| {
            if t.blocker.is_none() {
                return Err(CommandError::failed(format!(
                    "task {} of {} is not blocked",
                    t.id, inc.id
                )));
            }
            Ok((
                TaskEvent::Unblock { task: t.id.clone() },
                "unblocked".into(),
            ))
        }),
        TaskCommand::Done {
            task,
            incident,
            who,
        } => change_task(ctx, out, incident.as_deref(), &task, who, |inc, t| {
            if let TaskSource::Step { plan, .. } = &t.source {
                return Err(CommandError::failed(format!(
                    "task {} is a step of plan {plan}: it is done when the step is applied and verified, not by hand",
                    t.id
                ))
                .hint(format!("run `cordon apply {plan}`")));
            }
            if t.status == TaskStatus::Done {
                return Err(CommandError::failed(format!(
                    "task {} of {} is already done",
                    t.id, inc.id
                )));
            }
            Ok((TaskEvent::Done { task: t.id.clone() }, "done".into()))
        }),
    }
}
