//! The fast path of `log verify`: prove a line is a canonical, correctly
//! hashed record by scanning its stored bytes once, without building a
//! `serde_json::Value` and serialising it again.
//!
//! The full check (parse, re-serialise, compare, hash the re-serialised
//! object) costs about eight times one SHA-256 over the file. Here the line
//! is scanned once against a *strict subset* of what the full check accepts,
//! and the record's hash is computed over the stored bytes with the `hash`
//! member cut out, which are exactly the bytes the full check would hash when
//! the line is canonical.
//!
//! Soundness rests on one rule: [`check`] answers `Some` only for lines the
//! full check accepts with the same result; whatever it is not sure of (an
//! escape it does not handle, a float, a long number, deep nesting, a failed
//! comparison) it answers `None`, and the caller runs the full check, which
//! decides and words the error. So the fast path can only make verification
//! faster, never more lenient; a test compares both on every byte flip of a
//! log (`fast_path_agrees_with_the_full_check_*` in `tests.rs`).
//!
//! What "canonical" means is what `serde_json::to_vec` of a parsed `Value`
//! writes, and that depends on a feature of serde_json: with
//! `preserve_order` (turned on by a dependency in the default build) object
//! members keep their order and `Map::remove` is a swap-remove; without it
//! (the fuzz crate's build) members are sorted. [`sorted_maps`] asks
//! serde_json which one this build has, once.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// Nesting deeper than this is left to the full check (serde_json's own
/// limit is 128; cordon's records nest four or five levels).
const MAX_DEPTH: usize = 32;
/// Objects with more members than this are left to the full check (the
/// duplicate-key check here is quadratic).
const MAX_MEMBERS: usize = 64;

/// Whether serde_json's maps are sorted (no `preserve_order`) in this build.
fn sorted_maps() -> bool {
    static SORTED: OnceLock<bool> = OnceLock::new();
    *SORTED.get_or_init(|| {
        serde_json::from_str::<serde_json::Value>(r#"{"b":0,"a":0}"#)
            .ok()
            .and_then(|v| serde_json::to_string(&v).ok())
            .is_some_and(|text| text == r#"{"a":0,"b":0}"#)
    })
}

/// `Some(hash)` when `body` (one line, no newline) is a canonical record with
/// seq `expected`, prev `prev` and a hash that matches its content; `None`
/// when the full check must decide. [`Checker::scan`], [`digest`] and
/// [`Scanned::accepts`] in one call: what `log verify` does per line, less
/// the buffers it reuses and the hashing it may do on another thread.
#[cfg(test)]
pub(super) fn check(body: &[u8], expected: u64, prev: &str) -> Option<String> {
    let s = Checker::new().scan(body)?;
    if !s.accepts(body, expected, prev.as_bytes(), &digest(body, s.cut)) {
        return None;
    }
    // Valid UTF-8 (checked by the scan), so this cannot fail.
    std::str::from_utf8(s.stated(body)).ok().map(str::to_owned)
}

/// What the scan of one line found: a canonical object with a non-negative
/// integer `seq`, and `prev` and `hash` strings without escapes. Whether it
/// chains and hashes correctly is [`Scanned::accepts`]'s to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Scanned {
    seq: u64,
    /// The bytes of `prev`'s value, without the quotes.
    prev: (usize, usize),
    /// The bytes of `hash`'s value, without the quotes.
    stated: (usize, usize),
    /// The bytes cut out of the line to get the hashed object (the `hash`
    /// member and its comma).
    pub cut: (usize, usize),
}

impl Scanned {
    /// The line's stated hash (its `hash` member's value).
    pub fn stated<'b>(&self, body: &'b [u8]) -> &'b [u8] {
        &body[self.stated.0..self.stated.1]
    }

    /// Whether the line is record `expected`, follows `prev`, and states
    /// `digest` (the SHA-256 of the line with [`Scanned::cut`] cut out, in
    /// lowercase hex) as its hash.
    pub fn accepts(&self, body: &[u8], expected: u64, prev: &[u8], digest: &[u8; 64]) -> bool {
        self.seq == expected
            && &body[self.prev.0..self.prev.1] == prev
            && self.stated(body) == digest
    }
}

/// SHA-256 of `body` with the bytes `cut` cut out, in lowercase hex: a
/// record's hash when `cut` is its `hash` member ([`Scanned::cut`]).
pub(super) fn digest(body: &[u8], cut: (usize, usize)) -> [u8; 64] {
    let mut d = Sha256::new();
    d.update(&body[..cut.0]);
    d.update(&body[cut.1..]);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = [0u8; 64];
    for (k, byte) in d.finalize().iter().enumerate() {
        hex[2 * k] = HEX[usize::from(byte >> 4)];
        hex[2 * k + 1] = HEX[usize::from(byte & 0xf)];
    }
    hex
}

/// Where the `hash` member is in a line cordon wrote: its last member, so the
/// line ends with `,"hash":"` 64 bytes `"}`. A guess from the last 75 bytes
/// alone, which lets another thread hash the line before it is scanned; the
/// guess is used only when the scan finds the same [`Scanned::cut`].
pub(super) fn tail_cut(body: &[u8]) -> Option<(usize, usize)> {
    const OPEN: &[u8] = b",\"hash\":\"";
    let n = body.len();
    let at = n.checked_sub(OPEN.len() + 64 + 2)?;
    (&body[at..at + OPEN.len()] == OPEN && &body[n - 2..] == b"\"}").then_some((at, n - 1))
}

/// The scanner of [`check`], with buffers reused from line to line.
pub(super) struct Checker {
    sorted: bool,
    keys: Vec<(usize, usize)>,
    top: Vec<Member>,
}

impl Checker {
    pub fn new() -> Self {
        Checker {
            sorted: sorted_maps(),
            keys: Vec::new(),
            top: Vec::new(),
        }
    }

    /// `Some` when `body` (one line, no newline) is a canonical object with
    /// the members a record chains by; `None` when the full check must decide.
    pub fn scan(&mut self, body: &[u8]) -> Option<Scanned> {
        // serde_json writes no raw control byte (whitespace included) outside
        // or inside strings, so a line with one is not canonical; checked
        // once here (a loop the compiler vectorises) so that the string scan
        // below looks for `"` and `\` alone.
        let (low, high) = body
            .iter()
            .fold((u8::MAX, 0u8), |(l, h), &c| (l.min(c), h.max(c)));
        if low < 0x20 {
            return None;
        }
        // Outside strings the grammar below admits only ASCII, so this
        // validates every string's UTF-8 (serde_json refuses invalid UTF-8 in
        // a string); all-ASCII lines (the same pass) are valid UTF-8.
        if high >= 0x80 {
            std::str::from_utf8(body).ok()?;
        }
        self.keys.clear();
        self.top.clear();
        let mut s = Scanner {
            b: body,
            i: 0,
            sorted: self.sorted,
            keys: &mut self.keys,
            top: &mut self.top,
        };
        if s.peek()? != b'{' {
            return None;
        }
        s.object(0)?;
        if s.i != body.len() {
            return None;
        }
        let top = &self.top;
        let (mut seq, mut prev_at, mut hash_at) = (None, None, None);
        for (n, m) in top.iter().enumerate() {
            match &body[m.key.0..m.key.1] {
                b"seq" => seq = Some(m),
                b"prev" => prev_at = Some(m),
                b"hash" => hash_at = Some(n),
                _ => {}
            }
        }
        // seq: a non-negative integer (the grammar admits at most 19 digits,
        // which always fit a u64, and no sign on it).
        let digits = &body[seq?.value.0..seq?.value.1];
        if digits.first() == Some(&b'-') || digits.first() == Some(&b'"') {
            return None;
        }
        let mut seq = 0u64;
        for d in digits {
            if !d.is_ascii_digit() {
                return None;
            }
            seq = seq * 10 + u64::from(d - b'0');
        }
        // prev and hash: strings without escapes, so their stored bytes are
        // their values.
        let p = prev_at?;
        if p.escaped || body[p.value.0] != b'"' {
            return None;
        }
        let h_index = hash_at?;
        let h = &top[h_index];
        if h.escaped || body[h.value.0] != b'"' {
            return None;
        }
        // The hashed object is the record without `hash`. With ordered maps
        // the full check swap-removes it, which is a plain removal only when
        // it is the last member (cordon writes it last); anything else goes
        // the slow way.
        let last = top.len() - 1;
        if !self.sorted && h_index != last {
            return None;
        }
        // A member starts at its key's opening quote, one byte before `key.0`.
        let cut = if h_index > 0 {
            // `,"hash":"..."`: from the comma before the key to the value's end.
            (h.key.0 - 2, h.value.1)
        } else if last > 0 {
            // First of several: the member and the comma after it.
            (h.key.0 - 1, top[1].key.0 - 1)
        } else {
            (h.key.0 - 1, h.value.1)
        };
        Some(Scanned {
            seq,
            prev: (p.value.0 + 1, p.value.1 - 1),
            stated: (h.value.0 + 1, h.value.1 - 1),
            cut,
        })
    }
}

/// The length of the run of `s` before its first `"` or `\\`; `None` if it
/// has neither. Eight bytes at a time (most strings of a record are short,
/// where a call to `memchr` costs more than it saves), then byte by byte.
fn plain_run(s: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    const QUOTE: u64 = u64::from_ne_bytes([b'"'; 8]);
    const BACKSLASH: u64 = u64::from_ne_bytes([b'\\'; 8]);
    // Bit 7 of byte k set where byte k of `v` is zero: exact for the lowest
    // zero byte (a borrow can only flag bytes above a real zero), which is
    // the one wanted.
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let mut at = 0;
    for chunk in s.chunks_exact(8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let v = u64::from_le_bytes(w);
        let hits = zero(v ^ QUOTE) | zero(v ^ BACKSLASH);
        if hits != 0 {
            return Some(at + (hits.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    s[at..]
        .iter()
        .position(|c| *c == b'"' || *c == b'\\')
        .map(|k| at + k)
}

/// A member of the top-level object: byte ranges of its key (without the
/// quotes) and of its value (with the quotes, for a string).
struct Member {
    key: (usize, usize),
    value: (usize, usize),
    escaped: bool,
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    sorted: bool,
    /// Keys of the objects being scanned, innermost last (duplicate check).
    keys: &'a mut Vec<(usize, usize)>,
    top: &'a mut Vec<Member>,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        if self.peek()? == c {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    fn value(&mut self, depth: usize) -> Option<bool> {
        match self.peek()? {
            b'{' => self.object(depth + 1).map(|_| false),
            b'[' => self.array(depth + 1).map(|_| false),
            b'"' => self.string(),
            b't' => self.literal(b"true").map(|_| false),
            b'f' => self.literal(b"false").map(|_| false),
            b'n' => self.literal(b"null").map(|_| false),
            b'-' | b'0'..=b'9' => self.integer().map(|_| false),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b.get(self.i..self.i + word.len())? == word {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

    /// `0`, `[1-9][0-9]{0,18}` (a u64) or `-[1-9][0-9]{0,17}` (an i64): the
    /// integers serde_json writes back byte for byte. Anything else (floats,
    /// exponents, `-0`, longer numbers) is left to the full check.
    fn integer(&mut self) -> Option<()> {
        let neg = self.peek()? == b'-';
        if neg {
            self.i += 1;
        }
        let start = self.i;
        match self.peek()? {
            b'0' if !neg => {
                self.i += 1;
            }
            b'1'..=b'9' => {
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.i += 1;
                }
            }
            _ => return None,
        }
        let len = self.i - start;
        if len > if neg { 18 } else { 19 } {
            return None;
        }
        match self.peek() {
            Some(b'.' | b'e' | b'E') => None,
            _ => Some(()),
        }
    }

    /// A string in canonical form; returns whether it holds escapes. Only the
    /// escapes serde_json writes are taken (`\"` `\\` `\b` `\f` `\n` `\r`
    /// `\t`, and `\u00xx` for the other control bytes); any other `\u` and
    /// `\/` go to the full check.
    fn string(&mut self) -> Option<bool> {
        self.eat(b'"')?;
        let mut escaped = false;
        loop {
            // The plain run: most of a record's bytes. Control bytes (which
            // serde_json refuses raw) were refused for the whole line by
            // `Checker::scan`; what ends the run is `"` or `\\`.
            self.i += plain_run(self.b.get(self.i..)?)?;
            match self.b[self.i] {
                b'"' => {
                    self.i += 1;
                    return Some(escaped);
                }
                b'\\' => {
                    match self.b.get(self.i + 1)? {
                        b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 2,
                        b'u' => {
                            // serde_json writes `\u00xx` (lowercase) for the
                            // control bytes without a short escape, and for
                            // nothing else.
                            let hex = self.b.get(self.i + 2..self.i + 6)?;
                            let v = match (hex[0], hex[1], hex[2], hex[3]) {
                                (b'0', b'0', hi @ b'0'..=b'1', lo) => {
                                    let lo = match lo {
                                        b'0'..=b'9' => lo - b'0',
                                        b'a'..=b'f' => lo - b'a' + 10,
                                        _ => return None,
                                    };
                                    (hi - b'0') * 16 + lo
                                }
                                _ => return None,
                            };
                            if matches!(v, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                                return None;
                            }
                            self.i += 6;
                        }
                        _ => return None,
                    }
                    escaped = true;
                }
                _ => return None,
            }
        }
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.eat(b'[')?;
        if self.eat(b']').is_some() {
            return Some(());
        }
        loop {
            self.value(depth)?;
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn object(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.eat(b'{')?;
        let frame = self.keys.len();
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            let k0 = self.i + 1;
            if self.string()? {
                return None; // an escaped key: let the full check compare it
            }
            let key = (k0, self.i - 1);
            let kb = &self.b[key.0..key.1];
            let siblings = &self.keys[frame..];
            if siblings.len() >= MAX_MEMBERS {
                return None;
            }
            if self.sorted {
                // Sorted maps: strictly increasing keys (no duplicates either).
                if let Some(last) = siblings.last() {
                    if self.b[last.0..last.1] >= *kb {
                        return None;
                    }
                }
            } else if siblings.iter().any(|k| self.b[k.0..k.1] == *kb) {
                // A duplicate key: serde_json keeps one, so the line would
                // not be written back as it is.
                return None;
            }
            self.keys.push(key);
            self.eat(b':')?;
            let v0 = self.i;
            let escaped = self.value(depth)?;
            if depth == 0 {
                self.top.push(Member {
                    key,
                    value: (v0, self.i),
                    escaped,
                });
            }
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    self.keys.truncate(frame);
                    return Some(());
                }
                _ => return None,
            }
        }
    }
}
