// groundtruth in-browser verifier: the glue between the explorer page and verifier.wasm (the
// crate verifier-wasm compiled for wasm32-unknown-unknown, no wasm-bindgen). The module
// exports gt_alloc/gt_free (input slots), gt_verify (result code) and gt_output_ptr/len (a JSON
// message); see verifier-wasm/src/ffi.rs. Every check runs in this page: the node only served
// the bytes.
"use strict";
(function () {
  const ABI_VERSION = 1;
  const SLOT_PROOF = 0, SLOT_FRAMES = 1, SLOT_CLAIM = 2;
  const CODES = { 0: "valid", 1: "refused", 2: "misuse" };
  let compiled = null;

  /** Thrown when the node has no verifier.wasm (scripts/setup.sh builds it). */
  class NotBuilt extends Error {}

  function compile() {
    if (!compiled) {
      compiled = (async () => {
        const r = await fetch("/explorer/verifier.wasm");
        if (r.status === 404) throw new NotBuilt("verifier not built, run scripts/setup.sh");
        if (!r.ok) throw new Error("GET /explorer/verifier.wasm → " + r.status);
        return WebAssembly.compile(await r.arrayBuffer());
      })();
      compiled.catch(() => { compiled = null; });
    }
    return compiled;
  }

  function hexToBytes(hex) {
    if (!/^[0-9a-f]{64}$/i.test(hex)) throw new Error("not a 32-byte hex id: " + hex);
    const out = new Uint8Array(32);
    for (let i = 0; i < 32; i++) out[i] = parseInt(hex.substr(2 * i, 2), 16);
    return out;
  }

  /** device ‖ from_s ‖ to_s, 48 bytes (verifier-wasm's Claim). */
  function claimBytes(claim) {
    const b = new Uint8Array(48);
    b.set(hexToBytes(claim.device), 0);
    const v = new DataView(b.buffer);
    v.setBigUint64(32, BigInt(claim.from_s));
    v.setBigUint64(40, BigInt(claim.to_s));
    return b;
  }

  /**
   * Verifies one batch in this page. proof and frames are Uint8Arrays as the node serves them;
   * claim (optional) is {device: hex, from_s, to_s}. Resolves to {status, code, result, verifyMs,
   * totalMs}: status "valid", "refused" (result.check and result.error say why), "misuse", or
   * "trapped" (the module aborted; it is instantiated afresh for every call).
   */
  async function verify(proof, frames, claim) {
    const module = await compile();
    const t0 = performance.now();
    const { exports: x } = await WebAssembly.instantiate(module, {});
    if (x.gt_abi_version() !== ABI_VERSION) throw new Error("verifier.wasm has another ABI version");
    const put = (slot, bytes) => {
      const p = x.gt_alloc(slot, bytes.length);
      if (p === 0) throw new Error("input too large for the verifier (slot " + slot + ")");
      new Uint8Array(x.memory.buffer, p, bytes.length).set(bytes);
    };
    let code, verifyMs;
    try {
      put(SLOT_PROOF, proof);
      put(SLOT_FRAMES, frames);
      if (claim) put(SLOT_CLAIM, claimBytes(claim));
      const t1 = performance.now();
      code = x.gt_verify();
      verifyMs = performance.now() - t1;
    } catch (e) {
      if (e instanceof WebAssembly.RuntimeError) {
        return { status: "trapped", code: null, result: { valid: false, check: "trap", error: "the verifier aborted: " + e.message }, verifyMs: null, totalMs: performance.now() - t0 };
      }
      throw e;
    }
    const msg = new TextDecoder().decode(new Uint8Array(x.memory.buffer, x.gt_output_ptr(), x.gt_output_len()));
    x.gt_free();
    return { status: CODES[code] || "unknown", code, result: JSON.parse(msg), verifyMs, totalMs: performance.now() - t0 };
  }

  window.groundtruthVerifier = { verify, compile, NotBuilt };
})();
