//! groundtruth L1 anchoring (to come): the Solidity contract that accepts one epoch commitment
//! signed by ≥ 2/3 of stake, and the client that posts and watches it.
//!
//! Must not depend on node internals.
