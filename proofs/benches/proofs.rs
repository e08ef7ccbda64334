//! Criterion benches for the small statements (device-day, verification). The large figures
//! (100k batch, retrievability k=100 depth 30) are in `examples/bench_table.rs`.

#[allow(dead_code)]
mod baseline;

use criterion::{criterion_main, Criterion};
use groundtruth_proofs::{
    metered::trace_length, prove_metered, verify, DeviceSeries, Epoch, SecurityLevel,
};

fn day() -> Vec<DeviceSeries> {
    let values = (0..288u64).map(|i| (i * 37) % 4001).collect();
    vec![DeviceSeries {
        id: [1; 32],
        cap: 4000,
        start_register: 123_456,
        first_seq: 1_000,
        first_interval_start: 1_700_000_000,
        interval_len: 300,
        values,
    }]
}

fn benches(c: &mut Criterion) {
    let s = day();
    let epoch = Epoch::covering(1, &s);
    let mut g = c.benchmark_group("metered");
    g.sample_size(10);
    g.bench_function("prove device-day (288 readings)", |b| {
        b.iter(|| prove_metered(&epoch, &s, SecurityLevel::Default100))
    });
    let rows = trace_length(288);
    g.bench_function("baseline Rescue chain, same rows", |b| {
        b.iter(|| baseline::prove_chain(rows, SecurityLevel::Default100.options()))
    });
    let env = match prove_metered(&epoch, &s, SecurityLevel::Default100) {
        Ok(e) => e,
        Err(e) => panic!("{e}"),
    };
    g.bench_function("verify device-day", |b| b.iter(|| verify(&env)));
    g.finish();
}

#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(proofs, super::benches);
}
use group::proofs;
criterion_main!(proofs);
