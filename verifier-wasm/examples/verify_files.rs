//! Runs the page's checks natively on files, with the same code the browser runs:
//! `cargo run --release -p groundtruth-verifier-wasm --example verify_files -- PROOF FRAMES [RUNS]`
//! (the browser test leaves `proof.bin` and `frames.bin` in `target/browser-artifacts/`).
//! Prints the verdict and the fastest of RUNS verifications (default 20).

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(proof), Some(frames)) = (args.next(), args.next()) else {
        return Err("usage: verify_files PROOF FRAMES [RUNS]".into());
    };
    let runs: usize = args.next().map_or(Ok(20), |r| r.parse())?;
    let proof = std::fs::read(proof)?;
    let frames = std::fs::read(frames)?;
    let mut best = f64::INFINITY;
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let v = groundtruth_verifier_wasm::verify_batch(&proof, &frames, None)?;
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
        if v.frames == 0 {
            return Err("no frames".into());
        }
    }
    let v = groundtruth_verifier_wasm::verify_batch(&proof, &frames, None)?;
    println!(
        "VALID: epoch {}, {} readings, {} devices; fastest of {runs}: {best:.2} ms",
        v.statement.epoch.number,
        v.statement.num_readings,
        v.statement.devices.len()
    );
    Ok(())
}
