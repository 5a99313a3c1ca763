//! `finding` records: when a scanner first reported each credential (the
//! "detected" milestone of its time to contain).

use super::Building;
use crate::audit::payload::FindingPayload;
use crate::audit::Record;
use crate::incident::render::words;

pub(super) fn apply(b: &mut Building, r: &Record, p: FindingPayload) -> String {
    for id in p.findings.into_iter().filter_map(|f| f.credential) {
        b.found.entry(id).or_insert(r.time);
    }
    words::finding(r.message.as_deref())
}
