//! `event-bus-fuzz [N] [--seed S | --random] [--target NAME]`: runs N
//! generated inputs (default 2000) through every parser of wire bytes (see
//! `targets.rs`), on the stable toolchain. Fails (exit 1) on the first
//! panic, or when one input makes a parser hold more than 64 KiB plus 64
//! bytes per input byte at once, printing the target and the seed that
//! reproduces it. Deterministic by default (seed 0), as in CI.

mod alloc;
mod gen;
mod targets;

use std::panic::AssertUnwindSafe;
use std::process::ExitCode;

use rand::rngs::StdRng;
use rand::SeedableRng;

#[global_allocator]
static COUNTING: alloc::Counting = alloc::Counting;

/// The allocation bound for an input of `len` bytes.
fn bound(len: usize) -> usize {
    64 * 1024 + 64 * len
}

struct Args {
    inputs: u64,
    seed: u64,
    only: Option<String>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        inputs: 2000,
        seed: 0,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seed" => a.seed = it.next().and_then(|s| s.parse().ok()).ok_or("--seed needs a number")?,
            "--random" => a.seed = rand::random(),
            "--target" => a.only = Some(it.next().ok_or("--target needs a name")?),
            n => a.inputs = n.parse().map_err(|_| format!("not a number of inputs: {n:?}"))?,
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("event-bus-fuzz: {e}");
            return ExitCode::from(2);
        }
    };
    let catalog = targets::Catalog::load();
    println!("event-bus-fuzz: seed {} inputs per target {}", a.seed, a.inputs);
    for t in targets::ALL {
        if a.only.as_deref().is_some_and(|o| o != t.name) {
            continue;
        }
        let mut worst = 0usize;
        for i in 0..a.inputs {
            // One generator per input, so a failure names the seed and index
            // that reproduce it alone.
            let mut rng = StdRng::seed_from_u64(a.seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let run = std::panic::catch_unwind(AssertUnwindSafe(|| alloc::peak_during(|| (t.run)(&mut rng, &catalog))));
            match run {
                Ok((len, peak)) => {
                    if peak > bound(len) {
                        eprintln!(
                            "event-bus-fuzz: FAILED: {} input {i} (seed {}) of {len} bytes held {peak} bytes at once (bound {})",
                            t.name,
                            a.seed,
                            bound(len)
                        );
                        return ExitCode::FAILURE;
                    }
                    worst = worst.max(peak);
                }
                Err(_) => {
                    eprintln!(
                        "event-bus-fuzz: FAILED: {} input {i} (seed {}) panicked",
                        t.name, a.seed
                    );
                    return ExitCode::FAILURE;
                }
            }
        }
        println!(
            "  {:<22} {:>9} inputs  no panic  largest allocation {:>8} bytes",
            t.name, a.inputs, worst
        );
    }
    ExitCode::SUCCESS
}
