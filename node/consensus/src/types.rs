//! The Malachite [`Context`] for groundtruth: heights, addresses, validator sets with
//! weighted round-robin proposer selection, proposals, votes and proposal parts, and the
//! exact bytes each of them is signed over.
//!
//! Every signed message starts with a domain tag so that a signature over one kind of
//! message can never be replayed as another kind.

use std::fmt;
use std::sync::Arc;

use malachitebft_app_channel::app::types::core::{
    self as mtypes, Context, LinearTimeouts, NilOrVal, Round, SignedExtension, VoteType,
};
use malachitebft_signing_ed25519::{Ed25519, PublicKey, Signature};

/// Domain tag of a vote's signing bytes.
pub const VOTE_DOMAIN: &[u8] = b"groundtruth/consensus/vote/v1";
/// Domain tag of a proposal's signing bytes.
pub const PROPOSAL_DOMAIN: &[u8] = b"groundtruth/consensus/proposal/v1";
/// Domain tag of the proposal-parts (block stream) signature.
pub const PARTS_DOMAIN: &[u8] = b"groundtruth/consensus/parts/v1";
/// Domain tag of vote extensions (unused today: extensions are disabled).
pub const EXTENSION_DOMAIN: &[u8] = b"groundtruth/consensus/vote-extension/v1";

/// Cycle length bound of the proposer schedule: voting powers are scaled so that they sum
/// to at most this many slots (each validator with power keeps at least one slot).
const SCHEDULE_SLOTS: u128 = 10_000;

/// Largest total voting power handed to Malachite (its threshold arithmetic multiplies the
/// total by small constants in `u64`). Larger stakes are scaled down proportionally.
pub const MAX_TOTAL_POWER: u64 = 1 << 60;

/// Block height. Height 1 is the first block; 0 means "nothing decided yet".
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Height(pub u64);

impl fmt::Display for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl mtypes::Height for Height {
    const ZERO: Self = Height(0);
    const INITIAL: Self = Height(1);

    fn increment_by(&self, n: u64) -> Self {
        Height(self.0.saturating_add(n))
    }

    fn decrement_by(&self, n: u64) -> Option<Self> {
        self.0.checked_sub(n).map(Height)
    }

    fn as_u64(&self) -> u64 {
        self.0
    }
}

/// A validator's address: its ed25519 public key (32 bytes).
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address(pub [u8; 32]);

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

impl mtypes::Address for Address {}

/// The value consensus agrees on: the blake3 hash of an encoded [`crate::block::Block`].
///
/// The block itself travels in proposal parts (and in sync responses); consensus messages
/// (proposals, votes, certificates) only carry this 32-byte hash.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct BlockHash(pub [u8; 32]);

impl fmt::Display for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..6] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockHash({self})")
    }
}

impl mtypes::Value for BlockHash {
    type Id = BlockHash;

    fn id(&self) -> BlockHash {
        *self
    }
}

/// One member of the validator set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validator {
    /// Address (= public key bytes).
    pub address: Address,
    /// Decoded public key.
    pub public_key: PublicKey,
    /// Voting power (bonded stake, in the ledger's unit).
    pub voting_power: u64,
}

impl mtypes::Validator<GtContext> for Validator {
    fn address(&self) -> &Address {
        &self.address
    }

    fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    fn voting_power(&self) -> u64 {
        self.voting_power
    }
}

/// The validator set of one height, sorted by address, with its proposer schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatorSet {
    validators: Arc<[Validator]>,
    total: u64,
    /// Smooth weighted round-robin over one cycle: indices into `validators`.
    schedule: Arc<[u32]>,
}

impl ValidatorSet {
    /// Builds a set from `(public key, voting power)` pairs.
    ///
    /// Entries with zero power or an invalid public key are dropped; duplicate keys are merged
    /// (powers added, saturating). Returns `None` if no validator with power remains.
    pub fn new(members: impl IntoIterator<Item = ([u8; 32], u64)>) -> Option<Self> {
        let mut merged: std::collections::BTreeMap<[u8; 32], u64> = Default::default();
        for (key, power) in members {
            if power == 0 {
                continue;
            }
            let slot = merged.entry(key).or_insert(0);
            *slot = slot.saturating_add(power);
        }
        // Malachite checks thresholds as `weight * 3 > total * 2` in u64 and panics on
        // overflow, so powers are scaled down (proportionally, each keeping at least 1)
        // whenever their sum exceeds `MAX_TOTAL_POWER`.
        let sum: u128 = merged.values().map(|p| u128::from(*p)).sum();
        let validators: Vec<Validator> = merged
            .into_iter()
            .map(|(key, power)| {
                if sum > u128::from(MAX_TOTAL_POWER) {
                    let scaled = u128::from(power) * u128::from(MAX_TOTAL_POWER) / sum;
                    (key, u64::try_from(scaled).unwrap_or(MAX_TOTAL_POWER).max(1))
                } else {
                    (key, power)
                }
            })
            .filter_map(|(key, voting_power)| {
                let public_key = PublicKey::from_bytes(key).ok()?;
                Some(Validator {
                    address: Address(key),
                    public_key,
                    voting_power,
                })
            })
            .collect();
        if validators.is_empty() {
            return None;
        }
        let total = validators
            .iter()
            .fold(0u64, |acc, v| acc.saturating_add(v.voting_power));
        let schedule = build_schedule(&validators);
        Some(Self {
            validators: validators.into(),
            total,
            schedule: schedule.into(),
        })
    }

    /// The validators, sorted by address.
    pub fn validators(&self) -> &[Validator] {
        &self.validators
    }

    /// The proposer for `(height, round)`: slot `height - 1 + round` of the weighted
    /// round-robin cycle. Every validator proposes in proportion to its voting power
    /// (to within 1/10,000 of the total), interleaved rather than in runs.
    pub fn proposer(&self, height: Height, round: Round) -> &Validator {
        let round = u64::from(round.as_u32().unwrap_or(0));
        let slot = height.0.saturating_sub(1).wrapping_add(round);
        let len = self.schedule.len().max(1) as u64;
        let idx = self
            .schedule
            .get((slot % len) as usize)
            .copied()
            .unwrap_or(0) as usize;
        // The schedule only holds indices of `validators`, which is non-empty.
        &self.validators[idx.min(self.validators.len() - 1)]
    }
}

/// Smooth weighted round-robin (as in nginx): each step every validator gains its weight,
/// the one with the highest credit is chosen and pays back the total. Ties break by
/// address order. Weights are voting powers scaled down to at most `SCHEDULE_SLOTS`.
fn build_schedule(validators: &[Validator]) -> Vec<u32> {
    let total: u128 = validators.iter().map(|v| u128::from(v.voting_power)).sum();
    let weights: Vec<i128> = validators
        .iter()
        .map(|v| {
            let scaled = if total <= SCHEDULE_SLOTS {
                u128::from(v.voting_power)
            } else {
                u128::from(v.voting_power) * SCHEDULE_SLOTS / total
            };
            scaled.max(1) as i128
        })
        .collect();
    // Reduce by the gcd so that equal powers give a cycle of length n.
    let g = weights.iter().fold(0i128, |a, &b| gcd(a, b)).max(1);
    let weights: Vec<i128> = weights.iter().map(|w| w / g).collect();
    let cycle: i128 = weights.iter().sum();
    let mut credit = vec![0i128; weights.len()];
    let mut schedule = Vec::with_capacity(cycle as usize);
    for _ in 0..cycle {
        let mut best = 0usize;
        for i in 0..weights.len() {
            credit[i] += weights[i];
            if credit[i] > credit[best] {
                best = i;
            }
        }
        credit[best] -= cycle;
        schedule.push(best as u32);
    }
    schedule
}

fn gcd(a: i128, b: i128) -> i128 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl mtypes::ValidatorSet<GtContext> for ValidatorSet {
    fn count(&self) -> usize {
        self.validators.len()
    }

    fn total_voting_power(&self) -> u64 {
        self.total
    }

    fn get_by_address(&self, address: &Address) -> Option<&Validator> {
        self.validators
            .binary_search_by(|v| v.address.cmp(address))
            .ok()
            .and_then(|i| self.validators.get(i))
    }

    fn get_by_index(&self, index: usize) -> Option<&Validator> {
        self.validators.get(index)
    }
}

/// A proposal for a block hash at `(height, round)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    /// Height.
    pub height: Height,
    /// Round.
    pub round: Round,
    /// Proposed block hash.
    pub value: BlockHash,
    /// Proof-of-lock round (`Round::Nil` if none).
    pub pol_round: Round,
    /// Proposer.
    pub proposer: Address,
}

impl Proposal {
    /// The exact bytes a proposer signs.
    pub fn to_sign_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(PROPOSAL_DOMAIN.len() + 8 + 8 + 32 + 8 + 32);
        out.extend_from_slice(PROPOSAL_DOMAIN);
        out.extend_from_slice(&self.height.0.to_be_bytes());
        out.extend_from_slice(&self.round.as_i64().to_be_bytes());
        out.extend_from_slice(&self.value.0);
        out.extend_from_slice(&self.pol_round.as_i64().to_be_bytes());
        out.extend_from_slice(&self.proposer.0);
        out
    }
}

impl mtypes::Proposal<GtContext> for Proposal {
    fn height(&self) -> Height {
        self.height
    }

    fn round(&self) -> Round {
        self.round
    }

    fn value(&self) -> &BlockHash {
        &self.value
    }

    fn take_value(self) -> BlockHash {
        self.value
    }

    fn pol_round(&self) -> Round {
        self.pol_round
    }

    fn validator_address(&self) -> &Address {
        &self.proposer
    }
}

/// A prevote or precommit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vote {
    /// Prevote or precommit.
    pub vote_type: VoteType,
    /// Height.
    pub height: Height,
    /// Round.
    pub round: Round,
    /// Block hash voted for, or nil.
    pub value: NilOrVal<BlockHash>,
    /// Voter.
    pub validator: Address,
    /// Vote extension (always `None`: extensions are disabled).
    pub extension: Option<SignedExtension<GtContext>>,
}

impl Vote {
    /// The exact bytes a validator signs (the extension is signed separately).
    pub fn to_sign_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(VOTE_DOMAIN.len() + 1 + 8 + 8 + 33 + 32);
        out.extend_from_slice(VOTE_DOMAIN);
        out.push(vote_type_tag(self.vote_type));
        out.extend_from_slice(&self.height.0.to_be_bytes());
        out.extend_from_slice(&self.round.as_i64().to_be_bytes());
        match &self.value {
            NilOrVal::Nil => out.push(0),
            NilOrVal::Val(h) => {
                out.push(1);
                out.extend_from_slice(&h.0);
            }
        }
        out.extend_from_slice(&self.validator.0);
        out
    }
}

/// Wire tag of a vote type.
pub(crate) fn vote_type_tag(t: VoteType) -> u8 {
    match t {
        VoteType::Prevote => 0,
        VoteType::Precommit => 1,
    }
}

impl mtypes::Vote<GtContext> for Vote {
    fn height(&self) -> Height {
        self.height
    }

    fn round(&self) -> Round {
        self.round
    }

    fn value(&self) -> &NilOrVal<BlockHash> {
        &self.value
    }

    fn take_value(self) -> NilOrVal<BlockHash> {
        self.value
    }

    fn vote_type(&self) -> VoteType {
        self.vote_type
    }

    fn validator_address(&self) -> &Address {
        &self.validator
    }

    fn extension(&self) -> Option<&SignedExtension<GtContext>> {
        self.extension.as_ref()
    }

    fn take_extension(&mut self) -> Option<SignedExtension<GtContext>> {
        self.extension.take()
    }

    fn extend(self, extension: SignedExtension<GtContext>) -> Self {
        Self {
            extension: Some(extension),
            ..self
        }
    }
}

/// First part of a streamed proposal: who proposes what, where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProposalInit {
    /// Height.
    pub height: Height,
    /// Round in which the proposer first streamed this block.
    pub round: Round,
    /// Proof-of-lock round.
    pub pol_round: Round,
    /// Proposer.
    pub proposer: Address,
}

/// A piece of a streamed proposal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProposalPart {
    /// Metadata; always first.
    Init(ProposalInit),
    /// A chunk of the encoded block.
    Data(bytes::Bytes),
    /// The proposer's signature over the init fields and the block hash; always last.
    Fin(Signature),
}

impl mtypes::ProposalPart<GtContext> for ProposalPart {
    fn is_first(&self) -> bool {
        matches!(self, Self::Init(_))
    }

    fn is_last(&self) -> bool {
        matches!(self, Self::Fin(_))
    }
}

/// The bytes a proposer signs to authenticate a streamed block.
pub fn parts_sign_bytes(init: &ProposalInit, block_hash: &BlockHash) -> Vec<u8> {
    let mut out = Vec::with_capacity(PARTS_DOMAIN.len() + 8 + 8 + 8 + 32 + 32);
    out.extend_from_slice(PARTS_DOMAIN);
    out.extend_from_slice(&init.height.0.to_be_bytes());
    out.extend_from_slice(&init.round.as_i64().to_be_bytes());
    out.extend_from_slice(&init.pol_round.as_i64().to_be_bytes());
    out.extend_from_slice(&init.proposer.0);
    out.extend_from_slice(&block_hash.0);
    out
}

/// The groundtruth consensus context.
#[derive(Clone, Copy, Debug, Default)]
pub struct GtContext;

impl Context for GtContext {
    type Address = Address;
    type Height = Height;
    type ProposalPart = ProposalPart;
    type Proposal = Proposal;
    type Validator = Validator;
    type ValidatorSet = ValidatorSet;
    type Timeouts = LinearTimeouts;
    type Value = BlockHash;
    type Vote = Vote;
    type Extension = bytes::Bytes;
    type SigningScheme = Ed25519;

    fn select_proposer<'a>(
        &self,
        validator_set: &'a ValidatorSet,
        height: Height,
        round: Round,
    ) -> &'a Validator {
        validator_set.proposer(height, round)
    }

    fn new_proposal(
        &self,
        height: Height,
        round: Round,
        value: BlockHash,
        pol_round: Round,
        address: Address,
    ) -> Proposal {
        Proposal {
            height,
            round,
            value,
            pol_round,
            proposer: address,
        }
    }

    fn new_prevote(
        &self,
        height: Height,
        round: Round,
        value_id: NilOrVal<BlockHash>,
        address: Address,
    ) -> Vote {
        Vote {
            vote_type: VoteType::Prevote,
            height,
            round,
            value: value_id,
            validator: address,
            extension: None,
        }
    }

    fn new_precommit(
        &self,
        height: Height,
        round: Round,
        value_id: NilOrVal<BlockHash>,
        address: Address,
    ) -> Vote {
        Vote {
            vote_type: VoteType::Precommit,
            height,
            round,
            value: value_id,
            validator: address,
            extension: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use malachitebft_signing_ed25519::PrivateKey;

    fn key(seed: u8) -> [u8; 32] {
        *PrivateKey::from([seed; 32]).public_key().as_bytes()
    }

    #[test]
    fn equal_powers_rotate_through_everyone() {
        let set = ValidatorSet::new((1..=4).map(|i| (key(i), 10))).expect("set");
        let seen: std::collections::BTreeSet<Address> = (1..=4)
            .map(|h| set.proposer(Height(h), Round::new(0)).address)
            .collect();
        assert_eq!(seen.len(), 4);
    }

    #[test]
    fn proposals_are_proportional_to_power() {
        let set = ValidatorSet::new([(key(1), 300), (key(2), 100), (key(3), 100)]).expect("set");
        let mut counts = std::collections::BTreeMap::<Address, u32>::new();
        for h in 1..=500 {
            *counts
                .entry(set.proposer(Height(h), Round::new(0)).address)
                .or_default() += 1;
        }
        assert_eq!(counts[&Address(key(1))], 300);
        assert_eq!(counts[&Address(key(2))], 100);
        assert_eq!(counts[&Address(key(3))], 100);
        // Interleaved, not in runs: the heavy validator never proposes 4 times in a row.
        let run = (1..=500)
            .map(|h| set.proposer(Height(h), Round::new(0)).address)
            .collect::<Vec<_>>();
        assert!(run.windows(4).all(|w| !w.iter().all(|a| *a == w[0])));
    }

    #[test]
    fn huge_stakes_are_scaled() {
        let set = ValidatorSet::new([(key(1), u64::MAX), (key(2), u64::MAX / 2), (key(3), 1)])
            .expect("set");
        assert!(set.schedule.len() <= SCHEDULE_SLOTS as usize + 3);
        assert!(set.total <= MAX_TOTAL_POWER + 3);
        assert_eq!(set.validators().len(), 3);
    }

    #[test]
    fn zero_power_and_bad_keys_are_dropped() {
        assert!(ValidatorSet::new([(key(1), 0)]).is_none());
        let set = ValidatorSet::new([(key(1), 5), (key(2), 0)]).expect("set");
        assert_eq!(set.validators().len(), 1);
    }
}
