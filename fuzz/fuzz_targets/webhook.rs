//! Webhook payloads as `cordon agent` receives them: GitHub deliveries
//! (event name from the first byte), EventBridge events, and the
//! `X-Hub-Signature-256` check.
#![no_main]

use cordon::intake::webhook::{parse_eventbridge, parse_github};
use cordon_connector::Secret;
use libfuzzer_sys::fuzz_target;

const EVENTS: [&str; 4] = ["secret_scanning_alert", "ping", "push", "security_advisory"];

fuzz_target!(|data: &[u8]| {
    let Some((first, body)) = data.split_first() else {
        return;
    };
    let event = EVENTS[usize::from(*first) % EVENTS.len()];
    let _ = parse_github(event, "72d3162e-cc78-11e3-81ab-4c9367dc0958", body);
    let _ = parse_eventbridge(data);
    // No input carries a valid HMAC under a secret the fuzzer never sees.
    let header = String::from_utf8_lossy(body);
    assert!(!cordon::intake::webhook::github_signature_ok(
        &Secret::new("fuzz-webhook-secret"),
        b"{}",
        &header
    ));
});
