//! The wasm module's exports (plain `extern "C"`, no wasm-bindgen): the host copies its inputs
//! into slots the module allocates, calls [`gt_verify`], and reads a JSON message.
//!
//! ```text
//! p = gt_alloc(SLOT_PROOF, len)   // null: unknown slot or over the limit
//! memory[p .. p+len] = proof      // re-read memory.buffer after every gt_alloc (it may grow)
//! p = gt_alloc(SLOT_FRAMES, len); memory[..] = frames
//! p = gt_alloc(SLOT_CLAIM, 48);   memory[..] = device ‖ from_s ‖ to_s   (optional)
//! code = gt_verify()              // 0 valid, 1 refused, 2 host misuse
//! msg = utf8(memory[gt_output_ptr() .. + gt_output_len()])
//! gt_free()                       // drops inputs and message
//! ```
//!
//! A trap (a panic aborts in wasm) leaves the instance unusable: the glue instantiates the
//! module afresh for each verification. Nothing here uses `unsafe`; the module allows the
//! `unsafe_code` lint only for `#[no_mangle]`, which exporting requires.
#![allow(unsafe_code)]

use std::cell::RefCell;

use crate::{json, verify_batch, Claim};

/// Slot of the proof envelope.
pub const SLOT_PROOF: u32 = 0;
/// Slot of the frames, `(u32 BE len ‖ frame)*`.
pub const SLOT_FRAMES: u32 = 1;
/// Slot of an optional [`Claim`] (`device ‖ from_s ‖ to_s`, 48 bytes; empty for none).
pub const SLOT_CLAIM: u32 = 2;
/// Version of this export surface; the glue refuses a module with another.
pub const ABI_VERSION: u32 = 1;
/// Result: every check held.
pub const VALID: u32 = 0;
/// Result: a check failed (the message says which).
pub const REFUSED: u32 = 1;
/// Result: the host called wrongly (missing proof, bad claim length).
pub const MISUSE: u32 = 2;

const SLOTS: usize = 3;

#[derive(Default)]
struct State {
    slots: [Vec<u8>; SLOTS],
    output: Vec<u8>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

fn limit(slot: u32) -> Option<usize> {
    match slot {
        SLOT_PROOF => Some(crate::MAX_PROOF_BYTES),
        SLOT_FRAMES => Some(crate::MAX_FRAMES_BYTES),
        SLOT_CLAIM => Some(Claim::LEN),
        _ => None,
    }
}

/// Sizes `slot` to `len` zero bytes and returns where the host writes them; null for an unknown
/// slot or a length over the slot's limit.
#[no_mangle]
pub extern "C" fn gt_alloc(slot: u32, len: u32) -> *mut u8 {
    let Ok(len) = usize::try_from(len) else {
        return std::ptr::null_mut();
    };
    match limit(slot) {
        Some(max) if len <= max => {
            STATE.with_borrow_mut(|s| match s.slots.get_mut(slot as usize) {
                Some(v) => {
                    *v = vec![0; len];
                    v.as_mut_ptr()
                }
                None => std::ptr::null_mut(),
            })
        }
        _ => std::ptr::null_mut(),
    }
}

/// Drops every input and the last message.
#[no_mangle]
pub extern "C" fn gt_free() {
    STATE.with_borrow_mut(|s| *s = State::default());
}

/// Runs [`crate::verify_batch`] on the slots; the message is at [`gt_output_ptr`].
#[no_mangle]
pub extern "C" fn gt_verify() -> u32 {
    let [proof, frames, claim] = STATE.with_borrow_mut(|s| std::mem::take(&mut s.slots));
    let (code, message) = run(&proof, &frames, &claim);
    STATE.with_borrow_mut(|s| s.output = message.into_bytes());
    code
}

/// Where the last message starts.
#[no_mangle]
pub extern "C" fn gt_output_ptr() -> *const u8 {
    STATE.with_borrow(|s| s.output.as_ptr())
}

/// The last message's length in bytes.
#[no_mangle]
pub extern "C" fn gt_output_len() -> u32 {
    STATE.with_borrow(|s| u32::try_from(s.output.len()).unwrap_or(0))
}

/// [`ABI_VERSION`].
#[no_mangle]
pub extern "C" fn gt_abi_version() -> u32 {
    ABI_VERSION
}

/// What [`gt_verify`] does, on byte slices: the result code and the JSON message.
pub fn run(proof: &[u8], frames: &[u8], claim: &[u8]) -> (u32, String) {
    if proof.is_empty() {
        return (MISUSE, json::misuse("no proof given"));
    }
    let claim = match claim.len() {
        0 => None,
        _ => match Claim::from_bytes(claim) {
            Some(c) => Some(c),
            None => return (MISUSE, json::misuse("a claim is 48 bytes")),
        },
    };
    match verify_batch(proof, frames, claim.as_ref()) {
        Ok(v) => (VALID, json::verdict(&v)),
        Err(e) => (REFUSED, json::refusal(&e, blake3::hash(proof).as_bytes())),
    }
}
