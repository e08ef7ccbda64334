// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title SstoreBaseline
/// @notice The gas baseline for the oracle's benchmark: one transaction that stores one 32-byte
/// word in a fresh slot, which is also what anchoring an epoch must cost at the least.
contract SstoreBaseline {
    /// @notice The words stored, by key.
    mapping(uint64 => bytes32) public stored;

    /// @notice Stores `value` under `key`.
    function store(uint64 key, bytes32 value) external {
        stored[key] = value;
    }
}
