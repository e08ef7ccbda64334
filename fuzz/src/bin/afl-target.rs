//! The AFL++ harness: `afl-target <target>` runs one fuzz target of `groundtruth-fuzz` in
//! AFL's persistent mode. Built by `scripts/fuzz.sh` with `cargo afl build --features afl`.

fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    let Some(target) = groundtruth_fuzz::target(&name) else {
        let names: Vec<&str> = groundtruth_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
        eprintln!("usage: afl-target <{}>", names.join("|"));
        std::process::exit(2);
    };
    afl::fuzz!(|data: &[u8]| {
        target(data);
    });
}
