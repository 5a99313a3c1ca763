//! Spine benchmarks: audit append with fsync, and verification of a
//! 1,000,000-record log, each side by side with the plain alternative.
//!
//! `cargo bench --bench spine` (env: SPINE_APPENDS=2000, SPINE_RECORDS=1000000,
//! SPINE_DIR=<dir on the disk to measure>, SPINE_KEEP=<path to keep the log>).

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::time::Instant;

use cordon::audit::{verify_file, AuditLog, Kind, RecordDraft, GENESIS};
use cordon::gate::Principal;
use cordon::plan::PrincipalKind;
use cordon_connector::{Outcome, Provider, Target};
use sha2::{Digest, Sha256};

fn env_num(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn draft(i: usize) -> RecordDraft {
    let mut d = RecordDraft::new(
        Kind::Outcome,
        Principal {
            name: "amara".into(),
            kind: PrincipalKind::Person,
            verified: true,
            proof: Some("ssh:SHA256:Ux5mVq3wB7n0Jm2pPZ7p1T3u4lTt6Yc8Y0ZpQq2Wb1k".into()),
        },
    );
    d.plan = Some("0123456789abcdef".into());
    d.step = Some(format!("s{i}"));
    d.action = Some("aws:disable-access-key".into());
    let mut t = Target::new(Provider::Aws, "access-key", format!("AKIAEXAMPLE{i:09}"));
    t.account = Some("123456789012".into());
    d.target = Some(t);
    d.outcome = Some(Outcome::Done {
        detail: "access key set to Inactive".into(),
    });
    d
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(what) = std::env::var("SPINE_ONLY") {
        return only(&what);
    }
    let dir = match std::env::var("SPINE_DIR") {
        Ok(d) => tempfile::tempdir_in(d)?,
        Err(_) => tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?,
    };
    let appends = env_num("SPINE_APPENDS", 2000);
    let records = env_num("SPINE_RECORDS", 1_000_000);

    // 1. cordon's append (lock, chain, hash, one write, fdatasync) ...
    let log = AuditLog::new(dir.path().join("audit.log"), dir.path().join("torn"));
    let t = Instant::now();
    for i in 0..appends {
        log.append(draft(i))?;
    }
    let cordon_s = t.elapsed().as_secs_f64();
    let line_len = std::fs::metadata(log.path())?.len() as usize / appends;
    // ... against a plain append-only file with the same line size and fdatasync.
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("plain.log"))?;
    let line = vec![b'x'; line_len.saturating_sub(1)];
    let t = Instant::now();
    for _ in 0..appends {
        f.write_all(&line)?;
        f.write_all(b"\n")?;
        f.sync_data()?;
    }
    let plain_s = t.elapsed().as_secs_f64();
    println!("audit append with fsync, {appends} records of ~{line_len} bytes:");
    println!(
        "  cordon   {:>10.0} records/s\n  plain    {:>10.0} records/s (write + fdatasync, no hashing)\n  ratio    {:.2}x of plain",
        appends as f64 / cordon_s,
        appends as f64 / plain_s,
        plain_s / cordon_s
    );

    // 2. A 1,000,000-record chained log, written in bulk (no fsync: setup).
    let big = match std::env::var("SPINE_KEEP") {
        Ok(p) => std::path::PathBuf::from(p),
        Err(_) => dir.path().join("big.log"),
    };
    {
        let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&big)?);
        let mut prev = GENESIS.to_owned();
        for i in 0..records {
            let rec = draft(i).seal(i as u64 + 1, &prev);
            w.write_all(&rec.canonical_line()?)?;
            w.write_all(b"\n")?;
            prev = rec.hash;
        }
        w.flush()?;
    }
    let size = std::fs::metadata(&big)?.len();
    // cordon's verify against the alternative, one SHA-256 over the whole
    // file (proves nothing per record, but is what `sha256sum audit.log`
    // against a stored sum gives), streamed through the same 1 MiB buffer.
    // Alternating, SPINE_REPS times each, so both see the same load; medians.
    let reps = env_num("SPINE_REPS", 3);
    let (mut verify_t, mut sha_t) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let t = Instant::now();
        let report = verify_file(&big)?;
        verify_t.push(t.elapsed().as_secs_f64());
        assert_eq!(report.records as usize, records);
        let t = Instant::now();
        std::hint::black_box(sha256_file(&big)?);
        sha_t.push(t.elapsed().as_secs_f64());
    }
    let (verify_s, sha_s) = (median(verify_t), median(sha_t));
    println!(
        "verify {records} records ({:.0} MB), median of {reps}:\n  cordon   {verify_s:.2} s ({:.0} records/s)\n  sha256   {sha_s:.2} s (whole file streamed, no chain)\n  ratio    {:.2}x the time of a whole-file hash",
        size as f64 / 1e6,
        records as f64 / verify_s,
        verify_s / sha_s
    );
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One SHA-256 over a file, read in 1 MiB pieces (as `verify_file` reads).
fn sha256_file(path: &std::path::Path) -> std::io::Result<[u8; 32]> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut h = Sha256::new();
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

/// `SPINE_ONLY=verify|sha256 SPINE_LOG=<file>`: do only that, once (for
/// counting instructions under callgrind, which the machine's load does not
/// change; see scripts/bench-spine).
fn only(what: &str) -> Result<(), Box<dyn std::error::Error>> {
    let log = std::path::PathBuf::from(std::env::var("SPINE_LOG")?);
    match what {
        "verify" => {
            let r = verify_file(&log)?;
            println!("{r:?}");
        }
        "sha256" => {
            println!("{:x?}", sha256_file(&log)?);
        }
        other => return Err(format!("SPINE_ONLY={other}: verify or sha256").into()),
    }
    Ok(())
}
