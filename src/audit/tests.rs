#![allow(clippy::unwrap_used, clippy::panic)]

use super::*;
use crate::gate::Principal;
use crate::plan::PrincipalKind;

fn actor() -> Principal {
    Principal {
        name: "alice".into(),
        kind: PrincipalKind::Person,
        verified: true,
        proof: Some("ssh:SHA256:test".into()),
    }
}

fn log_with(n: usize) -> (tempfile::TempDir, AuditLog) {
    let t = tempfile::tempdir().unwrap();
    let log = AuditLog::new(t.path().join("audit.log"), t.path().join("audit.torn"));
    for i in 0..n {
        let mut d = RecordDraft::new(Kind::Note, actor());
        d.message = Some(format!("record number {i} with some text"));
        d.plan = Some("0123456789abcdef".into());
        log.append(d).unwrap();
    }
    (t, log)
}

fn verify_bytes(b: &[u8]) -> VerifyReport {
    verify_reader(b).unwrap()
}

/// Line index (0-based) of the byte at `pos`.
fn line_of(data: &[u8], pos: usize) -> u64 {
    data[..pos].iter().filter(|b| **b == b'\n').count() as u64
}

#[test]
fn intact_log_verifies_and_seq_chain_is_continuous() {
    let (_t, log) = log_with(10);
    let r = verify_file(log.path()).unwrap();
    assert_eq!(r.status, VerifyStatus::Intact);
    assert_eq!(r.records, 10);
    let all = log.read_all().unwrap();
    assert_eq!(all.len(), 10);
    assert_eq!(all[0].prev, GENESIS);
    for w in all.windows(2) {
        assert_eq!(w[1].prev, w[0].hash);
        assert_eq!(w[1].seq, w[0].seq + 1);
    }
}

#[test]
fn flipping_any_byte_of_a_100_record_log_fails_at_that_seq() {
    let (_t, log) = log_with(100);
    let data = std::fs::read(log.path()).unwrap();
    // The whole log verifies; so does every suffix from its own start point.
    // Each flip is then checked from the start of the record it lands in
    // (the records before it are unchanged bytes that verified above), which
    // keeps the test at ~40,000 small verifications instead of 2,000,000.
    assert_eq!(verify_bytes(&data).status, VerifyStatus::Intact);
    let recs = log.read_all().unwrap();
    let mut starts = vec![0usize];
    for (i, b) in data.iter().enumerate() {
        if *b == b'\n' && i + 1 < data.len() {
            starts.push(i + 1);
        }
    }
    for pos in 0..data.len() {
        let k = line_of(&data, pos) as usize;
        let mut d = data[starts[k]..].to_vec();
        d[pos - starts[k]] ^= 0x01;
        let prev = if k == 0 {
            GENESIS
        } else {
            recs[k - 1].hash.as_str()
        };
        let r = verify_reader_from(&d[..], k as u64 + 1, prev).unwrap();
        let want = k as u64 + 1;
        match r.status {
            VerifyStatus::Tampered { seq, .. } => {
                assert_eq!(seq, want, "byte {pos}: reported seq {seq}, expected {want}")
            }
            other => panic!("byte {pos} flipped: not detected as tampering: {other:?}"),
        }
    }
    // And a full-file check for a sample of flips, end to end.
    for pos in (0..data.len()).step_by(997) {
        let mut d = data.clone();
        d[pos] ^= 0x01;
        let want = line_of(&data, pos) + 1;
        assert!(
            matches!(verify_bytes(&d).status, VerifyStatus::Tampered { seq, .. } if seq == want),
            "byte {pos}"
        );
    }
}

#[test]
fn truncating_the_last_line_at_every_offset_is_a_torn_tail() {
    let (_t, log) = log_with(100);
    let data = std::fs::read(log.path()).unwrap();
    let last_start = data[..data.len() - 1]
        .iter()
        .rposition(|b| *b == b'\n')
        .unwrap()
        + 1;
    for cut in last_start + 1..data.len() {
        let r = verify_bytes(&data[..cut]);
        assert_eq!(
            r.status,
            VerifyStatus::TornTail {
                bytes: (cut - last_start) as u64
            },
            "cut at {cut}"
        );
        assert_eq!(
            r.records, 99,
            "cut at {cut}: earlier records must be intact"
        );
    }
}

#[test]
fn deleting_reordering_duplicating_or_inserting_a_record_is_detected() {
    let (_t, log) = log_with(100);
    let data = std::fs::read_to_string(log.path()).unwrap();
    let lines: Vec<&str> = data.lines().collect();
    let join = |ls: &[&str]| ls.iter().map(|l| format!("{l}\n")).collect::<String>();

    let mut del = lines.clone();
    del.remove(41);
    assert!(matches!(
        verify_bytes(join(&del).as_bytes()).status,
        VerifyStatus::Tampered { seq: 42, .. }
    ));

    let mut swap = lines.clone();
    swap.swap(10, 11);
    assert!(matches!(
        verify_bytes(join(&swap).as_bytes()).status,
        VerifyStatus::Tampered { seq: 11, .. }
    ));

    let mut dup = lines.clone();
    dup.insert(60, lines[59]);
    assert!(matches!(
        verify_bytes(join(&dup).as_bytes()).status,
        VerifyStatus::Tampered { seq: 61, .. }
    ));

    // A forged record with a correct-looking hash of its own, inserted mid-chain.
    let mut v: serde_json::Value = serde_json::from_str(lines[20]).unwrap();
    v["message"] = "forged".into();
    let h = super::record::hash_value(&mut v.clone()).unwrap();
    v["hash"] = h.into();
    let forged = serde_json::to_string(&v).unwrap();
    let mut ins = lines.clone();
    ins.insert(21, &forged);
    assert!(matches!(
        verify_bytes(join(&ins).as_bytes()).status,
        VerifyStatus::Tampered { seq: 22, .. }
    ));

    // Re-hashing an edited record does not help: the next record's prev breaks.
    let mut edit = lines.clone();
    edit[20] = &forged;
    assert!(matches!(
        verify_bytes(join(&edit).as_bytes()).status,
        VerifyStatus::Tampered { seq: 22, .. }
    ));
}

#[test]
fn append_after_a_torn_tail_keeps_the_bytes_and_records_the_recovery() {
    let (t, log) = log_with(5);
    let data = std::fs::read(log.path()).unwrap();
    std::fs::write(log.path(), &data[..data.len() - 17]).unwrap();
    assert!(matches!(
        verify_file(log.path()).unwrap().status,
        VerifyStatus::TornTail { .. }
    ));
    let fresh = AuditLog::new(log.path(), t.path().join("audit.torn"));
    let rec = fresh
        .append(RecordDraft::note("test", "after crash".into()))
        .unwrap();
    // record 5 was torn: a recovery note became 5, the new record 6
    assert_eq!(rec.seq, 6);
    let all = fresh.read_all().unwrap();
    assert_eq!(all[4].kind, Kind::Note);
    assert!(all[4].message.as_deref().unwrap().contains("torn tail"));
    let r = verify_file(log.path()).unwrap();
    assert_eq!(r.status, VerifyStatus::Intact);
    let kept: Vec<_> = std::fs::read_dir(t.path().join("audit.torn"))
        .unwrap()
        .collect();
    assert_eq!(kept.len(), 1);
}

#[test]
fn a_second_writer_is_seen_by_the_first() {
    let (t, log) = log_with(3);
    let other = AuditLog::new(log.path(), t.path().join("audit.torn"));
    other
        .append(RecordDraft::note("b", "from b".into()))
        .unwrap();
    let r = log.append(RecordDraft::note("a", "from a".into())).unwrap();
    assert_eq!(r.seq, 5);
    assert_eq!(
        verify_file(log.path()).unwrap().status,
        VerifyStatus::Intact
    );
}

#[test]
fn a_full_disk_fails_the_append_with_a_clear_error() {
    // /dev/full answers every write with ENOSPC, as a full filesystem does.
    let log = AuditLog::new("/dev/full", "/nonexistent");
    let e = log
        .append(RecordDraft::note("x", "y".into()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("disk is full"), "{e}");
}

#[test]
fn append_with_sees_every_record_writes_nothing_when_refused_and_chains_when_accepted() {
    let (_t, log) = log_with(3);
    let before = std::fs::read(log.path()).unwrap();
    let refused = log
        .append_with(|recs| {
            assert_eq!(recs.len(), 3);
            Err::<RecordDraft, _>("no")
        })
        .unwrap();
    assert_eq!(refused.unwrap_err(), "no");
    assert_eq!(std::fs::read(log.path()).unwrap(), before);
    let rec = log
        .append_with(|recs| {
            let mut d = RecordDraft::new(Kind::Incident, actor());
            d.message = Some(format!("after {}", recs.len()));
            Ok::<_, ()>(d)
        })
        .unwrap()
        .unwrap();
    assert_eq!((rec.seq, rec.message.as_deref()), (4, Some("after 3")));
    // A plain append after it still chains (the cached head stays right).
    log.append(RecordDraft::note("t", "x".into())).unwrap();
    let r = verify_file(log.path()).unwrap();
    assert_eq!((r.status, r.records), (VerifyStatus::Intact, 5));
}

// ---------------------------------------------------------------------------
// Exhaustive structural tampering of a 100-record log. `first altered seq`
// is the 1-based position of the first line that differs from the original.

/// The lines of a fresh 100-record log, and each record's hash.
fn hundred() -> (tempfile::TempDir, Vec<String>, Vec<String>) {
    let (t, log) = log_with(100);
    let data = std::fs::read_to_string(log.path()).unwrap();
    let lines: Vec<String> = data.lines().map(str::to_owned).collect();
    let hashes = log
        .read_all()
        .unwrap()
        .into_iter()
        .map(|r| r.hash)
        .collect();
    (t, lines, hashes)
}

fn joined(lines: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l.as_bytes());
        out.push(b'\n');
    }
    out
}

#[track_caller]
fn assert_caught_at(data: &[u8], want: u64, what: &str) {
    match verify_bytes(data).status {
        VerifyStatus::Tampered { seq, .. } => assert_eq!(seq, want, "{what}: wrong seq"),
        other => panic!("{what}: not caught: {other:?}"),
    }
}

#[test]
fn flipping_any_bit_of_a_100_record_log_fails_at_that_seq() {
    let (_t, log) = log_with(100);
    let data = std::fs::read(log.path()).unwrap();
    let recs = log.read_all().unwrap();
    let mut starts = vec![0usize];
    for (i, b) in data.iter().enumerate() {
        if *b == b'\n' && i + 1 < data.len() {
            starts.push(i + 1);
        }
    }
    // As in the byte-flip test: the records before the flip are the same
    // bytes that verified, so each flip is checked from its record's start
    // with that record's trusted predecessor.
    let mut flips = 0u64;
    for pos in 0..data.len() {
        let k = line_of(&data, pos) as usize;
        let prev = if k == 0 {
            GENESIS
        } else {
            recs[k - 1].hash.as_str()
        };
        for bit in 0..8 {
            let mut d = data[starts[k]..].to_vec();
            d[pos - starts[k]] ^= 1 << bit;
            let r = verify_reader_from(&d[..], k as u64 + 1, prev).unwrap();
            match r.status {
                VerifyStatus::Tampered { seq, .. } => assert_eq!(
                    seq,
                    k as u64 + 1,
                    "byte {pos} bit {bit}: reported seq {seq}"
                ),
                other => panic!("byte {pos} bit {bit} flipped: not detected: {other:?}"),
            }
            flips += 1;
        }
    }
    assert_eq!(flips, data.len() as u64 * 8);
    println!(
        "{} bytes, {flips} bit flips, all caught at their record",
        data.len()
    );
}

#[test]
fn deleting_any_record_is_caught_at_its_seq() {
    let (_t, lines, _) = hundred();
    for k in 0..99 {
        let mut l = lines.clone();
        l.remove(k);
        assert_caught_at(
            &joined(&l),
            k as u64 + 1,
            &format!("record {} deleted", k + 1),
        );
    }
    // Deleting the *last* record leaves a shorter log whose chain is whole:
    // the chain cannot tell it from a log that was never longer. That is
    // what signed checkpoints are for (see checkpoint_tests: truncation is
    // caught against an exported checkpoint).
    let mut l = lines.clone();
    l.pop();
    let r = verify_bytes(&joined(&l));
    assert_eq!((r.status, r.records), (VerifyStatus::Intact, 99));
}

#[test]
fn moving_or_swapping_any_records_is_caught_at_the_first_moved_seq() {
    let (_t, lines, hashes) = hundred();
    let mut checked = 0u64;
    // Every pair swapped, checked from the first changed record with its
    // trusted predecessor.
    for i in 0..100 {
        for j in i + 1..100 {
            let mut l = lines[i..].to_vec();
            l.swap(0, j - i);
            let prev = if i == 0 {
                GENESIS
            } else {
                hashes[i - 1].as_str()
            };
            let r = verify_reader_from(&joined(&l)[..], i as u64 + 1, prev).unwrap();
            assert!(
                matches!(r.status, VerifyStatus::Tampered { seq, .. } if seq == i as u64 + 1),
                "records {} and {} swapped: {:?}",
                i + 1,
                j + 1,
                r.status
            );
            checked += 1;
        }
    }
    // Every record moved to every other place, whole file.
    for from in (0..100).step_by(7) {
        for to in 0..100 {
            if from == to {
                continue;
            }
            let mut l = lines.clone();
            let rec = l.remove(from);
            l.insert(to, rec);
            assert_caught_at(
                &joined(&l),
                from.min(to) as u64 + 1,
                &format!("record {} moved to {}", from + 1, to + 1),
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 4950 + 15 * 99);
}

#[test]
fn duplicating_any_record_anywhere_is_caught_where_the_copy_lands() {
    let (_t, lines, _) = hundred();
    for k in 0..100 {
        // Right after itself, at the start, and at the end. (A copy put
        // right *before* itself is the same file as one right after it.)
        for at in [k + 1, 0, 100] {
            if at == k {
                continue;
            }
            let mut l = lines.clone();
            l.insert(at, lines[k].clone());
            assert_caught_at(
                &joined(&l),
                at as u64 + 1,
                &format!("record {} copied to {}", k + 1, at + 1),
            );
        }
    }
}

#[test]
fn inserting_a_record_anywhere_is_caught() {
    let (_t, lines, hashes) = hundred();
    for at in 0..=100usize {
        // A record taken from elsewhere, edited and re-hashed (no chain fit).
        let mut v: serde_json::Value = serde_json::from_str(&lines[(at + 50) % 100]).unwrap();
        v["message"] = "inserted".into();
        let h = super::record::hash_value(&mut v.clone()).unwrap();
        v["hash"] = h.into();
        let mut l = lines.clone();
        l.insert(at, serde_json::to_string(&v).unwrap());
        assert_caught_at(
            &joined(&l),
            at as u64 + 1,
            &format!("foreign record at {}", at + 1),
        );

        // The best an editor can do: a record that fits the chain exactly at
        // its place (right seq, prev and hash). It verifies itself, so the
        // break shows at the next record, which no longer follows its
        // predecessor. At the very end it is indistinguishable from an
        // append by cordon (anyone who can write the log can append to it).
        if at < 100 {
            let mut v: serde_json::Value = serde_json::from_str(&lines[at]).unwrap();
            v["message"] = "fitted".into();
            v["prev"] = if at == 0 {
                GENESIS.into()
            } else {
                hashes[at - 1].clone().into()
            };
            let h = super::record::hash_value(&mut v.clone()).unwrap();
            v["hash"] = h.into();
            let mut l = lines.clone();
            l.insert(at, serde_json::to_string(&v).unwrap());
            assert_caught_at(
                &joined(&l),
                at as u64 + 2,
                &format!("fitted record at {}", at + 1),
            );
        }
    }
}

#[test]
fn concurrent_appends_keep_one_continuous_chain_and_each_caller_gets_its_record() {
    let (_t, log) = log_with(2);
    let log = std::sync::Arc::new(log);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| {
                        let mut d = RecordDraft::new(Kind::Note, actor());
                        d.message = Some(format!("thread {t} record {i}"));
                        log.append(d).unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut returned: Vec<Record> = threads
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let r = verify_file(log.path()).unwrap();
    assert_eq!(r.status, VerifyStatus::Intact);
    assert_eq!(r.records, 2 + 8 * 50);
    // What each caller got back is exactly what is on disk at its seq.
    let all = log.read_all().unwrap();
    returned.sort_by_key(|r| r.seq);
    let seqs: Vec<u64> = returned.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (3..=402).collect::<Vec<u64>>());
    for r in &returned {
        let on_disk = &all[r.seq as usize - 1];
        assert_eq!(on_disk.hash, r.hash);
        assert_eq!(on_disk.message, r.message);
    }
    // A thread's own records keep their order in the chain.
    for t in 0..8 {
        let mine: Vec<&Record> = all
            .iter()
            .filter(|r| {
                r.message
                    .as_deref()
                    .is_some_and(|m| m.starts_with(&format!("thread {t} ")))
            })
            .collect();
        for (i, r) in mine.iter().enumerate() {
            assert_eq!(
                r.message.as_deref(),
                Some(&*format!("thread {t} record {i}"))
            );
        }
    }
}

#[test]
fn appends_queued_behind_a_slow_write_go_to_disk_as_one_group() {
    let (t, log) = log_with(1);
    let log = std::sync::Arc::new(log);
    let before = log.group_commits();
    // Another process holds the file lock: the leader waits on it, and every
    // other append queues behind the leader.
    let other = std::fs::OpenOptions::new()
        .append(true)
        .open(log.path())
        .unwrap();
    other.lock_exclusive().unwrap();
    let threads: Vec<_> = (0..12)
        .map(|i| {
            let log = log.clone();
            std::thread::spawn(move || log.append(RecordDraft::note("t", format!("queued {i}"))))
        })
        .collect();
    // One draft is with the blocked leader, eleven are queued.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while log.queued() < 11 {
        assert!(std::time::Instant::now() < deadline, "appends never queued");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(
        log.group_commits(),
        before,
        "nothing is written while the lock is held"
    );
    FileExt::unlock(&other).unwrap();
    for h in threads {
        h.join().unwrap().unwrap();
    }
    // The leader's own record, then the eleven queued ones in one write.
    assert_eq!(log.group_commits() - before, 2);
    let r = verify_file(log.path()).unwrap();
    assert_eq!(r.status, VerifyStatus::Intact);
    assert_eq!(r.records, 13);
    drop(t);
}

#[test]
fn a_failed_group_write_fails_every_caller_in_it_and_leaves_no_record() {
    // /dev/full refuses every write: every queued caller gets the error.
    let log = std::sync::Arc::new(AuditLog::new("/dev/full", "/nonexistent"));
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let log = log.clone();
            std::thread::spawn(move || log.append(RecordDraft::note("x", format!("r{i}"))))
        })
        .collect();
    for h in threads {
        let e = h.join().unwrap().unwrap_err().to_string();
        assert!(e.contains("disk is full"), "{e}");
    }
}

// ---------------------------------------------------------------------------
// The fast path of verification (canonical.rs) against the full check.

/// Records whose lines use what the fast path has to get right: escapes,
/// non-ASCII, control bytes, floats, negative and large integers, nested
/// arrays and objects, empty containers.
fn varied_lines() -> Vec<(Vec<u8>, u64, String)> {
    varied_records()
        .into_iter()
        .map(|(l, s, p, _)| (l, s, p))
        .collect()
}

/// As `varied_lines`, with whether the fast path takes the line (it leaves
/// floats to the full check).
fn varied_records() -> Vec<(Vec<u8>, u64, String, bool)> {
    let mut out = Vec::new();
    let mut prev = GENESIS.to_owned();
    let datas = [
        serde_json::json!(null),
        serde_json::json!({"z": 1, "a": [1.5, -0.0, "x\u{1}\"y\\", null, true, false], "n": -12}),
        serde_json::json!({"big": u64::MAX, "neg": i64::MIN, "f": 1e21, "e": [], "o": {}}),
        serde_json::json!({"s": "é\n\t\r\u{8}\u{c}\u{7f}\u{2028}/", "deep": [[[{"k": [0]}]]]}),
        serde_json::json!([1, 2, 3]),
        serde_json::json!("just a string"),
    ];
    for (i, data) in datas.into_iter().enumerate() {
        let mut d = RecordDraft::new(Kind::Note, actor());
        d.message = Some(format!("record {i}: \"quoted\" \\ and ünïcode \u{1}"));
        d.data = if data.is_null() { None } else { Some(data) };
        let rec = d.seal(i as u64 + 1, &prev);
        let line = rec.canonical_line().unwrap();
        let fast = !matches!(i, 1 | 2);
        out.push((line, rec.seq, prev.clone(), fast));
        prev = rec.hash;
    }
    out
}

/// The fast path may decline anything, but what it accepts the full check
/// must accept with the same hash.
#[track_caller]
fn assert_fast_agrees(line: &[u8], seq: u64, prev: &str, what: &str) {
    if let Some(h) = canonical::check(line, seq, prev) {
        assert_eq!(
            verify::full_check(line, seq, prev).as_deref(),
            Ok(h.as_str()),
            "{what}: the fast path accepted what the full check does not: {}",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn fast_path_takes_intact_records_and_agrees_with_the_full_check() {
    let (_t, lines, hashes) = hundred();
    let mut prev = GENESIS.to_owned();
    for (i, l) in lines.iter().enumerate() {
        // Every record cordon writes goes the fast way (else the speed-up
        // would be a claim, and the agreement below would test nothing).
        assert_eq!(
            canonical::check(l.as_bytes(), i as u64 + 1, &prev).as_deref(),
            Some(hashes[i].as_str())
        );
        // The hashing thread's guess of where `hash` is holds for every line
        // cordon writes (else that thread would hash in vain).
        let scanned = canonical::Checker::new().scan(l.as_bytes()).unwrap();
        assert_eq!(canonical::tail_cut(l.as_bytes()), Some(scanned.cut));
        prev = hashes[i].clone();
    }
    for (line, seq, prev, fast) in varied_records() {
        let full = verify::full_check(&line, seq, &prev);
        assert!(full.is_ok(), "{full:?}");
        assert_eq!(
            canonical::check(&line, seq, &prev),
            if fast { full.ok() } else { None },
            "{}",
            String::from_utf8_lossy(&line)
        );
        // Wrong seq or prev: declined.
        assert_eq!(canonical::check(&line, seq + 1, &prev), None);
        assert_eq!(
            canonical::check(&line, seq, GENESIS.trim_end_matches('0')),
            None
        );
    }
}

#[test]
fn fast_path_agrees_with_the_full_check_on_every_byte_flip_and_cut() {
    let (_t, lines, hashes) = hundred();
    let mut cases: Vec<(Vec<u8>, u64, String)> = varied_lines();
    cases.push((lines[0].clone().into_bytes(), 1, GENESIS.to_owned()));
    cases.push((lines[1].clone().into_bytes(), 2, hashes[0].clone()));
    // Bytes that mean something to JSON, and a few that do not.
    let subs: &[u8] = b"{}[]\":,\\ 0-1.9eEtfnu/\x01\x7f\xc3\xa9a";
    for (line, seq, prev) in &cases {
        for pos in 0..line.len() {
            for &b in subs {
                if line[pos] == b {
                    continue;
                }
                let mut m = line.clone();
                m[pos] = b;
                assert_fast_agrees(&m, *seq, prev, "flip");
                let mut ins = line.clone();
                ins.insert(pos, b);
                assert_fast_agrees(&ins, *seq, prev, "insert");
            }
            let mut del = line.clone();
            del.remove(pos);
            assert_fast_agrees(&del, *seq, prev, "delete");
            assert_fast_agrees(&line[..pos], *seq, prev, "cut");
        }
    }
}

#[test]
fn fast_path_agrees_on_reordered_and_duplicated_members() {
    // Members moved around or repeated (the order the full check accepts
    // depends on serde_json's preserve_order; the fast path must follow).
    for (line, seq, prev) in varied_lines() {
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        let obj = v.as_object().unwrap();
        let members: Vec<String> = obj
            .iter()
            .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), v))
            .collect();
        let n = members.len();
        for a in 0..n {
            for b in 0..n {
                let mut m = members.clone();
                m.swap(a, b);
                let swapped = format!("{{{}}}", m.join(","));
                assert_fast_agrees(swapped.as_bytes(), seq, &prev, "swap");
                let mut d = members.clone();
                d.insert(b, members[a].clone());
                let dup = format!("{{{}}}", d.join(","));
                assert_fast_agrees(dup.as_bytes(), seq, &prev, "duplicate");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Hashing on a second thread (verify.rs) against one thread.

/// The two-thread loop (lines hashed on a second thread while this one scans
/// them; small blocks, so that lines straddle blocks and blocks queue up)
/// reports exactly what the one-thread loop reports: on the intact log, a
/// byte changed or inserted every few bytes, every kind of cut, and records
/// removed, swapped and duplicated.
#[test]
fn hashing_on_a_second_thread_reports_what_one_thread_does() {
    let (_t, lines, _) = hundred();
    let data = joined(&lines);
    let both = |d: &[u8], what: &str| {
        let one = verify::verify_blocks(d, 1, GENESIS, 1 << 20, false).unwrap();
        for size in [256, 3000] {
            let two = verify::verify_blocks(d, 1, GENESIS, size, true).unwrap();
            assert_eq!(one, two, "{what}, blocks of {size} bytes");
        }
        one
    };
    assert_eq!(both(&data, "intact").status, VerifyStatus::Intact);
    assert_eq!(both(&data, "intact").records, 100);
    let mut caught = 0;
    for pos in (0..data.len()).step_by(97) {
        for b in [b'x', b'"', b'\n', b'}'] {
            if data[pos] == b {
                continue;
            }
            let mut m = data.clone();
            m[pos] = b;
            if matches!(both(&m, "flip").status, VerifyStatus::Tampered { .. }) {
                caught += 1;
            }
            let mut ins = data.clone();
            ins.insert(pos, b);
            both(&ins, "insert");
        }
        both(&data[..pos], "cut");
    }
    assert!(caught > 50, "{caught}");
    for (a, b) in [(0, 1), (10, 60), (98, 99)] {
        let mut l = lines.clone();
        l.swap(a, b);
        assert!(matches!(
            both(&joined(&l), "swap").status,
            VerifyStatus::Tampered { .. }
        ));
        let mut l = lines.clone();
        l.remove(b);
        both(&joined(&l), "remove");
        let mut l = lines.clone();
        l.insert(b, lines[a].clone());
        both(&joined(&l), "duplicate");
    }
}
