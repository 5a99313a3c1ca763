use chrono::{TimeZone, Utc};

use super::events::parse_due;
use super::replay::normalise_id;

#[test]
fn due_times_are_rfc3339_or_a_delay_and_anything_else_is_refused_by_name() {
    let now = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
    assert_eq!(
        parse_due("45m", now).unwrap(),
        Utc.with_ymd_and_hms(2026, 11, 22, 10, 45, 0).unwrap()
    );
    assert_eq!(
        parse_due("2h", now).unwrap(),
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
    );
    assert_eq!(
        parse_due("2026-11-23T08:00:00Z", now).unwrap(),
        Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap()
    );
    for bad in ["soon", "2w", "h", "", "99999999999999999999d"] {
        let e = parse_due(bad, now).unwrap_err();
        assert!(e.contains(&format!("`{bad}`")), "{e}");
    }
}

#[test]
fn incident_ids_accept_lowercase_and_bare_numbers() {
    assert_eq!(normalise_id("inc-3"), "INC-3");
    assert_eq!(normalise_id("3"), "INC-3");
    assert_eq!(normalise_id("INC-12"), "INC-12");
    assert_eq!(normalise_id("nope"), "nope");
}
