//! Which incident a plan or an event belongs to, replayed from the audit log.

use crate::audit::Record;
use crate::error::Error;
use crate::incident::{replay, Incident, IncidentState, Ledger, Objects};
use crate::plan::sha256_hex;
use crate::state::{ObjectKind, Store};

use super::Workspace;

/// The immutable objects the log names, read from the state directory.
pub struct StateObjects<'a>(pub &'a Workspace);

impl Objects for StateObjects<'_> {
    fn plan(&self, id: &str) -> Result<crate::plan::Plan, String> {
        self.0
            .load_plan(id)
            .map(|(_, _, p)| p)
            .map_err(|e| e.message)
    }

    fn evidence(&self, hash: &str) -> Result<(), String> {
        match self
            .0
            .home
            .get(ObjectKind::Evidence, &format!("{hash}.json"))
        {
            Ok(Some(b)) if sha256_hex(&b) == hash => Ok(()),
            Ok(Some(_)) => Err("MODIFIED: the stored bytes no longer hash to this value".into()),
            Ok(None) => Err("MISSING from the state directory".into()),
            Err(e) => Err(format!("unreadable: {e}")),
        }
    }
}

pub fn ledger_of(ws: &Workspace, records: &[Record]) -> Ledger {
    replay(records, &StateObjects(ws))
}

pub fn load_ledger(ws: &Workspace) -> Result<Ledger, Error> {
    let records = ws.log.read_all()?;
    Ok(ledger_of(ws, &records))
}

/// The incident meant: the one named (`--incident`, `CORDON_INCIDENT`, or
/// the positional id), else the only open one.
pub fn resolve<'l>(ledger: &'l Ledger, named: Option<&str>) -> Result<&'l Incident, Error> {
    if let Some(id) = named {
        return ledger.get(id).ok_or_else(|| {
            let known: Vec<&str> = ledger.incidents.iter().map(|i| i.id.as_str()).collect();
            Error::failed(format!("no incident `{id}` in the audit log")).hint(
                if known.is_empty() {
                    "no incident was opened yet: `cordon incident open --title T --severity S`"
                        .to_owned()
                } else {
                    format!(
                        "known incidents: {} (`cordon incident list`)",
                        known.join(", ")
                    )
                },
            )
        });
    }
    let open: Vec<&Incident> = ledger.open().collect();
    match open.as_slice() {
        [one] => Ok(one),
        [] => Err(Error::usage("no incident is open and none was named").hint(
            "open one with `cordon incident open --title T --severity S`, or name a closed one",
        )),
        _ => Err(
            Error::usage(format!("{} incidents are open: name one", open.len())).hint(format!(
                "pass `--incident ID` or set CORDON_INCIDENT (open: {})",
                open.iter()
                    .map(|i| i.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        ),
    }
}

/// The incident a plan (or a scanner finding) may attach to: one that
/// exists and is open, under its canonical id. A typo would otherwise
/// orphan the plan's steps.
pub fn attachable(ws: &Workspace, named: Option<&str>) -> Result<Option<String>, Error> {
    let Some(named) = named else { return Ok(None) };
    let ledger = load_ledger(ws)?;
    let inc = resolve(&ledger, Some(named))?;
    ensure_open(inc)?;
    Ok(Some(inc.id.clone()))
}

pub fn ensure_open(inc: &Incident) -> Result<(), Error> {
    if inc.state == IncidentState::Closed {
        return Err(Error::failed(format!(
            "incident {} is closed: nothing more can be recorded on it",
            inc.id
        ))
        .hint("open a new incident with `cordon incident open`, or record a note elsewhere"));
    }
    Ok(())
}
