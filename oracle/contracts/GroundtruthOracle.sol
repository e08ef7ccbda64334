// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title GroundtruthOracle
/// @notice Anchors one commitment per groundtruth epoch on Ethereum. An epoch is accepted only
/// in order (no gaps, no duplicates) and only when validators holding at least two thirds of the
/// current set's weight signed its EIP-712 digest. The validator set is replaced only by an update
/// that two thirds of the current set signed; each set carries a nonce, so commitments signed for
/// an older set are refused.
/// @dev Per epoch the contract stores one word (the EIP-712 struct hash of the commitment); the
/// commitment's fields travel in the `EpochAnchored` event. Signatures are (r, s, v), sorted by
/// strictly increasing signer address, low-s only.
contract GroundtruthOracle {
    /// @notice What the validators sign for one epoch.
    struct EpochCommitment {
        uint64 epoch;
        bytes32 readingsRoot;
        bytes32 verifiedTotalsRoot;
        bytes32 proofDigestsRoot;
        bytes32 ledgerStateRoot;
        uint64 setNonce;
    }

    /// @notice A secp256k1 signature; `v` is 27 or 28 and `s` must be in the lower half order.
    struct Signature {
        bytes32 r;
        bytes32 s;
        uint8 v;
    }

    /// @dev A member's weight counts only while `setNonce` equals the current set nonce.
    struct Member {
        uint64 setNonce;
        uint96 weight;
    }

    /// @notice EIP-712 type hash of `EpochCommitment`.
    bytes32 public constant EPOCH_COMMITMENT_TYPEHASH = keccak256(
        "EpochCommitment(uint64 epoch,bytes32 readingsRoot,bytes32 verifiedTotalsRoot,bytes32 proofDigestsRoot,bytes32 ledgerStateRoot,uint64 setNonce)"
    );
    /// @notice EIP-712 type hash of a validator set update.
    bytes32 public constant VALIDATOR_SET_UPDATE_TYPEHASH =
        keccak256("ValidatorSetUpdate(uint64 setNonce,address[] members,uint96[] weights)");
    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant NAME_HASH = keccak256("GroundtruthOracle");
    bytes32 private constant VERSION_HASH = keccak256("1");
    /// @notice The most validators a set may hold.
    uint256 public constant MAX_VALIDATORS = 256;
    /// @dev secp256k1 group order divided by two: larger s values are the malleable twin.
    uint256 private constant HALF_ORDER = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    /// @notice The first epoch this deployment accepts.
    uint64 public immutable firstEpoch;
    uint256 private immutable cachedChainId;
    bytes32 private immutable cachedDomainSeparator;

    /// @notice The only epoch `submitEpoch` accepts next.
    uint64 public nextEpoch;
    /// @notice Nonce of the current validator set (the genesis set has nonce 1).
    uint64 public setNonce;
    /// @notice Sum of the current set's weights.
    uint96 public totalWeight;

    mapping(uint64 => bytes32) private anchored;
    mapping(address => Member) private members;
    address[] private memberList;

    /// @notice One epoch commitment was anchored.
    event EpochAnchored(
        uint64 indexed epoch,
        bytes32 indexed commitmentHash,
        bytes32 readingsRoot,
        bytes32 verifiedTotalsRoot,
        bytes32 proofDigestsRoot,
        bytes32 ledgerStateRoot,
        uint64 setNonce
    );
    /// @notice The validator set was replaced (also emitted for the genesis set).
    event ValidatorSetUpdated(uint64 indexed setNonce, address[] members, uint96[] weights, uint96 totalWeight);

    /// @notice `epoch` is already anchored (`nextEpoch` is past it).
    error EpochAlreadyAnchored(uint64 epoch, uint64 nextEpoch);
    /// @notice `epoch` skips epochs not yet anchored.
    error EpochGap(uint64 epoch, uint64 nextEpoch);
    /// @notice The message names a validator set that is not the current one.
    error StaleValidatorSet(uint64 given, uint64 current);
    /// @notice A set update must carry exactly the current nonce plus one.
    error SetNonceMismatch(uint64 given, uint64 expected);
    /// @notice Signature `index` has s in the upper half of the group order.
    error MalleableSignature(uint256 index);
    /// @notice Signature `index` recovers to no address.
    error InvalidSignature(uint256 index);
    /// @notice Signature `index` does not recover to an address above the previous signer's
    /// (duplicates included).
    error SignersNotSorted(uint256 index, address signer);
    /// @notice Signature `index` recovers to an address outside the current set.
    error UnknownSigner(uint256 index, address signer);
    /// @notice The signers hold less than two thirds of the current weight.
    error InsufficientQuorum(uint256 signedWeight, uint256 totalWeight);
    /// @notice A proposed set is empty, too large, unsorted, has a zero weight or mismatched lists.
    error InvalidValidatorSet();

    /// @param firstEpoch_ the first epoch to accept
    /// @param members_ genesis signers, strictly increasing
    /// @param weights_ their weights, all positive
    constructor(uint64 firstEpoch_, address[] memory members_, uint96[] memory weights_) {
        firstEpoch = firstEpoch_;
        nextEpoch = firstEpoch_;
        cachedChainId = block.chainid;
        cachedDomainSeparator = _buildDomainSeparator();
        _installSet(1, members_, weights_);
    }

    /// @notice Anchors `c` if it is the next epoch, names the current set and carries signatures of
    /// at least two thirds of that set's weight over its EIP-712 digest.
    function submitEpoch(EpochCommitment calldata c, Signature[] calldata sigs) external {
        uint64 next = nextEpoch;
        uint64 nonce = setNonce;
        if (c.epoch != next) {
            if (c.epoch < next) revert EpochAlreadyAnchored(c.epoch, next);
            revert EpochGap(c.epoch, next);
        }
        if (c.setNonce != nonce) revert StaleValidatorSet(c.setNonce, nonce);
        bytes32 structHash = _hashCommitment(c);
        _requireQuorum(_digest(structHash), sigs, nonce);
        anchored[next] = structHash;
        nextEpoch = next + 1;
        emit EpochAnchored(
            next, structHash, c.readingsRoot, c.verifiedTotalsRoot, c.proofDigestsRoot, c.ledgerStateRoot, nonce
        );
    }

    /// @notice Replaces the validator set with `members_`/`weights_` under nonce `newNonce`
    /// (current + 1), signed by at least two thirds of the current set's weight.
    function updateValidatorSet(
        uint64 newNonce,
        address[] calldata members_,
        uint96[] calldata weights_,
        Signature[] calldata sigs
    ) external {
        uint64 nonce = setNonce;
        if (newNonce != nonce + 1) revert SetNonceMismatch(newNonce, nonce + 1);
        _requireQuorum(_digest(_hashSetUpdate(newNonce, members_, weights_)), sigs, nonce);
        _installSet(newNonce, members_, weights_);
    }

    /// @notice EIP-712 struct hash of the commitment anchored for `epoch`, zero if none.
    function commitmentHash(uint64 epoch) external view returns (bytes32) {
        return anchored[epoch];
    }

    /// @notice Whether exactly `c` is anchored for `c.epoch`.
    function isAnchored(EpochCommitment calldata c) external view returns (bool) {
        bytes32 h = anchored[c.epoch];
        return h != bytes32(0) && h == _hashCommitment(c);
    }

    /// @notice How many epochs are anchored, and the last one (meaningless when `count` is 0).
    function latestEpoch() external view returns (uint64 count, uint64 epoch) {
        count = nextEpoch - firstEpoch;
        epoch = count == 0 ? 0 : nextEpoch - 1;
    }

    /// @notice The current validator set: its nonce, members (increasing) and weights.
    function validatorSet() external view returns (uint64 nonce, address[] memory addrs, uint96[] memory weights) {
        nonce = setNonce;
        addrs = memberList;
        weights = new uint96[](addrs.length);
        for (uint256 i = 0; i < addrs.length; ++i) {
            weights[i] = members[addrs[i]].weight;
        }
    }

    /// @notice The weight `who` holds in the current set (zero outside it).
    function weightOf(address who) external view returns (uint96) {
        Member memory m = members[who];
        return m.setNonce == setNonce ? m.weight : 0;
    }

    /// @notice The EIP-712 domain separator.
    function domainSeparator() public view returns (bytes32) {
        return block.chainid == cachedChainId ? cachedDomainSeparator : _buildDomainSeparator();
    }

    /// @notice The EIP-712 digest validators sign for `c`.
    function epochDigest(EpochCommitment calldata c) external view returns (bytes32) {
        return _digest(_hashCommitment(c));
    }

    /// @notice The EIP-712 digest validators sign for a set update.
    function setUpdateDigest(uint64 newNonce, address[] calldata members_, uint96[] calldata weights_)
        external
        view
        returns (bytes32)
    {
        return _digest(_hashSetUpdate(newNonce, members_, weights_));
    }

    function _buildDomainSeparator() private view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }

    function _digest(bytes32 structHash) private view returns (bytes32) {
        return keccak256(abi.encodePacked("\x19\x01", domainSeparator(), structHash));
    }

    function _hashCommitment(EpochCommitment calldata c) private pure returns (bytes32) {
        return keccak256(
            abi.encode(
                EPOCH_COMMITMENT_TYPEHASH,
                c.epoch,
                c.readingsRoot,
                c.verifiedTotalsRoot,
                c.proofDigestsRoot,
                c.ledgerStateRoot,
                c.setNonce
            )
        );
    }

    function _hashSetUpdate(uint64 newNonce, address[] calldata members_, uint96[] calldata weights_)
        private
        pure
        returns (bytes32)
    {
        // EIP-712 arrays: keccak256 of the concatenated 32-byte encodings; encodePacked pads
        // array elements to 32 bytes.
        return keccak256(
            abi.encode(
                VALIDATOR_SET_UPDATE_TYPEHASH,
                newNonce,
                keccak256(abi.encodePacked(members_)),
                keccak256(abi.encodePacked(weights_))
            )
        );
    }

    /// @dev Reverts unless `sigs` are valid, low-s, sorted by signer and from members of set
    /// `nonce` holding at least two thirds of `totalWeight`.
    function _requireQuorum(bytes32 digest, Signature[] calldata sigs, uint64 nonce) private view {
        uint256 signed = 0;
        address last = address(0);
        uint256 n = sigs.length;
        for (uint256 i = 0; i < n; ++i) {
            bytes32 s = sigs[i].s;
            if (uint256(s) > HALF_ORDER) revert MalleableSignature(i);
            address signer = ecrecover(digest, sigs[i].v, sigs[i].r, s);
            if (signer == address(0)) revert InvalidSignature(i);
            if (signer <= last) revert SignersNotSorted(i, signer);
            Member memory m = members[signer];
            if (m.weight == 0 || m.setNonce != nonce) revert UnknownSigner(i, signer);
            signed += m.weight;
            last = signer;
        }
        uint256 total = totalWeight;
        if (signed * 3 < total * 2) revert InsufficientQuorum(signed, total);
    }

    function _installSet(uint64 nonce, address[] memory members_, uint96[] memory weights_) private {
        uint256 n = members_.length;
        if (n == 0 || n > MAX_VALIDATORS || weights_.length != n) revert InvalidValidatorSet();
        uint256 total = 0;
        address last = address(0);
        for (uint256 i = 0; i < n; ++i) {
            address a = members_[i];
            uint96 w = weights_[i];
            if (a <= last || w == 0) revert InvalidValidatorSet();
            members[a] = Member({setNonce: nonce, weight: w});
            total += w;
            last = a;
        }
        if (total > type(uint96).max) revert InvalidValidatorSet();
        memberList = members_;
        setNonce = nonce;
        totalWeight = uint96(total);
        emit ValidatorSetUpdated(nonce, members_, weights_, uint96(total));
    }
}
