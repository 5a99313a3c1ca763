#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::audit::record::hash_value;
use crate::audit::{AuditLog, Kind, RecordDraft, GENESIS};
use crate::gate::Principal;
use crate::plan::PrincipalKind;

// RFC 6962 / Certificate Transparency reference leaves and tree heads
// (certificate-transparency-go merkle tests; the same list appears in every
// CT implementation).
const CT_LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];
const CT_ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

// The signed-note example of golang.org/x/mod/sumdb/note (note.go doc and
// note_test.go): Ed25519 is deterministic, so signing the same text with the
// same key must give the published note byte for byte.
const GO_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const GO_NOTE: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

/// MTH straight from RFC 6962 section 2.1, recursively, as the reference.
fn reference_root(leaves: &[Vec<u8>]) -> [u8; 32] {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaf_hash(&leaves[0]),
        n => {
            let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
        }
    }
}

#[test]
fn merkle_roots_match_the_rfc_6962_reference_tree_heads() {
    let leaves: Vec<Vec<u8>> = CT_LEAVES.iter().map(|h| hex::decode(h).unwrap()).collect();
    for n in 0..=8 {
        let mut t = MerkleTree::new();
        for l in &leaves[..n] {
            t.push(l);
        }
        assert_eq!(hex::encode(t.root()), CT_ROOTS[n], "size {n}");
        assert_eq!(hex::encode(reference_root(&leaves[..n])), CT_ROOTS[n]);
    }
}

#[test]
fn streamed_tree_equals_the_recursive_definition_for_every_size_to_300() {
    let leaves: Vec<Vec<u8>> = (0..300u32).map(|i| i.to_be_bytes().to_vec()).collect();
    let mut t = MerkleTree::new();
    for n in 0..=leaves.len() {
        assert_eq!(t.root(), reference_root(&leaves[..n]), "size {n}");
        // Memory: one peak per set bit of the size.
        assert_eq!(t.peaks.len() as u32, (n as u64).count_ones(), "size {n}");
        if n < leaves.len() {
            t.push(&leaves[n]);
        }
    }
}

#[test]
fn line_stream_hashes_each_line_whatever_the_chunking() {
    let lines: Vec<Vec<u8>> = (0..40)
        .map(|i| format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(i * 7)).into_bytes())
        .collect();
    let mut data = Vec::new();
    for l in &lines {
        data.extend_from_slice(l);
        data.push(b'\n');
    }
    data.extend_from_slice(b"{\"torn"); // not a leaf: no newline
    for chunk in [1usize, 2, 3, 7, 64, 4096] {
        let mut ll = LineLeaves::new(Some(17));
        for c in data.chunks(chunk) {
            ll.feed(c);
        }
        assert_eq!(ll.tree.size(), 40, "chunk {chunk}");
        assert_eq!(ll.tree.root(), reference_root(&lines), "chunk {chunk}");
        assert_eq!(ll.snapshot, Some(reference_root(&lines[..17])));
    }
}

#[test]
fn signed_note_matches_the_go_reference_byte_for_byte() {
    let key = CheckpointKey::decode(&Secret::new(GO_SKEY), Path::new("go.key")).unwrap();
    assert_eq!(key.verifier().encode(), GO_VKEY);
    assert_eq!(key.sign_note(GO_TEXT), GO_NOTE);
    let v = Verifier::parse(GO_VKEY).unwrap();
    assert_eq!(open_note(GO_NOTE.as_bytes(), &v, "go").unwrap(), GO_TEXT);
    // One changed letter in the text: the signature no longer verifies.
    let altered = GO_NOTE.replace("cryptography", "cryptographY");
    assert!(matches!(
        open_note(altered.as_bytes(), &v, "go"),
        Err(CheckpointError::BadSignature { .. })
    ));
    // A verifier key whose base64 holds a `+` (transparency-dev/formats tests).
    let plus = "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6";
    assert_eq!(Verifier::parse(plus).unwrap().encode(), plus);
}

#[test]
fn every_mangled_verifier_key_is_refused_or_is_another_key() {
    let v = Verifier::parse(GO_VKEY).unwrap();
    let b = GO_VKEY.as_bytes();
    let mut checked = 0;
    // Every proper substring.
    for i in 0..=b.len() {
        for j in i + 1..=b.len() {
            if i == 0 && j == b.len() {
                continue;
            }
            let s = std::str::from_utf8(&b[i..j]).unwrap();
            // Trimming whitespace is allowed; no key has any here.
            assert!(Verifier::parse(s).is_err(), "{s:?} was accepted");
            checked += 1;
        }
    }
    // Every bit flip: refused, or (a flip in the key bytes giving another
    // valid point is impossible here: the key id would no longer match).
    for i in 0..b.len() {
        for bit in 0..8 {
            let mut m = b.to_vec();
            m[i] ^= 1 << bit;
            if let Ok(s) = std::str::from_utf8(&m) {
                if let Ok(other) = Verifier::parse(s) {
                    // Only a flip base64 ignores could land here; none does
                    // with strict decoding, but if it did it must be the same key.
                    assert_eq!(other, v, "{s:?}");
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 2000);
    println!("{checked} verifier key mutations");
}

fn actor() -> Principal {
    Principal {
        name: "alice".into(),
        kind: PrincipalKind::Person,
        verified: true,
        proof: Some("ssh:SHA256:test".into()),
    }
}

struct Fixture {
    _t: tempfile::TempDir,
    home: Home,
    log: AuditLog,
}

fn fixture(n: usize) -> Fixture {
    let t = tempfile::tempdir().unwrap();
    let home = Home::open(t.path().join("home")).unwrap();
    let log = AuditLog::new(home.audit_path(), home.torn_dir());
    append(&log, n, "before");
    Fixture { _t: t, home, log }
}

fn append(log: &AuditLog, n: usize, tag: &str) {
    for i in 0..n {
        let mut d = RecordDraft::new(Kind::Note, actor());
        d.message = Some(format!("{tag} record {i}"));
        log.append(d).unwrap();
    }
}

/// What an insider with write access does: keep the records `keep` says,
/// renumber them and recompute every prev and hash, so that plain
/// `log verify` passes.
fn rechain(path: &Path, keep: impl Fn(usize, &mut serde_json::Value) -> bool) {
    let data = std::fs::read_to_string(path).unwrap();
    let mut prev = GENESIS.to_owned();
    let mut out = String::new();
    let mut seq = 0u64;
    for (i, line) in data.lines().enumerate() {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        if !keep(i, &mut v) {
            continue;
        }
        seq += 1;
        v["seq"] = seq.into();
        v["prev"] = prev.clone().into();
        let h = hash_value(&mut v.clone()).unwrap();
        v["hash"] = h.clone().into();
        out.push_str(&serde_json::to_string(&v).unwrap());
        out.push('\n');
        prev = h;
    }
    std::fs::write(path, out).unwrap();
}

fn check(f: &Fixture, note: &str) -> (LogScan, Consistency) {
    let key = CheckpointKey::load(&f.home).unwrap().unwrap();
    let cp = open(note.as_bytes(), &key.verifier(), "test").unwrap();
    let scan = scan_file(f.log.path(), Some(cp.size)).unwrap();
    let c = consistency(&scan, &cp);
    (scan, c)
}

#[test]
fn checkpoint_is_written_with_a_private_key_and_matches_the_log() {
    let f = fixture(25);
    let (cp, note) = write_latest(&f.home).unwrap();
    assert_eq!(cp.size, 25);
    assert!(note.starts_with(&format!("{}\n25\n", cp.origin)));
    let key_path = f.home.root().join(KEY_FILE);
    let md = std::fs::metadata(&key_path).unwrap();
    assert_eq!(md.permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(latest_path(&f.home)).unwrap(), note);
    // The private key is nowhere in what is shared.
    let secret = std::fs::read_to_string(&key_path).unwrap();
    // `PRIVATE+KEY+<name>+<hash>+<base64 key>`: base64 itself may hold `+`, so
    // take everything after the fourth separator (a tail cut at the last `+`
    // could be a few characters that occur in the note by chance).
    let seed_b64 = secret.trim().splitn(5, '+').nth(4).unwrap().to_owned();
    assert!(seed_b64.len() >= 40, "{seed_b64}");
    let key = CheckpointKey::load(&f.home).unwrap().unwrap();
    assert!(!note.contains(&seed_b64));
    assert!(!key.verifier().encode().contains(&seed_b64));
    assert!(!format!("{key:?}").contains(&seed_b64));
    // The same key is used again.
    let (_, note2) = write_latest(&f.home).unwrap();
    assert_eq!(note, note2, "same log, same key: the same checkpoint");
    let (scan, c) = check(&f, &note);
    assert_eq!(c, Consistency::Contains);
    assert_eq!(scan.report.status, VerifyStatus::Intact);
}

#[test]
fn appending_after_a_checkpoint_still_contains_it() {
    let f = fixture(30);
    let (_, note) = write_latest(&f.home).unwrap();
    append(&f.log, 13, "after");
    let (scan, c) = check(&f, &note);
    assert_eq!(c, Consistency::Contains);
    assert_eq!(scan.size, 43);
    // And a torn tail after it does not change that either.
    let data = std::fs::read(f.log.path()).unwrap();
    std::fs::write(f.log.path(), &data[..data.len() - 9]).unwrap();
    let (scan, c) = check(&f, &note);
    assert_eq!(c, Consistency::Contains);
    assert!(matches!(scan.report.status, VerifyStatus::TornTail { .. }));
}

#[test]
fn truncating_and_rechaining_passes_plain_verify_but_not_the_checkpoint() {
    // Cut the last 5 records: the chain is whole, the count is short.
    let f = fixture(40);
    let (cp, note) = write_latest(&f.home).unwrap();
    rechain(f.log.path(), |i, _| i < 35);
    let (scan, c) = check(&f, &note);
    assert_eq!(
        scan.report.status,
        VerifyStatus::Intact,
        "plain verify passes"
    );
    assert_eq!(c, Consistency::Truncated { have: 35 });
    assert!(c
        .describe(&cp)
        .unwrap()
        .contains("no longer contains the checkpointed tree"));

    // Drop record 12 from the middle, re-chain, then append enough records
    // that the log is longer than the checkpoint again.
    let f = fixture(40);
    let (_, note) = write_latest(&f.home).unwrap();
    rechain(f.log.path(), |i, _| i != 11);
    let fresh = AuditLog::new(f.home.audit_path(), f.home.torn_dir());
    append(&fresh, 10, "cover-up");
    let (scan, c) = check(&f, &note);
    assert_eq!(scan.report.status, VerifyStatus::Intact);
    assert_eq!(scan.size, 49);
    assert!(matches!(c, Consistency::Rewritten { .. }), "{c:?}");

    // Edit one record's message and re-chain: same length, other root.
    let f = fixture(40);
    let (_, note) = write_latest(&f.home).unwrap();
    rechain(f.log.path(), |i, v| {
        if i == 3 {
            v["message"] = "nothing happened here".into();
        }
        true
    });
    let (scan, c) = check(&f, &note);
    assert_eq!(scan.report.status, VerifyStatus::Intact);
    assert!(matches!(c, Consistency::Rewritten { .. }), "{c:?}");

    // The insider can sign a new checkpoint with the key in the state dir,
    // but it does not make the exported one match.
    let (_, new_note) = write_latest(&f.home).unwrap();
    assert_ne!(new_note, note);
    let (_, c) = check(&f, &note);
    assert!(matches!(c, Consistency::Rewritten { .. }));
}

#[test]
fn a_tampered_log_is_not_signed() {
    let f = fixture(10);
    let mut data = std::fs::read(f.log.path()).unwrap();
    let at = data.len() / 2;
    data[at] ^= 0x20;
    std::fs::write(f.log.path(), &data).unwrap();
    let e = write_latest(&f.home).unwrap_err();
    assert!(matches!(e, CheckpointError::Tampered { .. }), "{e}");
    assert!(!latest_path(&f.home).exists());
}

#[test]
fn every_bit_flip_line_drop_or_forgery_of_a_checkpoint_is_rejected() {
    let f = fixture(12);
    let (cp, note) = write_latest(&f.home).unwrap();
    let key = CheckpointKey::load(&f.home).unwrap().unwrap();
    let v = key.verifier();
    assert_eq!(open(note.as_bytes(), &v, "cp").unwrap(), cp);
    let b = note.as_bytes();
    let mut mutations = 0;
    for i in 0..b.len() {
        for bit in 0..8 {
            let mut m = b.to_vec();
            m[i] ^= 1 << bit;
            assert!(open(&m, &v, "cp").is_err(), "byte {i} bit {bit} accepted");
            mutations += 1;
        }
    }
    // Every line removed, every line duplicated, every proper prefix.
    let lines: Vec<&str> = note.split_inclusive('\n').collect();
    for i in 0..lines.len() {
        let mut l = lines.clone();
        l.remove(i);
        assert!(
            open(l.concat().as_bytes(), &v, "cp").is_err(),
            "line {i} removed"
        );
        let mut l = lines.clone();
        l.insert(i, lines[i]);
        assert!(
            open(l.concat().as_bytes(), &v, "cp").is_err(),
            "line {i} doubled"
        );
        mutations += 2;
    }
    for cut in 0..b.len() {
        assert!(open(&b[..cut], &v, "cp").is_err(), "prefix {cut}");
        mutations += 1;
    }
    // A claimed larger tree with the same signature.
    let bigger = note.replacen("\n12\n", "\n13\n", 1);
    assert!(matches!(
        open(bigger.as_bytes(), &v, "cp"),
        Err(CheckpointError::BadSignature { .. })
    ));
    // Signed by another key (a fresh one with the same name claimed).
    let mut other = CheckpointKey::generate();
    other.name = key.name().to_owned();
    let forged = other.sign(&cp);
    let e = open(forged.as_bytes(), &v, "cp").unwrap_err();
    assert!(matches!(e, CheckpointError::BadSignature { .. }), "{e}");
    // The right key, but checked against another verifier.
    let e = open(note.as_bytes(), &CheckpointKey::generate().verifier(), "cp").unwrap_err();
    assert!(e.to_string().contains("signed only by"), "{e}");
    // The right key over another log's origin.
    let mut foreign = cp.clone();
    foreign.origin = "example.com/log".into();
    let e = open(key.sign(&foreign).as_bytes(), &v, "cp").unwrap_err();
    assert!(e.to_string().contains("origin"), "{e}");
    // Our signature twice.
    let sig_line = lines.last().unwrap();
    let twice = format!("{note}{sig_line}");
    assert!(open(twice.as_bytes(), &v, "cp").is_err());
    // A cosignature by another key next to ours is fine (witnesses).
    let witness = CheckpointKey::generate().sign(&cp);
    let cosigned = format!("{note}{}", witness.lines().last().unwrap());
    let cosigned = format!("{cosigned}\n");
    assert_eq!(open(cosigned.as_bytes(), &v, "cp").unwrap(), cp);
    assert!(mutations > 1500, "{mutations}");
    println!("{mutations} checkpoint mutations rejected");
}

#[test]
fn checkpoint_bodies_follow_the_c2sp_grammar() {
    let ok = Checkpoint::parse(
        "o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\next one\n",
        "t",
    )
    .unwrap();
    assert_eq!(ok.size, 0);
    assert_eq!(ok.extensions, vec!["ext one".to_string()]);
    for bad in [
        "",
        "\n",
        "o\n",
        "o\n1\n",
        "o\n01\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",
        "o\n+1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",
        "o\n18446744073709551616\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",
        "o\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU\n",
        "o\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuA==\n",
        "o\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
        "o\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\nx\n",
    ] {
        assert!(Checkpoint::parse(bad, "t").is_err(), "{bad:?} accepted");
    }
}

#[test]
fn a_key_file_others_can_read_is_refused() {
    let f = fixture(1);
    write_latest(&f.home).unwrap();
    let p = f.home.root().join(KEY_FILE);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
    let e = CheckpointKey::load(&f.home).unwrap_err().to_string();
    assert!(e.contains("chmod 600"), "{e}");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&p, "PRIVATE+KEY+x+00000000+AAAA\n").unwrap();
    let e = CheckpointKey::load(&f.home).unwrap_err().to_string();
    assert!(e.contains("is malformed"), "{e}");
}

/// Scale check for RELIABILITY.md: a million-record log is scanned in one
/// pass with bounded memory. Slow in debug builds: run with
/// `cargo test --release --lib million -- --ignored --nocapture`.
#[test]
#[ignore]
fn a_million_record_log_scans_in_bounded_memory() {
    use std::io::Write as _;
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("audit.log");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut prev = GENESIS.to_owned();
    let n = 1_000_000u64;
    let t0 = std::time::Instant::now();
    for i in 0..n {
        let mut d = RecordDraft::new(Kind::Note, actor());
        d.message = Some(format!("record {i}"));
        let r = d.seal(i + 1, &prev);
        w.write_all(&r.canonical_line().unwrap()).unwrap();
        w.write_all(b"\n").unwrap();
        prev = r.hash;
    }
    w.flush().unwrap();
    drop(w);
    let written = t0.elapsed();
    let rss_before = vm_hwm_kib();
    let t1 = std::time::Instant::now();
    let scan = scan_file(&path, Some(n / 2)).unwrap();
    let scanned = t1.elapsed();
    let rss_after = vm_hwm_kib();
    assert_eq!(scan.report.status, VerifyStatus::Intact);
    assert_eq!(scan.size, n);
    assert!(scan.prefix_root.is_some());
    let bytes = std::fs::metadata(&path).unwrap().len();
    println!(
        "1M records, {bytes} bytes: written in {written:?}, scanned (chain + merkle) in {scanned:?}; peak RSS {rss_before} KiB before the scan, {rss_after} KiB after"
    );
    // The scan itself must not hold the log: allow 64 MiB of growth for a
    // file of ~300 MB.
    assert!(rss_after.saturating_sub(rss_before) < 64 * 1024);
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}
