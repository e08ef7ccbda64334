//! The JSON message the page reads (hand-written: no serde in the wasm module).

use std::fmt::Write;

use crate::{Verdict, VerifyError};

/// Lower-case hex.
pub(crate) fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// A JSON string literal.
pub(crate) fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `{"valid":true, …}` for a batch that passed every check.
pub(crate) fn verdict(v: &Verdict) -> String {
    let s = &v.statement;
    let mut out = String::new();
    let _ = write!(
        out,
        "{{\"valid\":true,\"proof_digest\":\"{}\",\"epoch\":{{\"number\":{},\"start_s\":{},\"end_s\":{}}},\"commitment\":\"{}\",\"readings\":{},\"frames\":{},\"devices\":[",
        hex(&v.proof_digest),
        s.epoch.number,
        s.epoch.start_s,
        s.epoch.end_s,
        hex(&s.commitment),
        s.num_readings,
        v.frames
    );
    for (i, d) in s.devices.iter().enumerate() {
        let _ = write!(
            out,
            "{}{{\"id\":\"{}\",\"total\":{},\"cap\":{},\"first_seq\":{},\"last_seq\":{},\"first_interval_start\":{},\"interval_len\":{}}}",
            if i == 0 { "" } else { "," },
            hex(&d.id),
            d.total,
            d.cap,
            d.first_seq,
            d.last_seq,
            d.first_interval_start,
            d.interval_len
        );
    }
    out.push(']');
    match &v.claim {
        None => out.push_str(",\"claim\":null"),
        Some(c) => {
            let _ = write!(
                out,
                ",\"claim\":{{\"device\":\"{}\",\"from_s\":{},\"to_s\":{},\"value\":{},\"readings\":{},\"in_statement\":{}}}",
                hex(&c.claim.device),
                c.claim.from_s,
                c.claim.to_s,
                c.value,
                c.readings,
                c.in_statement
            );
        }
    }
    out.push('}');
    out
}

/// `{"valid":false, "check": …, "error": …}` for a refused batch.
pub(crate) fn refusal(e: &VerifyError, proof_digest: &[u8; 32]) -> String {
    format!(
        "{{\"valid\":false,\"check\":{},\"error\":{},\"proof_digest\":\"{}\"}}",
        string(e.check()),
        string(&e.to_string()),
        hex(proof_digest)
    )
}

/// `{"valid":false, "check":"call", …}` for a call the host got wrong.
pub(crate) fn misuse(what: &str) -> String {
    format!(
        "{{\"valid\":false,\"check\":\"call\",\"error\":{}}}",
        string(what)
    )
}
