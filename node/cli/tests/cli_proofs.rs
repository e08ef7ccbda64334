//! `groundtruth prove` / `groundtruth verify` end to end through the built binary.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn groundtruth() -> Command {
    Command::new(env!("CARGO_BIN_EXE_groundtruth"))
}

#[test]
fn metered_proof_file_verifies_and_a_tampered_one_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let readings = dir.path().join("readings.json");
    std::fs::write(
        &readings,
        format!(
            r#"{{"devices": [{{"id": "{}", "cap": 500, "start_register": 1000, "values": [1, 2, 3, 400, 5]}},
                           {{"id": "{}", "cap": 9, "values": [9, 0, 4]}}]}}"#,
            "11".repeat(32),
            "22".repeat(32)
        ),
    )
    .unwrap();
    let proof = dir.path().join("day.proof");
    let out = groundtruth()
        .args(["prove", "metered", "--readings"])
        .arg(&readings)
        .arg("--out")
        .arg(&proof)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = groundtruth().arg("verify").arg(&proof).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("VALID metered-output proof"), "{stdout}");
    assert!(stdout.contains("total 411"), "{stdout}");
    assert!(stdout.contains("register 1000 -> 1411"), "{stdout}");

    // Change device 0's total (the u64 right after its start register) and verify again.
    let mut bytes = std::fs::read(&proof).unwrap();
    // header 10 + blob len 4 + value bits 1 + commitment 32 + readings 8 + devices 4 + id 32
    // + cap 8 + start 8 = total at offset 107.
    bytes[107] ^= 1;
    let tampered = dir.path().join("tampered.proof");
    std::fs::write(&tampered, &bytes).unwrap();
    let out = groundtruth().arg("verify").arg(&tampered).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("proof rejected: STARK verification failed"),
        "{stderr}"
    );
}

#[test]
fn retrievability_proof_file_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.bin");
    std::fs::write(
        &data,
        (0..10_000u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>(),
    )
    .unwrap();
    let proof = dir.path().join("por.proof");
    let out = groundtruth()
        .args([
            "prove",
            "retrievability",
            "--depth",
            "8",
            "--k",
            "2",
            "--seed",
        ])
        .arg("ab".repeat(32))
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&proof)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = groundtruth().arg("verify").arg(&proof).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("VALID retrievability proof"), "{stdout}");

    let mut bytes = std::fs::read(&proof).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 0xff;
    std::fs::write(&proof, &bytes).unwrap();
    let out = groundtruth().arg("verify").arg(&proof).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("proof rejected"));
}
