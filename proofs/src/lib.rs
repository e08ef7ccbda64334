//! groundtruth STARK proofs (winterfell): metered output, proof of retrievability and the
//! epoch batch proof, with prover, verifier and a versioned proof envelope.
//!
//! Must not depend on networking or storage.
