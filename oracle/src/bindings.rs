//! Typed bindings generated from the committed compiler artifacts in `contracts/build/`
//! (ABI and bytecode), so the Rust side always speaks to exactly the committed contract.
#![allow(missing_docs, clippy::too_many_arguments)]

alloy::sol!(
    #[sol(rpc, all_derives)]
    GroundtruthOracle,
    "contracts/build/GroundtruthOracle.json"
);

alloy::sol!(
    #[sol(rpc, all_derives)]
    SstoreBaseline,
    "contracts/build/SstoreBaseline.json"
);
