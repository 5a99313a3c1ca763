//! Incident tasks that a run finds for people: what containment cannot do
//! itself (an App key only its owner can delete, a door the leaked credential
//! opened that a person must close). One writer, so every source of such tasks
//! dedups and numbers them the same way as `cordon task add`.

use crate::audit::{Kind, RecordDraft};
use crate::error::Error;
use crate::gate::Principal;
use crate::workspace::Workspace;

/// Add a task titled `title` (optionally owned by `owner`) to the open incident
/// `incident`, unless a task with exactly that title is already on it: a re-run
/// (`cordon respond` on the same report) adds no second task. Returns whether a
/// task was added. The title is the whole instruction a person needs.
pub fn add_task(
    ws: &Workspace,
    incident: &str,
    requester: &Principal,
    title: &str,
    owner: Option<&str>,
) -> Result<bool, Error> {
    let ledger = crate::workspace::load_ledger(ws)?;
    if crate::workspace::resolve(&ledger, Some(incident))?
        .tasks
        .iter()
        .any(|t| t.title == title)
    {
        return Ok(false);
    }
    ws.log.append_with(|records| {
        let ledger = crate::workspace::ledger_of(ws, records);
        let inc = crate::workspace::resolve(&ledger, Some(incident))?;
        crate::workspace::ensure_open(inc)?;
        let n = inc
            .tasks
            .iter()
            .filter(|t| matches!(t.source, crate::incident::TaskSource::Manual))
            .count();
        let ev = crate::incident::TaskEvent::Add {
            task: format!("t{}", n + 1),
            title: title.to_owned(),
            owner: owner.map(str::to_owned),
            due: None,
        };
        let mut d = RecordDraft::new(Kind::Task, requester.clone());
        d.incident = Some(inc.id.clone());
        d.data = Some(
            serde_json::to_value(&ev)
                .map_err(|e| Error::failed(format!("cannot encode the task: {e}")))?,
        );
        d.message = Some(format!("task {} added: {title}", ev.task()));
        Ok::<_, Error>(d)
    })??;
    Ok(true)
}
