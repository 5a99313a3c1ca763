//! `task` records: manual tasks (`cordon task add`, ...) and the owner or
//! blocker of a step's task. Only the engine's records finish a step.

use super::{actor, task_mut, Blocker, Building, Task, TaskSource, TaskStatus};
use crate::audit::Record;
use crate::incident::events::TaskEvent;
use crate::incident::render::words;

pub(super) fn apply(b: &mut Building, r: &Record, ev: TaskEvent) -> String {
    let Building { inc, index, .. } = b;
    let who = actor(&r.actor);
    match ev {
        TaskEvent::Add {
            task,
            title,
            owner,
            due,
        } => {
            let what = words::task_added(&task, &title, owner.as_deref(), due.as_ref());
            index.insert(task.clone(), inc.tasks.len());
            inc.tasks.push(Task {
                id: task,
                title,
                source: TaskSource::Manual,
                owner,
                status: TaskStatus::Open,
                detail: None,
                waiting_for: vec![],
                blocker: None,
                due,
                created_at: r.time,
                created_by: who,
                updated_at: r.time,
            });
            what
        }
        TaskEvent::Assign { task, owner } => {
            if let Some(t) = task_mut(&mut inc.tasks, index, &task) {
                t.owner = Some(owner.clone());
                t.updated_at = r.time;
            }
            words::task_assigned(&task, &owner)
        }
        TaskEvent::Block { task, reason } => {
            if let Some(t) = task_mut(&mut inc.tasks, index, &task) {
                t.blocker = Some(Blocker {
                    reason: reason.clone(),
                    by: who,
                    since: r.time,
                });
                t.updated_at = r.time;
            }
            words::task_blocked(&task, &reason)
        }
        TaskEvent::Unblock { task } => {
            if let Some(t) = task_mut(&mut inc.tasks, index, &task) {
                t.blocker = None;
                t.updated_at = r.time;
            }
            words::task_unblocked(&task)
        }
        TaskEvent::Done { task } => {
            if let Some(t) = task_mut(&mut inc.tasks, index, &task) {
                t.status = TaskStatus::Done;
                t.blocker = None;
                t.updated_at = r.time;
            }
            words::task_done(&task)
        }
    }
}
