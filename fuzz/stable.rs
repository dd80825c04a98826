//! What the stable runs of the fuzz targets share (`crates/*/tests/*_garbage.rs` and
//! `tests/journal_garbage.rs` include this file and a target's): a small deterministic PRNG, a
//! mutator that also splices in the target's libFuzzer dictionary, and the committed seeds.
//!
//! Each such test runs its target's checks over the seeds, then over a bounded number of
//! mutated seeds and random inputs, so CI (stable, no cargo-fuzz) exercises every target; the
//! fuzzer explores far more. The seeds in `fuzz/seeds/<target>` are what the target's `seeds()`
//! makes (plus, for some targets, files copied in by hand); after changing `seeds()`, rewrite
//! them with `MOAT_WRITE_FUZZ_SEEDS=1 cargo test -p <crate> --test <test>`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// SplitMix64: deterministic, so a failure is reproduced by running the test again.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.u64() % n as u64) as usize
    }

    pub fn byte(&mut self) -> u8 {
        self.u64() as u8
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// The repository's root, found from a crate's manifest directory.
pub fn root(manifest_dir: &str) -> PathBuf {
    let mut dir = Path::new(manifest_dir);
    while !dir.join("fuzz/seeds").is_dir() {
        dir = dir.parent().expect("fuzz/seeds above the crate");
    }
    dir.to_path_buf()
}

/// The tokens of `fuzz/dicts/<target>.dict` (libFuzzer's format: `"..."` or `name="..."` per
/// line, `\xNN`, `\\` and `\"` escapes, `#` comments). Panics on a line libFuzzer would reject.
pub fn dict(manifest_dir: &str, target: &str) -> Vec<Vec<u8>> {
    let path = root(manifest_dir).join(format!("fuzz/dicts/{target}.dict"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let q = line
            .find('"')
            .unwrap_or_else(|| panic!("{target}.dict:{}: no quote", n + 1));
        let name = &line[..q];
        assert!(
            name.is_empty()
                || (name.ends_with('=')
                    && name[..name.len() - 1]
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_')),
            "{target}.dict:{}: bad name",
            n + 1
        );
        let body = line[q + 1..]
            .strip_suffix('"')
            .unwrap_or_else(|| panic!("{target}.dict:{}: no closing quote", n + 1))
            .as_bytes();
        let mut tok = Vec::new();
        let mut i = 0;
        while i < body.len() {
            match body[i] {
                b'\\' => {
                    match body.get(i + 1) {
                        Some(b'\\') => tok.push(b'\\'),
                        Some(b'"') => tok.push(b'"'),
                        Some(b'x') => {
                            let hex = std::str::from_utf8(body.get(i + 2..i + 4).unwrap_or(b""))
                                .unwrap_or("");
                            let v = u8::from_str_radix(hex, 16)
                                .unwrap_or_else(|_| panic!("{target}.dict:{}: bad \\x", n + 1));
                            tok.push(v);
                            i += 2;
                        }
                        _ => panic!("{target}.dict:{}: bad escape", n + 1),
                    }
                    i += 2;
                }
                b'"' => panic!("{target}.dict:{}: unescaped quote", n + 1),
                b => {
                    assert!(
                        b.is_ascii_graphic() || b == b' ',
                        "{target}.dict:{}: unprintable",
                        n + 1
                    );
                    tok.push(b);
                    i += 1;
                }
            }
        }
        out.push(tok);
    }
    assert!(!out.is_empty(), "{target}.dict is empty");
    out
}

/// The committed seeds of `target` (every file in `fuzz/seeds/<target>`), after checking that
/// each of `generated` is there as made (or writing them, with `MOAT_WRITE_FUZZ_SEEDS`).
pub fn seeds(
    manifest_dir: &str,
    target: &str,
    generated: &[(String, Vec<u8>)],
) -> Vec<(String, Vec<u8>)> {
    let dir = root(manifest_dir).join("fuzz/seeds").join(target);
    if std::env::var_os("MOAT_WRITE_FUZZ_SEEDS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, data) in generated {
            std::fs::write(dir.join(name), data).unwrap();
        }
    }
    for (name, data) in generated {
        let on_disk = std::fs::read(dir.join(name)).unwrap_or_else(|e| {
            panic!("fuzz/seeds/{target}/{name}: {e} (see fuzz/stable.rs's header)")
        });
        assert!(
            on_disk == *data,
            "fuzz/seeds/{target}/{name} is stale (see fuzz/stable.rs's header)"
        );
    }
    let mut all: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    all.sort();
    all
}

/// A mutation of `seed`: a few bytes changed, inserted or removed, dictionary tokens inserted
/// or written over, a piece repeated, the end cut. The first byte (the targets' control byte)
/// is left alone half the time.
pub fn mutate(rng: &mut Rng, seed: &[u8], tokens: &[Vec<u8>]) -> Vec<u8> {
    let mut d = seed.to_vec();
    for _ in 0..1 + rng.below(6) {
        let i = if d.is_empty() { 0 } else { rng.below(d.len()) };
        match rng.below(8) {
            0 if !d.is_empty() => d[i] = rng.byte(),
            1 => d.insert(i, rng.byte()),
            2 if !d.is_empty() => {
                d.remove(i);
            }
            3 | 4 => {
                let t = &tokens[rng.below(tokens.len())];
                d.splice(i..i, t.iter().copied());
            }
            5 if !d.is_empty() => {
                let t = &tokens[rng.below(tokens.len())];
                let end = (i + t.len()).min(d.len());
                d.splice(i..end, t.iter().copied());
            }
            6 if !d.is_empty() => {
                let j = i + rng.below(d.len() - i + 1);
                let piece = d[i..j.min(d.len())].to_vec();
                let at = rng.below(d.len() + 1);
                d.splice(at..at, piece);
            }
            7 if d.len() > 1 => d.truncate(1 + rng.below(d.len() - 1)),
            _ => {}
        }
    }
    if rng.chance(2) {
        if let Some(first) = d.first_mut() {
            *first = rng.byte();
        }
    }
    d
}

/// A random input: a control byte, then dictionary tokens and random bytes mixed.
pub fn random(rng: &mut Rng, tokens: &[Vec<u8>], max_parts: usize) -> Vec<u8> {
    let mut d = vec![rng.byte()];
    for _ in 0..rng.below(max_parts + 1) {
        if rng.chance(3) {
            d.push(rng.byte());
        } else {
            d.extend_from_slice(&tokens[rng.below(tokens.len())]);
        }
    }
    d
}

/// Runs `check` on `input`; if it panics, prints the input (as a Rust byte string, to paste
/// into a regression test or write out as a seed) before the panic goes on.
pub fn reporting<T>(input: &[u8], check: impl FnOnce(&[u8]) -> T) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(input))) {
        Ok(v) => v,
        Err(p) => {
            eprintln!("failing input: b\"{}\"", input.escape_ascii());
            std::panic::resume_unwind(p)
        }
    }
}

/// Runs `run` over `rounds` inputs: two in three a mutated seed, one in three random tokens of
/// the target's dictionary (seeded by `salt`, so a failure comes back on the next run).
pub fn exercise<T>(
    manifest_dir: &str,
    target: &str,
    seeds: &[(String, Vec<u8>)],
    rounds: usize,
    salt: u64,
    run: impl Fn(&[u8]) -> T,
) {
    let tokens = dict(manifest_dir, target);
    let mut rng = Rng::new(salt);
    for i in 0..rounds {
        let input = if i % 3 == 2 {
            random(&mut rng, &tokens, 24)
        } else {
            let seed = &seeds[rng.below(seeds.len())].1;
            mutate(&mut rng, seed, &tokens)
        };
        reporting(&input, &run);
    }
}
