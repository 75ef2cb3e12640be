//! Maglev figures for `cargo xtask bench`: build time of a 65537-slot table
//! for 1,000 reals, and the share of slots that change owner when one real
//! leaves. No harness: it prints `name value` lines and xtask does the
//! statistics (`cargo bench -p lb-userspace --bench maglev -- --runs N`).

use std::time::Instant;
use xlb::maglev::{Backend, build};

const SIZE: u32 = 65537;
const REALS: usize = 1000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(5)
        .clamp(1, 100);
    // Distinct reals on one port, as the agent hands them over.
    let all: Vec<Backend> = (0..REALS)
        .map(|i| Backend {
            fold: u32::from_be_bytes([10, 1, (i / 256) as u8, (i % 256) as u8]),
            port: 80,
            weight: 1,
        })
        .collect();
    for _ in 0..runs {
        let t = Instant::now();
        let table = build(std::hint::black_box(&all), SIZE).expect("reals have weight");
        println!("build_ms {}", t.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(table);
    }

    let gone = REALS / 2;
    let rest: Vec<Backend> = all
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != gone)
        .map(|(_, b)| *b)
        .collect();
    let before = build(&all, SIZE).expect("reals have weight");
    let after = build(&rest, SIZE).expect("reals have weight");
    let moved = before
        .iter()
        .zip(&after)
        .filter(|&(&b, &a)| all[b as usize] != rest[a as usize])
        .count();
    let gone_owned = before.iter().filter(|&&b| b as usize == gone).count();
    println!("moved_share {}", moved as f64 / f64::from(SIZE));
    // The least any scheme can move: the slots the leaving real held.
    println!("minimum_share {}", gone_owned as f64 / f64::from(SIZE));
}
