//! The fuzz harness: a runner that counts its cases, byte-level mutations of real samples, JSON
//! trees over a sample's vocabulary, and a per-thread allocation meter for the bounds.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Cases per target in CI: each target runs in well under 20 s on a loaded 2-core machine
/// (debug build). `PROPTEST_CASES` raises it for a long run.
pub const CI_CASES: u32 = 3_000;

/// Run `test` on `cases` inputs from `strategy`; panics (caught by proptest) and failed
/// properties fail the target, shrunk to a minimal input. Prints and returns the count.
pub fn fuzz<S: Strategy>(
    name: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) -> u32 {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let ran = AtomicU32::new(0);
    let result = runner.run(&strategy, |input| {
        ran.fetch_add(1, Ordering::Relaxed);
        test(input)
    });
    if let Err(e) = result {
        panic!("fuzz {name}: {e}");
    }
    let ran = ran.load(Ordering::Relaxed);
    assert!(ran >= cases, "fuzz {name}: only {ran} of {cases} cases ran");
    println!("fuzz {name}: {ran} cases, no panic, every bound held");
    ran
}

/// Tokens that break parsers: quotes, brackets, huge and negative numbers, NUL, separators.
const TOKENS: &[&str] = &[
    "\"",
    "\\",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "null",
    "true",
    "-1",
    "0",
    "1e999",
    "18446744073709551616",
    "-9223372036854775809",
    "\\u0000",
    "\\ud800",
    "\u{0}",
    "\n",
    "\r\n",
    "|",
    "=",
    "#",
    "/",
    "/p2p/",
    "/x/",
    "/ip4/",
    "/tcp/",
    "é",
    "\u{202e}",
    "Qm",
    "12D3KooW",
];

/// Longest single repetition a mutation may add: past every line and file bound we test.
const MAX_REPEAT: usize = 300_000;

/// One edit of a sample.
#[derive(Debug, Clone)]
pub enum Edit {
    Flip(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Delete(prop::sample::Index, usize),
    Token(prop::sample::Index, prop::sample::Index),
    /// Repeat the byte range at the index `n` times (long fields, deep nesting).
    Repeat(prop::sample::Index, usize, usize),
    Truncate(prop::sample::Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    let index = any::<prop::sample::Index>;
    prop_oneof![
        4 => (index(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
        3 => (index(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        2 => (index(), 1..16usize).prop_map(|(i, n)| Edit::Delete(i, n)),
        4 => (index(), index()).prop_map(|(i, t)| Edit::Token(i, t)),
        1 => (index(), 1..32usize, prop_oneof![9 => 1..64usize, 1 => 1..MAX_REPEAT / 32])
            .prop_map(|(i, len, n)| Edit::Repeat(i, len, n)),
        1 => index().prop_map(Edit::Truncate),
    ]
}

/// Apply `edits` to `sample`.
pub fn apply(sample: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut out = sample.to_vec();
    for e in edits {
        let at = |i: &prop::sample::Index, len: usize| if len == 0 { 0 } else { i.index(len + 1) };
        match e {
            Edit::Flip(i, b) if !out.is_empty() => {
                let p = i.index(out.len());
                out[p] ^= b | 1;
            }
            Edit::Flip(..) => {}
            Edit::Insert(i, b) => {
                let p = at(i, out.len());
                out.insert(p, *b);
            }
            Edit::Delete(i, n) => {
                let p = at(i, out.len()).min(out.len());
                out.drain(p..(p + n).min(out.len()));
            }
            Edit::Token(i, t) => {
                let p = at(i, out.len());
                let token = TOKENS[t.index(TOKENS.len())].as_bytes();
                out.splice(p..p, token.iter().copied());
            }
            Edit::Repeat(i, len, n) => {
                let p = at(i, out.len()).min(out.len());
                let piece: Vec<u8> = out[p..(p + len).min(out.len())].to_vec();
                let piece = if piece.is_empty() {
                    b"A".to_vec()
                } else {
                    piece
                };
                let times = (*n).min(MAX_REPEAT / piece.len().max(1));
                let grown: Vec<u8> = piece
                    .iter()
                    .copied()
                    .cycle()
                    .take(piece.len() * times)
                    .collect();
                out.splice(p..p, grown);
            }
            Edit::Truncate(i) => {
                let p = at(i, out.len()).min(out.len());
                out.truncate(p);
            }
        }
    }
    out
}

/// Inputs for a parser whose real inputs look like `samples`: mostly mutated samples, some
/// samples as they are, some random bytes.
pub fn inputs(samples: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let mutated = (
        prop::sample::select(samples.clone()),
        prop::collection::vec(edit(), 1..8),
    )
        .prop_map(|(s, edits)| apply(&s, &edits));
    prop_oneof![
        8 => mutated,
        1 => prop::sample::select(samples),
        2 => prop::collection::vec(any::<u8>(), 0..512),
    ]
}

/// The same as text (invalid UTF-8 replaced), for parsers of `&str`.
pub fn texts<S: AsRef<str>>(samples: &[S]) -> impl Strategy<Value = String> {
    let samples = samples
        .iter()
        .map(|s| s.as_ref().as_bytes().to_vec())
        .collect();
    inputs(samples).prop_map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// JSON trees whose keys and strings come from `vocabulary` (a sample's own field names and
/// values), so that every field meets every type.
pub fn json_trees(vocabulary: &'static [&'static str]) -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let word = prop::sample::select(vocabulary).prop_map(str::to_owned);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        word.clone().prop_map(Value::String),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(word.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Inputs for a JSON parser: mutated samples, trees over the vocabulary, random bytes.
pub fn json_inputs<S: AsRef<str>>(
    samples: &[S],
    vocabulary: &'static [&'static str],
) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => texts(samples),
        2 => json_trees(vocabulary).prop_map(|v| v.to_string()),
    ]
}

/// Bytes allocated and not yet freed by this thread, and the most seen since the last reset.
pub struct Meter;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn grow(by: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add(by);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn shrink(by: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(by)));
}

unsafe impl GlobalAlloc for Meter {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grow(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        shrink(layout.size());
    }
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, layout, size) };
        if !q.is_null() {
            shrink(layout.size());
            grow(size);
        }
        q
    }
}

#[global_allocator]
static METER: Meter = Meter;

/// Run `f`; its result and the most bytes it had allocated at once on this thread.
pub fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    (out, PEAK.with(Cell::get).saturating_sub(base))
}

/// Fail the case when `what` allocated more than `bound` bytes for an input of `len` bytes.
pub fn within(what: &str, peak: usize, bound: usize, len: usize) -> Result<(), TestCaseError> {
    prop_assert!(
        peak <= bound,
        "{what}: {peak} bytes allocated at once for a {len}-byte input (bound {bound})"
    );
    Ok(())
}

/// Fail the case when an error message quotes more than `max` bytes of its input.
pub fn short_error(what: &str, error: &str, max: usize) -> Result<(), TestCaseError> {
    prop_assert!(
        error.len() <= max,
        "{what}: a {}-byte error message: {}…",
        error.len(),
        error.chars().take(120).collect::<String>()
    );
    Ok(())
}
