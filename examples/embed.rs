//! A Rust program that embeds tierjit: it loads examples/kernel.c, calls
//! `weighted_sum` through the address tierjit gave it until the function
//! runs optimized code, and prints the per-call time of the first and
//! last rounds of calls.
//!
//!   cargo run --release --example embed [examples/kernel.c]

use std::time::{Duration, Instant};

use tierjit::engine::Engine;
use tierjit::versions::Tier;

const N: usize = 1000;
const CALLS_PER_ROUND: u32 = 100;
const EXTRA_ROUNDS: u32 = 20;

type WeightedSum = extern "C" fn(*const i64, i64) -> i64;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or("examples/kernel.c".into());
    let mut config = tierjit::Config::default();
    config.thresholds.calls = 200;
    let engine = Engine::new(config)?;
    let module = engine.load(&path)?;
    let address = module.function("weighted_sum")?;
    // SAFETY: kernel.c defines `long weighted_sum(const long *, long)`, and
    // `module` outlives every call.
    let f: WeightedSum = unsafe { std::mem::transmute(address) };

    let values: Vec<i64> = (0..N as i64).map(|i| i * 3 - 700).collect();
    let want: i64 = values
        .iter()
        .enumerate()
        .map(|(i, v)| v * (i as i64 % 7 + 1))
        .sum();
    let round = || {
        let start = Instant::now();
        for _ in 0..CALLS_PER_ROUND {
            assert_eq!(f(values.as_ptr(), N as i64), want, "wrong result");
        }
        start.elapsed() / CALLS_PER_ROUND
    };
    let optimized = || {
        module
            .stats()
            .functions
            .iter()
            .any(|s| s.name == "weighted_sum" && s.tier == Tier::Optimized)
    };

    let first = round();
    let (mut last, mut rounds, mut extra) = (first, 1, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while extra < EXTRA_ROUNDS && Instant::now() < deadline {
        last = round();
        rounds += 1;
        assert_eq!(module.function("weighted_sum")?, address, "address changed");
        if extra > 0 || optimized() {
            extra += 1;
        }
    }
    println!(
        "first round: {} ns/call, last round: {} ns/call, {rounds} rounds of {CALLS_PER_ROUND} calls, same address {address:?}",
        first.as_nanos(),
        last.as_nanos()
    );
    println!("stats: {:?}", module.stats());
    if !optimized() {
        return Err("weighted_sum was not optimized within 60 s".into());
    }
    Ok(())
}
