//! Every fuzz target (`tests::fuzz`) over its committed corpus (`fuzz/corpus/<target>/`), its seeds, and
//! a few thousand deterministic mutations of them and pseudo-random inputs, on stable and within a time
//! bound. A global allocator records the largest single allocation made while a target runs: untrusted
//! input must not make a decoder allocate far beyond its own size.
//!
//! The coverage-guided campaigns themselves run under cargo-fuzz on nightly: docs/fuzzing.md.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Records the largest allocation request made by this thread while it tracks (the other tests of this
/// file run on other threads and are not counted).
struct Tracking;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // try_with: the thread-locals may be gone while a thread exits.
    let _ = TRACKING.try_with(|t| {
        if t.get() {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    });
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

/// Mutated and random inputs per target on top of the corpus.
const GENERATED_PER_TARGET: usize = 3000;
/// The whole test's time bound (release); each target gets a share.
const TOTAL_BUDGET: Duration = Duration::from_secs(60);
/// Largest single allocation allowed: a fixed floor (the fixture, formatting, parser tables) plus a
/// multiple of the input's size.
fn allocation_bound(input_len: usize) -> usize {
    (1 << 20) + 16 * input_len
}

/// xorshift64*: deterministic, seeded, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Byte values that sit on decoder boundaries: length prefixes, tags, bools, version bytes.
const INTERESTING: &[u8] = &[0, 1, 2, 3, 0x7f, 0x80, 0xfe, 0xff, b'"', b'{', b'}', b'[', b']', b',', b'=', b'\n'];

fn mutate(rng: &mut Rng, base: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(8) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 if !v.is_empty() => {
                let i = rng.below(v.len());
                let n = 1 + rng.below(16.min(v.len() - i));
                v.drain(i..i + n);
            }
            3 => {
                let i = rng.below(v.len() + 1);
                let b = INTERESTING[rng.below(INTERESTING.len())];
                v.insert(i, b);
            }
            4 if v.len() >= 4 => {
                // A length prefix or integer made huge.
                let i = rng.below(v.len() - 3);
                v[i..i + 4].copy_from_slice(&[0xff, 0xff, 0xff, 0x7f]);
            }
            5 if !v.is_empty() => v.truncate(rng.below(v.len())),
            6 if !other.is_empty() => {
                // Splice a piece of another input in.
                let a = rng.below(other.len());
                let b = a + rng.below(other.len() - a) + 1;
                let i = rng.below(v.len() + 1);
                v.splice(i..i, other[a..b].iter().copied());
            }
            _ => {
                let i = rng.below(v.len() + 1);
                let n = rng.below(8);
                let piece: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                v.splice(i..i, piece);
            }
        }
    }
    v
}

fn corpus(name: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {} missing: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).expect("read corpus file")).collect()
}

/// Run one input; returns the largest single allocation it caused.
fn run(name: &str, f: fn(&[u8]), input: &[u8]) -> usize {
    LARGEST.with(|l| l.set(0));
    TRACKING.with(|t| t.set(true));
    let outcome = std::panic::catch_unwind(|| f(input));
    TRACKING.with(|t| t.set(false));
    if let Err(e) = outcome {
        let path = std::env::temp_dir().join(format!("fuzz-smoke-{name}-crash"));
        let _ = std::fs::write(&path, input);
        std::panic::resume_unwind(Box::new(format!(
            "target {name} failed on an input of {} bytes (written to {}): {:?}",
            input.len(),
            path.display(),
            e.downcast_ref::<String>().map(String::as_str).or(e.downcast_ref::<&str>().copied())
        )));
    }
    let largest = LARGEST.with(Cell::get);
    if largest > allocation_bound(input.len()) {
        let _ = std::fs::write(std::env::temp_dir().join(format!("fuzz-smoke-{name}-alloc")), input);
    }
    assert!(
        largest <= allocation_bound(input.len()),
        "target {name}: one allocation of {largest} bytes for an input of {} bytes",
        input.len()
    );
    largest
}

#[test]
fn every_target_over_its_corpus_and_mutations() {
    let start = Instant::now();
    let share = TOTAL_BUDGET / tests::fuzz::TARGETS.len() as u32;
    let mut report = Vec::new();
    for (i, (name, f)) in tests::fuzz::TARGETS.iter().enumerate() {
        let t0 = Instant::now();
        let mut inputs = corpus(name);
        assert!(!inputs.is_empty(), "corpus of {name} is empty");
        inputs.extend(tests::fuzz::seeds(name));
        let mut largest = 0;
        for input in &inputs {
            largest = largest.max(run(name, *f, input));
        }
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1));
        let mut generated = 0;
        while generated < GENERATED_PER_TARGET && t0.elapsed() < share {
            let input = if generated % 10 == 9 {
                let n = rng.below(512);
                (0..n).map(|_| rng.next() as u8).collect()
            } else {
                let base = &inputs[rng.below(inputs.len())];
                let other = &inputs[rng.below(inputs.len())];
                mutate(&mut rng, base, other)
            };
            largest = largest.max(run(name, *f, &input));
            generated += 1;
        }
        // Every target must get through a meaningful number of inputs in its share.
        assert!(generated >= 500, "target {name}: only {generated} generated inputs in {share:?}");
        report.push(format!(
            "{name}: {} corpus+seed inputs, {generated} generated, {:?}, largest allocation {largest} bytes",
            inputs.len(),
            t0.elapsed()
        ));
    }
    for line in &report {
        println!("{line}");
    }
    assert!(start.elapsed() < TOTAL_BUDGET + Duration::from_secs(15), "smoke run took {:?}", start.elapsed());
}

/// The properties are not vacuous: each target's seeds are accepted by its decoder, so a broken decoder
/// that refused everything would be caught by the canonical checks above, not pass them silently.
#[test]
fn seeds_are_accepted() {
    use ledger_core::{Block, SignedTransaction, encoding};
    for s in tests::fuzz::seeds("tx") {
        assert!(SignedTransaction::decode(&s, 1024).is_ok());
    }
    for s in tests::fuzz::seeds("block") {
        assert!(Block::decode(&s, 1 << 20).is_ok());
    }
    for s in tests::fuzz::seeds("cert") {
        assert!(encoding::decode::<ledger_core::CommitCertificate>(&s, 1 << 20).is_ok());
    }
    for s in tests::fuzz::seeds("wire_sync_response") {
        assert!(node::wire::SyncResponse::decode(&s, 1 << 24).is_ok());
    }
    for s in tests::fuzz::seeds("genesis_json") {
        assert!(ledger_core::Genesis::from_json(std::str::from_utf8(&s).expect("utf8")).is_ok());
    }
    for s in tests::fuzz::seeds("config_toml") {
        let home = std::path::Path::new("/h");
        let r =
            node::config::from_str(home, &home.join("config.toml"), std::str::from_utf8(&s).expect("utf8"), &[], &[]);
        assert!(r.is_ok(), "{r:?}");
    }
    for s in tests::fuzz::seeds("keystore") {
        assert!(wallet_cli::keystore::parse_key_file(std::str::from_utf8(&s).expect("utf8")).is_ok());
    }
    let n = tests::fuzz::seeds("keystore").len();
    assert_eq!(n, 2, "both key file kinds are seeded");
}

/// The canonical property is not vacuous: a lax decoder that ignores trailing bytes (plain borsh
/// `deserialize`, not `encoding::decode`) fails it, and a decoder under a limit it does not check fails it.
#[test]
fn a_lax_decoder_is_caught() {
    use borsh::BorshDeserialize;
    use ledger_core::SignedTransaction;
    let seed = tests::fuzz::seeds("tx").remove(0);
    let t = SignedTransaction::decode(&seed, 1024).expect("seed decodes");
    let lax = |d: &[u8], _max: usize| SignedTransaction::deserialize(&mut &d[..]);
    let caught = std::panic::catch_unwind(|| {
        tests::fuzz::assert_canonical("lax", &seed, 1024, &t, SignedTransaction::encode, lax)
    });
    assert!(caught.is_err(), "a decoder accepting trailing bytes or ignoring its limit must fail the property");
    // The real decoder passes the same check.
    tests::fuzz::assert_canonical("tx", &seed, 1024, &t, SignedTransaction::encode, SignedTransaction::decode);
}
