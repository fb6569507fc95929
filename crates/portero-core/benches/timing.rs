//! The one timing loop of the micro-benches: warm up, then time `rounds`
//! calls and print microseconds per call.

use std::time::Instant;

pub fn time(name: &str, rounds: u32, mut f: impl FnMut()) {
    for _ in 0..rounds / 10 + 1 {
        f();
    }
    let start = Instant::now();
    for _ in 0..rounds {
        f();
    }
    let micros = start.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
    println!("{name:<48} {micros:>9.2} µs");
}
