//! Tests of the contract and the client against a real anvil node.

mod artifact;
mod client;
mod contract;
mod harness;
