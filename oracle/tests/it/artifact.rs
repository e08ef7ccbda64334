//! The committed ABI and bytecode are what the pinned compiler makes of the committed sources.

use std::path::{Path, PathBuf};
use std::process::Command;

fn contracts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts")
}

#[test]
fn recompiling_reproduces_the_committed_artifacts() {
    let solc = std::env::var_os("GROUNDTRUTH_SOLCJS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/node_modules/solc")
        });
    let have_node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_node || !solc.join("package.json").is_file() {
        let msg = format!(
            "node or solc-js ({}) missing: run scripts/setup.sh",
            solc.display()
        );
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
        eprintln!("SKIPPED: {msg}");
        return;
    }
    let out = tempfile::tempdir().expect("tempdir");
    let status = Command::new("node")
        .arg(contracts_dir().join("compile.mjs"))
        .arg(out.path())
        .env("GROUNDTRUTH_SOLCJS_DIR", &solc)
        .status()
        .expect("node runs");
    assert!(status.success(), "compile.mjs failed");
    let committed = contracts_dir().join("build");
    let mut names: Vec<_> = std::fs::read_dir(&committed)
        .expect("build dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    for name in names {
        let want = std::fs::read(committed.join(&name)).expect("committed artifact");
        let got = std::fs::read(out.path().join(&name)).expect("fresh artifact");
        assert!(
            want == got,
            "{name:?} differs from a fresh compile: run `node oracle/contracts/compile.mjs` and commit"
        );
    }
}
