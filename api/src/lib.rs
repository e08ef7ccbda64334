//! groundtruth REST API (to come): the axum router, its OpenAPI document, and the read-model
//! traits the node implements (verified production, proofs, stakes, slashing, L1 anchors).
//!
//! Must not depend on node internals.
