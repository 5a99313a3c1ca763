//! `incident` records: open, assign a role, close.

use super::{actor, Building, IncidentState};
use crate::audit::Record;
use crate::incident::events::IncidentEvent;
use crate::incident::render::words;

pub(super) fn apply(b: &mut Building, r: &Record, ev: IncidentEvent) -> String {
    let inc = &mut b.inc;
    match ev {
        // The incident itself was made from it when the replay met it.
        IncidentEvent::Open { title, severity } => words::opened(&title, severity),
        IncidentEvent::Assign { role, person } => {
            if let Some(slot) = inc.roles.iter_mut().find(|s| s.role == role) {
                slot.person = Some(person.clone());
                slot.since = Some(r.time);
                slot.assigned_by = Some(actor(&r.actor));
            }
            words::role_assigned(&person, role)
        }
        IncidentEvent::Close { summary } => {
            inc.state = IncidentState::Closed;
            inc.closed_at = Some(r.time);
            inc.closed_by = Some(actor(&r.actor));
            let what = words::closed(&summary);
            inc.summary = Some(summary);
            what
        }
    }
}
