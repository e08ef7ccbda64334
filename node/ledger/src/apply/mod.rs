//! The state transition: transactions, blocks and epoch boundaries.
//!
//! Every transaction is applied in two phases. The check phase reads the state, checks
//! everything (signature, nonce, fee, the body's rules) and computes every new value with
//! checked arithmetic, staging balance changes; it returns a commit closure. The commit phase
//! only writes precomputed values and cannot fail. So a rejected transaction changes nothing,
//! and [`check_tx`] (the check phase alone) is exact for mempools.

mod attestations;
mod audits;
mod devices;
mod epochs;
mod evidence;
mod provider_audit;
mod providers;
mod staking;
mod storage;

use std::collections::BTreeMap;

pub(crate) use attestations::reaches_two_thirds;
pub use epochs::end_epoch;

use groundtruth_device_sdk::DeviceId;

use crate::error::{LedgerError, Result, TxError};
use crate::state::State;
use crate::tx::{Block, SignedTx, TxBody};
use crate::types::{
    Address, Amount, ConsensusKey, Epoch, Height, Offender, SlashReason, StakeRole,
};
use staking::{active_validator, plan_unbonding};

/// What the block being applied says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockContext {
    /// Height of the block.
    pub height: Height,
    /// Consensus key of its proposer; fees go to its operator's account (burned if `None` or
    /// unknown).
    pub proposer: Option<ConsensusKey>,
}

/// Something that happened, for logs, the API and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A fee was paid (`to: None`: burned).
    FeePaid {
        /// Payer.
        from: Address,
        /// Proposer's operator, or `None` when burned.
        to: Option<Address>,
        /// Amount.
        amount: Amount,
    },
    /// Liquid balance moved.
    Transfer {
        /// Sender.
        from: Address,
        /// Recipient.
        to: Address,
        /// Amount.
        amount: Amount,
    },
    /// A validator was created.
    ValidatorCreated {
        /// Operator.
        operator: Address,
        /// Consensus key.
        consensus_key: ConsensusKey,
        /// Initial stake.
        stake: Amount,
    },
    /// Stake was bonded (validator or provider).
    Bonded {
        /// Owner.
        owner: Address,
        /// Which stake.
        role: StakeRole,
        /// Amount added.
        amount: Amount,
    },
    /// Stake started unbonding.
    Unbonding {
        /// Owner.
        owner: Address,
        /// Which stake.
        role: StakeRole,
        /// Amount.
        amount: Amount,
        /// Entry id.
        id: u64,
        /// Released at the end of this epoch.
        matures_at_epoch: Epoch,
    },
    /// An unbonding entry matured and its stake returned to the balance.
    UnbondingReleased {
        /// Entry id.
        id: u64,
        /// Owner credited.
        owner: Address,
        /// Amount credited.
        amount: Amount,
    },
    /// A validator left jail.
    Unjailed {
        /// Operator.
        operator: Address,
    },
    /// A validator registered (or replaced) its L1 signing key.
    L1KeySet {
        /// Operator.
        operator: Address,
        /// The key's Ethereum address.
        address: crate::l1key::L1Address,
    },
    /// A provider registered.
    ProviderRegistered {
        /// Provider.
        address: Address,
        /// Initial stake.
        stake: Amount,
    },
    /// A device registered.
    DeviceRegistered {
        /// Device key.
        device: DeviceId,
        /// Owner.
        owner: Address,
    },
    /// A device key was rotated.
    DeviceKeyRotated {
        /// Retired key.
        old: DeviceId,
        /// New key.
        new: DeviceId,
    },
    /// A device was suspended after an equivocation slash.
    DeviceSuspended {
        /// Device key.
        device: DeviceId,
    },
    /// A device was retired.
    DeviceRetired {
        /// Device key.
        device: DeviceId,
    },
    /// A batch's audit proof verified and matched the agreed batch; its devices' totals are
    /// recorded.
    AuditVerified {
        /// Epoch audited.
        epoch: Epoch,
        /// The batch (its assigned auditor).
        batch: Address,
        /// Operator that submitted the proof.
        prover: Address,
        /// Devices newly credited.
        devices: u64,
        /// Readings under the proof.
        readings: u64,
    },
    /// A batch's audit proof failed verification; its submitter is slashed.
    AuditProofRejected {
        /// Epoch.
        epoch: Epoch,
        /// The batch.
        batch: Address,
        /// Operator that submitted the failing proof.
        prover: Address,
        /// What the verifier said.
        reason: String,
    },
    /// An epoch's commitment was recorded (what L1 anchors).
    EpochCommitted {
        /// The epoch.
        epoch: Epoch,
        /// [`crate::EpochCommitment::digest`].
        digest: [u8; 32],
        /// Batches with a verified audit.
        audited_batches: u32,
        /// Batches agreed.
        batches: u32,
    },
    /// A validator voted to close the current epoch.
    CloseVoted {
        /// The epoch.
        epoch: Epoch,
        /// The validator's operator.
        validator: Address,
    },
    /// Stake was slashed (see the slash record for the evidence).
    Slashed {
        /// Slash id (index into [`State::slashes`]).
        id: u64,
        /// Offender.
        offender: Offender,
        /// Reason.
        reason: SlashReason,
        /// Amount burned.
        amount: Amount,
    },
    /// A validator was jailed (zero voting power at once).
    Jailed {
        /// Operator.
        operator: Address,
        /// First epoch at which it may unjail.
        until_epoch: Epoch,
    },
    /// A validator was removed for good.
    ValidatorRemoved {
        /// Operator.
        operator: Address,
    },
    /// A reward was minted for audited work.
    RewardPaid {
        /// Epoch rewarded.
        epoch: Epoch,
        /// Recipient.
        to: Address,
        /// Amount minted.
        amount: Amount,
    },
    /// An epoch ended.
    EpochEnded {
        /// The epoch that ended.
        epoch: Epoch,
        /// Total minted for it.
        minted: Amount,
    },
    /// The validator set changed (at an epoch boundary, or by jailing/removal).
    ValidatorSetChanged,
    /// An ended epoch was sealed with its sampling beacon (see [`crate::sampling`]).
    EpochSealed {
        /// The epoch sealed.
        epoch: Epoch,
        /// Its beacon.
        beacon: [u8; 32],
    },
    /// A validator attested an epoch's readings root.
    ReadingsAttested {
        /// Epoch attested.
        epoch: Epoch,
        /// The validator's operator.
        validator: Address,
        /// Root attested.
        readings_root: [u8; 32],
        /// Readings under it.
        readings: u64,
    },
    /// An epoch's readings root was fixed by ≥ 2/3 of its committee's power.
    ReadingsFixed {
        /// The epoch.
        epoch: Epoch,
        /// The fixed root.
        root: [u8; 32],
        /// Readings under it.
        readings: u64,
    },
    /// A validator's attestation differs from the fixed root: it must fill from peers.
    AttestationFlagged {
        /// The epoch.
        epoch: Epoch,
        /// The validator's operator.
        validator: Address,
    },
    /// A storage device committed its data; challenged from the current epoch on.
    StorageCommitted {
        /// The device (the commitment's key).
        device: DeviceId,
        /// Its owner.
        owner: Address,
        /// Merkle root.
        root: [u8; 32],
        /// Chunks committed.
        num_chunks: u64,
    },
    /// A storage proof for the ledger's challenge verified: the epoch passed.
    StorageProofVerified {
        /// The challenged epoch.
        epoch: Epoch,
        /// The commitment's key.
        device: DeviceId,
        /// The owner that proved.
        owner: Address,
    },
    /// A storage device's challenge failed: a proof that does not verify, or none by the
    /// deadline.
    StorageFault {
        /// The challenged epoch.
        epoch: Epoch,
        /// The commitment's key.
        device: DeviceId,
        /// Its owner.
        owner: Address,
        /// Missed deadline or failing proof.
        kind: crate::storage::StorageFaultKind,
        /// Faults of the commitment so far.
        faults: u32,
    },
    /// A GPU device's spec was registered or replaced.
    GpuSpecRegistered {
        /// The spec's record key.
        device: DeviceId,
        /// Owner.
        owner: Address,
        /// Claimed multiply-adds per second.
        claimed_mac_per_s: u64,
    },
    /// A committee member reported a provider audit verdict.
    ProviderAuditReported {
        /// Audited epoch.
        epoch: Epoch,
        /// The device's record key.
        device: DeviceId,
        /// Which audit.
        kind: crate::provider_audit::ProviderAuditKind,
        /// The member's operator.
        validator: Address,
        /// Its verdict.
        passed: bool,
    },
    /// Reports holding ≥ 2/3 of the committee's weight agreed: the round is decided.
    ProviderAuditDecided {
        /// Audited epoch.
        epoch: Epoch,
        /// The device's record key.
        device: DeviceId,
        /// Which audit.
        kind: crate::provider_audit::ProviderAuditKind,
        /// The device's owner.
        owner: Address,
        /// The verdict.
        passed: bool,
        /// A GPU pass below the registered claim.
        below_spec: bool,
        /// Median measured throughput of the agreeing reports.
        median_measured_per_s: u64,
    },
}

/// The result of an accepted transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxReceipt {
    /// blake3 of the signed transaction's canonical bytes.
    pub tx_hash: [u8; 32],
    /// Signer.
    pub signer: Address,
    /// Nonce consumed.
    pub nonce: u64,
    /// Fee paid.
    pub fee: Amount,
    /// What happened.
    pub events: Vec<Event>,
    /// `Some(e)`: the body was rejected with `e`; the fee was still paid and the nonce
    /// consumed, nothing else changed.
    pub failed: Option<TxError>,
}

/// The result of a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockOutcome {
    /// Height applied.
    pub height: Height,
    /// One result per transaction, in block order: `Err` for one that changed nothing (not
    /// chargeable), `Ok` for one that was included (see [`TxReceipt::failed`]).
    pub results: Vec<core::result::Result<TxReceipt, TxError>>,
    /// Events of the end of the block (epoch boundary: rewards, releases, set change).
    pub end_block_events: Vec<Event>,
    /// The epoch that ended with this block, if any.
    pub epoch_ended: Option<Epoch>,
    /// Whether [`State::validator_set`] differs from before the block.
    pub validator_set_changed: bool,
    /// State root after the block.
    pub state_root: [u8; 32],
    /// The state entries the block wrote (see [`State::entries`]), for incremental
    /// persistence.
    pub writes: crate::WriteSet,
}

/// Balance changes and burns staged during the check phase; reads see staged values.
struct Stage<'a> {
    state: &'a State,
    balances: BTreeMap<Address, Amount>,
    burned: Amount,
}

impl<'a> Stage<'a> {
    fn new(state: &'a State) -> Self {
        Self {
            state,
            balances: BTreeMap::new(),
            burned: 0,
        }
    }

    fn balance(&self, a: &Address) -> Amount {
        self.balances
            .get(a)
            .copied()
            .unwrap_or_else(|| self.state.account(a).balance)
    }

    fn debit(&mut self, a: &Address, amount: Amount) -> core::result::Result<(), TxError> {
        let available = self.balance(a);
        let left = available
            .checked_sub(amount)
            .ok_or(TxError::InsufficientFunds {
                needed: amount,
                available,
            })?;
        self.balances.insert(*a, left);
        Ok(())
    }

    fn credit(&mut self, a: &Address, amount: Amount) -> core::result::Result<(), TxError> {
        let new = self
            .balance(a)
            .checked_add(amount)
            .ok_or(TxError::Overflow)?;
        self.balances.insert(*a, new);
        Ok(())
    }

    fn burn(&mut self, amount: Amount) -> core::result::Result<(), TxError> {
        self.burned = self.burned.checked_add(amount).ok_or(TxError::Overflow)?;
        self.state
            .supply
            .burned
            .checked_add(self.burned)
            .ok_or(TxError::Overflow)?;
        Ok(())
    }
}

/// Writes a check phase's results; cannot fail.
type Commit = Box<dyn FnOnce(&mut State, &mut Vec<Event>)>;

/// Checks a transaction against the state without changing it: whether [`apply_tx`] would
/// apply it in full (`Ok`), or reject it (`Err`, whether or not it would still pay its fee:
/// see [`check_envelope`]). For mempools and proposers.
pub fn check_tx(
    state: &State,
    tx: &SignedTx,
    ctx: &BlockContext,
) -> core::result::Result<(), TxError> {
    check(state, tx, ctx)
}

/// The checks a transaction must pass to be charged at all: a strong signer key, a valid
/// signature for this chain, the signer's next nonce, a fee of at least `min_fee`. A
/// transaction that passes these and can pay its fee is *included*: its fee is paid and its
/// nonce consumed even if its body then fails ([`TxReceipt::failed`]).
pub fn check_envelope(state: &State, stx: &SignedTx) -> core::result::Result<(), TxError> {
    check_signed(state, stx)?;
    next_nonce(state, stx).map(|_| ())
}

/// The stateless part of [`check_envelope`] (key, signature, minimum fee), for transactions
/// whose nonce is not yet the account's next one (mempool admission).
pub fn check_signed(state: &State, stx: &SignedTx) -> core::result::Result<(), TxError> {
    let tx = &stx.tx;
    if tx.signer.is_weak() {
        return Err(TxError::WeakKey("signer"));
    }
    if tx.fee < state.params.min_fee {
        return Err(TxError::FeeTooLow {
            min: state.params.min_fee,
            got: tx.fee,
        });
    }
    stx.verify(&state.chain_id)
}

fn next_nonce(st: &State, stx: &SignedTx) -> core::result::Result<u64, TxError> {
    let expected = st.account(&stx.tx.signer).nonce;
    if stx.tx.nonce != expected {
        return Err(TxError::BadNonce {
            expected,
            got: stx.tx.nonce,
        });
    }
    expected.checked_add(1).ok_or(TxError::Overflow)
}

/// Stages the fee: debited from the signer, credited to the proposer's operator or burned.
fn fee_stage<'a>(
    st: &'a State,
    stx: &SignedTx,
    ctx: &BlockContext,
) -> core::result::Result<(Stage<'a>, Option<Address>), TxError> {
    let tx = &stx.tx;
    let mut stage = Stage::new(st);
    stage.debit(&tx.signer, tx.fee)?;
    let fee_to = ctx
        .proposer
        .and_then(|k| st.consensus_keys.get(&k))
        .copied();
    match &fee_to {
        Some(op) => stage.credit(op, tx.fee)?,
        None => stage.burn(tx.fee)?,
    }
    Ok((stage, fee_to))
}

fn check(st: &State, stx: &SignedTx, ctx: &BlockContext) -> core::result::Result<(), TxError> {
    check_signed(st, stx)?;
    next_nonce(st, stx)?;
    let (mut stage, _) = fee_stage(st, stx, ctx)?;
    check_body(&mut stage, &stx.tx.signer, &stx.tx.body, ctx).map(|_| ())
}

/// Applies one transaction.
///
/// `Err`: the transaction is not chargeable (bad signature or key, wrong nonce, fee below the
/// minimum or not payable) and nothing changed. `Ok` with [`TxReceipt::failed`] `None`: it
/// applied. `Ok` with `failed: Some(e)`: its body was rejected with `e`; only its fee was paid
/// and its nonce consumed (so it cannot be replayed).
pub fn apply_tx(
    state: &mut State,
    tx: &SignedTx,
    ctx: &BlockContext,
) -> core::result::Result<TxReceipt, TxError> {
    check_signed(state, tx)?;
    let next_nonce = next_nonce(state, tx)?;
    let (mut stage, fee_to) = fee_stage(state, tx, ctx)?;
    let (balances, burned, commit, failed) =
        match check_body(&mut stage, &tx.tx.signer, &tx.tx.body, ctx) {
            Ok(commit) => (stage.balances, stage.burned, Some(commit), None),
            Err(e) => {
                // Charge the fee alone; it was payable a moment ago, on the same state.
                let (fee_only, _) = fee_stage(state, tx, ctx)?;
                (fee_only.balances, fee_only.burned, None, Some(e))
            }
        };
    // Commit phase: only precomputed writes from here on.
    let signer = tx.tx.signer;
    for (a, b) in balances {
        state.accounts.entry(a).or_default().balance = b;
    }
    state.accounts.entry(signer).or_default().nonce = next_nonce;
    state.supply.burned = state.supply.burned.saturating_add(burned);
    let mut events = vec![Event::FeePaid {
        from: signer,
        to: fee_to,
        amount: tx.tx.fee,
    }];
    if let Some(commit) = commit {
        commit(state, &mut events);
    }
    Ok(TxReceipt {
        tx_hash: tx.hash(),
        signer,
        nonce: tx.tx.nonce,
        fee: tx.tx.fee,
        events,
        failed,
    })
}

fn positive(amount: Amount) -> core::result::Result<(), TxError> {
    if amount == 0 {
        Err(TxError::ZeroAmount)
    } else {
        Ok(())
    }
}

fn check_body(
    stage: &mut Stage<'_>,
    signer: &Address,
    body: &TxBody,
    ctx: &BlockContext,
) -> core::result::Result<Commit, TxError> {
    let signer = *signer;
    match body {
        TxBody::Transfer { to, amount } => {
            positive(*amount)?;
            stage.debit(&signer, *amount)?;
            stage.credit(to, *amount)?;
            let (to, amount) = (*to, *amount);
            Ok(Box::new(move |st, ev| {
                st.accounts.entry(to).or_default();
                ev.push(Event::Transfer {
                    from: signer,
                    to,
                    amount,
                });
            }))
        }
        TxBody::CreateValidator { .. }
        | TxBody::Bond { .. }
        | TxBody::Unbond { .. }
        | TxBody::Unjail
        | TxBody::Delegate { .. }
        | TxBody::Undelegate { .. }
        | TxBody::SetL1Key { .. } => staking::check(stage, signer, body, ctx),
        TxBody::RegisterProvider { .. }
        | TxBody::ProviderBond { .. }
        | TxBody::ProviderUnbond { .. } => providers::check(stage, signer, body, ctx),
        TxBody::RegisterDevice { .. }
        | TxBody::RotateDeviceKey { .. }
        | TxBody::RetireDevice { .. } => devices::check(stage, signer, body, ctx),
        TxBody::SubmitAuditProof { .. } => audits::check(stage, signer, body, ctx),
        TxBody::CloseEpoch { epoch } => close_vote(stage.state, signer, *epoch),
        TxBody::SubmitEvidence(evidence) => evidence::check_evidence(stage, signer, evidence, ctx),
        TxBody::AttestReadings { .. } => attestations::check(stage, signer, body, ctx),
        TxBody::CommitStorage { .. } | TxBody::SubmitStorageProof { .. } => {
            storage::check(stage, signer, body, ctx)
        }
        TxBody::ReportProviderAudit { .. } | TxBody::RegisterGpuSpec { .. } => {
            provider_audit::check(stage, signer, body, ctx)
        }
    }
}

/// Checks a `CloseEpoch` vote: timed epochs only, from an active validator's operator, for the
/// current epoch, once.
fn close_vote(st: &State, signer: Address, epoch: Epoch) -> core::result::Result<Commit, TxError> {
    if !st.params.timed_epochs() {
        return Err(TxError::UntimedEpochs);
    }
    active_validator(st, &signer)?;
    if epoch != st.epoch {
        return Err(TxError::CloseEpoch {
            current: st.epoch,
            got: epoch,
        });
    }
    if st.close_votes.contains(&signer) {
        return Err(TxError::DuplicateCloseVote);
    }
    Ok(Box::new(move |st, ev| {
        st.close_votes.insert(signer);
        ev.push(Event::CloseVoted {
            epoch,
            validator: signer,
        });
    }))
}

/// Applies a decided block: its transactions in order (rejected ones change nothing and are
/// reported in [`BlockOutcome::results`]), then, at the last block of an epoch, the epoch
/// boundary ([`end_epoch`]). Fails only when the height does not follow the state's.
pub fn apply_block(state: &mut State, block: &Block) -> Result<BlockOutcome> {
    apply_block_inner(
        state,
        block.height,
        block.proposer,
        block.txs.iter().map(|t| Ok(std::borrow::Cow::Borrowed(t))),
    )
}

/// Like [`apply_block`], for a block whose transactions are still canonical bytes (as the
/// consensus engine decides them): a transaction that does not decode is rejected with
/// [`TxError::Malformed`] in its slot, like any other invalid transaction.
pub fn apply_raw_block<T: AsRef<[u8]>>(
    state: &mut State,
    height: Height,
    proposer: Option<ConsensusKey>,
    txs: &[T],
) -> Result<BlockOutcome> {
    apply_block_inner(
        state,
        height,
        proposer,
        txs.iter()
            .map(|b| SignedTx::decode(b.as_ref()).map(std::borrow::Cow::Owned)),
    )
}

fn apply_block_inner<'a, I>(
    state: &mut State,
    height: Height,
    proposer: Option<ConsensusKey>,
    txs: I,
) -> Result<BlockOutcome>
where
    I: Iterator<Item = core::result::Result<std::borrow::Cow<'a, SignedTx>, TxError>>,
{
    let next = state.height.checked_add(1);
    if next != Some(height) {
        return Err(LedgerError::BlockHeight {
            expected_previous: state.height,
            got: height,
        });
    }
    let before = state.validator_set();
    let ctx = BlockContext { height, proposer };
    let results = txs
        .map(|tx| tx.and_then(|tx| apply_tx(state, &tx, &ctx)))
        .collect();
    state.height = height;
    let mut end_block_events = Vec::new();
    let mut epoch_ended = None;
    let boundary = if state.params.timed_epochs() {
        state.close_votes_reach_two_thirds()
    } else {
        height.is_multiple_of(state.params.epoch_length)
    };
    if boundary {
        epoch_ended = Some(state.epoch);
        end_block_events = end_epoch(state);
    }
    let validator_set_changed = state.validator_set() != before;
    let (state_root, writes) = state.commit()?;
    Ok(BlockOutcome {
        height,
        results,
        end_block_events,
        epoch_ended,
        validator_set_changed,
        state_root,
        writes,
    })
}

#[cfg(test)]
mod tests;
