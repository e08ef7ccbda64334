//! Admission to the mempool and selection for a block: only transactions whose sender can pay
//! get in, and what gets in cannot be replayed or queued for free.
//!
//! [`PendingPool`] tracks, per sender, the pending nonces (a gap-free window starting at the
//! account's committed nonce) and the fees they reserve (never more than the committed
//! balance). [`PendingPool::admit`] refuses what could never apply: a bad signature or key, a
//! fee below `min_fee`, a nonce already used or pending, a nonce gap, a fee the balance cannot
//! cover next to the fees already reserved; and for the sender's next nonce, anything
//! [`check_tx`] rejects. [`PendingPool::after_commit`] re-checks every sender against the new
//! state and says which pending transactions to drop (consumed nonces, fees the balance no
//! longer covers).
//!
//! [`select_payable`] is the proposer's filter: it walks the candidates in order over a staged
//! view (per signer: next nonce, and a lower bound of the balance after the candidates already
//! kept) and keeps only those that will at least pay their fee. Since an included transaction
//! whose body fails still pays its fee and consumes its nonce ([`crate::apply_tx`]), every
//! kept transaction costs its sender something.
//!
//! Pure and deterministic like the rest of the crate: the node holds the pool behind a lock.

use std::collections::BTreeMap;

use crate::apply::{check_signed, check_tx, BlockContext};
use crate::error::TxError;
use crate::state::State;
use crate::tx::{SignedTx, TxBody};
use crate::types::{Address, Amount};

/// A transaction's hash as the mempool knows it (blake3 of its canonical bytes).
pub type TxHash = [u8; 32];

/// Why a transaction was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    /// The ledger rejects it (signature, key, fee, or for the next nonce any rule).
    #[error(transparent)]
    Tx(#[from] TxError),
    /// The nonce was consumed already.
    #[error("nonce {got} already used (account nonce {committed})")]
    StaleNonce {
        /// The account's committed nonce.
        committed: u64,
        /// The transaction's nonce.
        got: u64,
    },
    /// A transaction with this nonce (or this very transaction) is already pending.
    #[error("a transaction with nonce {0} is already pending")]
    NoncePending(u64),
    /// The nonce leaves a gap after the pending ones.
    #[error("nonce {got} leaves a gap: the next admissible nonce is {expected}")]
    NonceGap {
        /// The next nonce the pool admits for this sender.
        expected: u64,
        /// The transaction's nonce.
        got: u64,
    },
    /// The sender has as many pending transactions as allowed.
    #[error("{0} transactions already pending for this sender")]
    TooManyPending(u64),
    /// The balance does not cover this fee next to the fees already reserved.
    #[error("cannot pay: fee {fee} + reserved {reserved} exceeds balance {balance}")]
    CannotPay {
        /// This transaction's fee.
        fee: Amount,
        /// Fees of the sender's pending transactions.
        reserved: Amount,
        /// The committed balance.
        balance: Amount,
    },
}

impl AdmitError {
    /// Stable snake_case code, for metrics and API responses.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Tx(e) => e.reason(),
            Self::StaleNonce { .. } => "stale_nonce",
            Self::NoncePending(_) => "nonce_pending",
            Self::NonceGap { .. } => "nonce_gap",
            Self::TooManyPending(_) => "too_many_pending",
            Self::CannotPay { .. } => "cannot_pay_fee",
        }
    }
}

/// One sender's pending transactions: nonces `base..base + txs.len()`, all present.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Queue {
    /// Nonce → (hash, fee).
    txs: BTreeMap<u64, (TxHash, Amount)>,
    /// Sum of the fees of `txs` (never above the committed balance).
    reserved: Amount,
}

/// The nonce- and fee-aware index of the mempool (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPool {
    senders: BTreeMap<Address, Queue>,
    by_hash: BTreeMap<TxHash, (Address, u64)>,
    max_per_sender: u64,
}

impl PendingPool {
    /// An empty pool admitting at most `max_per_sender` pending transactions per sender.
    pub fn new(max_per_sender: u64) -> Self {
        Self {
            senders: BTreeMap::new(),
            by_hash: BTreeMap::new(),
            max_per_sender,
        }
    }

    /// Pending transactions.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// Fees reserved by `sender`'s pending transactions.
    pub fn reserved(&self, sender: &Address) -> Amount {
        self.senders.get(sender).map_or(0, |q| q.reserved)
    }

    /// The next nonce the pool would admit for `sender`.
    pub fn next_nonce(&self, state: &State, sender: &Address) -> u64 {
        let committed = state.account(sender).nonce;
        self.senders
            .get(sender)
            .and_then(|q| q.txs.keys().next_back())
            .and_then(|n| n.checked_add(1))
            .map_or(committed, |n| n.max(committed))
    }

    /// Admits `tx` (whose mempool hash is `hash`) against the committed `state`, reserving its
    /// fee, or says why not. Nothing changes on `Err`.
    pub fn admit(&mut self, state: &State, tx: &SignedTx, hash: TxHash) -> Result<(), AdmitError> {
        let t = &tx.tx;
        if let Some((_, n)) = self.by_hash.get(&hash) {
            return Err(AdmitError::NoncePending(*n));
        }
        let account = state.account(&t.signer);
        if t.nonce < account.nonce {
            return Err(AdmitError::StaleNonce {
                committed: account.nonce,
                got: t.nonce,
            });
        }
        let expected = self.next_nonce(state, &t.signer);
        if t.nonce < expected {
            return Err(AdmitError::NoncePending(t.nonce));
        }
        if t.nonce > expected {
            return Err(AdmitError::NonceGap {
                expected,
                got: t.nonce,
            });
        }
        let queue = self.senders.get(&t.signer);
        let pending = queue.map_or(0, |q| q.txs.len() as u64);
        if pending >= self.max_per_sender {
            return Err(AdmitError::TooManyPending(pending));
        }
        if t.nonce == account.nonce {
            // The sender's next transaction: the exact check of the ledger.
            let ctx = BlockContext {
                height: state.height().saturating_add(1),
                proposer: None,
            };
            check_tx(state, tx, &ctx)?;
        } else {
            check_signed(state, tx)?;
        }
        let reserved = queue.map_or(0, |q| q.reserved);
        let total = reserved.checked_add(t.fee);
        if total.is_none_or(|total| total > account.balance) {
            return Err(AdmitError::CannotPay {
                fee: t.fee,
                reserved,
                balance: account.balance,
            });
        }
        let q = self.senders.entry(t.signer).or_default();
        q.txs.insert(t.nonce, (hash, t.fee));
        q.reserved = total.unwrap_or(Amount::MAX);
        self.by_hash.insert(hash, (t.signer, t.nonce));
        Ok(())
    }

    /// Forgets one pending transaction (the mempool dropped it for its own reasons) and every
    /// later one of its sender, which would otherwise wait behind a gap. Returns the hashes
    /// forgotten.
    pub fn remove(&mut self, hash: &TxHash) -> Vec<TxHash> {
        let Some((sender, nonce)) = self.by_hash.get(hash).copied() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some(q) = self.senders.get_mut(&sender) {
            let later = q.txs.split_off(&nonce);
            for (_, (h, fee)) in later {
                q.reserved = q.reserved.saturating_sub(fee);
                out.push(h);
            }
            if q.txs.is_empty() {
                self.senders.remove(&sender);
            }
        }
        for h in &out {
            self.by_hash.remove(h);
        }
        out
    }

    /// Re-checks every sender against the state after a committed block and returns the
    /// pending transactions to drop: those whose nonce was consumed (included, or replaced by
    /// another transaction with that nonce), those behind a gap, and, highest nonce first,
    /// those whose fees the balance no longer covers.
    pub fn after_commit(&mut self, state: &State) -> Vec<TxHash> {
        let mut dropped = Vec::new();
        let mut emptied = Vec::new();
        for (sender, q) in &mut self.senders {
            let account = state.account(sender);
            let live = q.txs.split_off(&account.nonce);
            dropped.extend(q.txs.values().map(|(h, _)| *h));
            q.txs = live;
            // Gap-free from the committed nonce, or nothing is admissible.
            if q.txs.keys().next().is_some_and(|n| *n != account.nonce) {
                dropped.extend(q.txs.values().map(|(h, _)| *h));
                q.txs.clear();
            }
            let mut reserved: u128 = q.txs.values().map(|(_, f)| u128::from(*f)).sum();
            while reserved > u128::from(account.balance) {
                let Some((_, (h, fee))) = q.txs.pop_last() else {
                    break;
                };
                reserved -= u128::from(fee);
                dropped.push(h);
            }
            q.reserved = Amount::try_from(reserved).unwrap_or(Amount::MAX);
            if q.txs.is_empty() {
                emptied.push(*sender);
            }
        }
        for s in emptied {
            self.senders.remove(&s);
        }
        for h in &dropped {
            self.by_hash.remove(h);
        }
        dropped
    }
}

/// What a body debits from the signer's liquid balance if it applies (beyond the fee).
fn body_debit(body: &TxBody) -> Amount {
    match body {
        TxBody::Transfer { amount, .. }
        | TxBody::Bond { amount }
        | TxBody::ProviderBond { amount }
        | TxBody::Delegate { amount, .. } => *amount,
        TxBody::CreateValidator { stake, .. } | TxBody::RegisterProvider { stake, .. } => *stake,
        _ => 0,
    }
}

/// The proposer's filter: the indexes of the `candidates` (canonical transaction bytes, in
/// mempool order) to put in a block on top of `state`, in order.
///
/// A candidate is kept when it decodes, pays at least `min_fee`, carries its signer's next
/// nonce (counting the candidates kept before it) and its fee fits in a lower bound of the
/// signer's balance at that point (the committed balance minus the fees and the possible
/// debits of the signer's candidates kept before it). Such a transaction is included when the
/// block applies: it pays its fee and consumes its nonce, whether or not its body succeeds.
/// Signatures are not re-verified here: admission ([`PendingPool::admit`]) did, and a
/// transaction with a bad signature is rejected without effect when the block applies.
pub fn select_payable<T: AsRef<[u8]>>(state: &State, candidates: &[T]) -> Vec<usize> {
    #[derive(Clone, Copy)]
    struct Staged {
        nonce: u64,
        balance_floor: Amount,
    }
    let mut staged: BTreeMap<Address, Staged> = BTreeMap::new();
    let min_fee = state.params().min_fee;
    let mut keep = Vec::new();
    for (i, raw) in candidates.iter().enumerate() {
        let Ok(stx) = SignedTx::decode(raw.as_ref()) else {
            continue;
        };
        let t = &stx.tx;
        if t.fee < min_fee || t.signer.is_weak() {
            continue;
        }
        let s = *staged.entry(t.signer).or_insert_with(|| {
            let a = state.account(&t.signer);
            Staged {
                nonce: a.nonce,
                balance_floor: a.balance,
            }
        });
        if t.nonce != s.nonce || t.fee > s.balance_floor {
            continue;
        }
        let Some(nonce) = s.nonce.checked_add(1) else {
            continue;
        };
        let balance_floor = s
            .balance_floor
            .saturating_sub(t.fee)
            .saturating_sub(body_debit(&t.body));
        staged.insert(
            t.signer,
            Staged {
                nonce,
                balance_floor,
            },
        );
        keep.push(i);
    }
    keep
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::apply::apply_raw_block;
    use crate::genesis::GenesisAccount;
    use crate::testkit::{address, key, sign_tx, TestNet};
    use crate::tx::Tx;
    use ed25519_dalek::SigningKey;

    /// A test network with `min_fee` 1 and an account (seed 150) holding `poor` units.
    fn net(poor: Amount) -> (TestNet, State, SigningKey) {
        let mut n = TestNet::new(4, 4);
        n.genesis.params.min_fee = 1;
        let k = key(150);
        if poor > 0 {
            n.genesis.accounts.push(GenesisAccount {
                address: address(&k),
                balance: poor,
            });
        }
        let st = n.state().unwrap();
        (n, st, k)
    }

    fn tx(st: &State, k: &SigningKey, nonce: u64, fee: Amount, amount: Amount) -> SignedTx {
        Tx {
            signer: address(k),
            nonce,
            fee,
            body: TxBody::Transfer {
                to: address(&key(100)),
                amount,
            },
        }
        .sign(st.chain_id(), k)
    }

    fn h(t: &SignedTx) -> TxHash {
        *blake3::hash(&t.encode()).as_bytes()
    }

    #[test]
    fn a_zero_balance_key_cannot_get_a_tx_into_a_block() {
        let (_, mut st, broke) = net(0);
        let mut pool = PendingPool::new(16);
        // Not admitted: its next transaction cannot pay its fee, a later one has a gap, a free
        // one is below the minimum fee.
        let t0 = tx(&st, &broke, 0, 1, 1);
        assert_eq!(
            pool.admit(&st, &t0, h(&t0)),
            Err(AdmitError::Tx(TxError::InsufficientFunds {
                needed: 1,
                available: 0
            }))
        );
        let t1 = tx(&st, &broke, 1, 1, 1);
        assert_eq!(
            pool.admit(&st, &t1, h(&t1)),
            Err(AdmitError::NonceGap {
                expected: 0,
                got: 1
            })
        );
        let free = tx(&st, &broke, 0, 0, 0);
        assert_eq!(
            pool.admit(&st, &free, h(&free)).map_err(|e| e.reason()),
            Err("fee_too_low")
        );
        assert!(pool.is_empty());
        // A proposer that got them anyway leaves them out.
        let raw: Vec<Vec<u8>> = [&t0, &t1, &free].iter().map(|t| t.encode()).collect();
        assert!(select_payable(&st, &raw).is_empty());
        // A block that carries them anyway changes nothing but the height.
        let before = st.account(&address(&broke));
        let supply = st.supply();
        let out = apply_raw_block(&mut st, 1, None, &raw).unwrap();
        assert!(out.results.iter().all(|r| r.is_err()), "{:?}", out.results);
        assert_eq!(st.account(&address(&broke)), before);
        assert_eq!(st.supply(), supply);
    }

    #[test]
    fn pending_nonces_are_gap_free_and_fees_reserved() {
        let (_, st, k) = net(3);
        let mut pool = PendingPool::new(16);
        let txs: Vec<SignedTx> = (0..4).map(|n| tx(&st, &k, n, 1, 0)).collect();
        // Nonce 0 is checked in full (a zero transfer would fail): admit a real one.
        let t0 = tx(&st, &k, 0, 1, 1);
        pool.admit(&st, &t0, h(&t0)).unwrap();
        // Later nonces: signature and fee only; fees reserved up to the balance.
        pool.admit(&st, &txs[1], h(&txs[1])).unwrap();
        pool.admit(&st, &txs[2], h(&txs[2])).unwrap();
        assert_eq!(pool.reserved(&address(&k)), 3);
        assert_eq!(
            pool.admit(&st, &txs[3], h(&txs[3])),
            Err(AdmitError::CannotPay {
                fee: 1,
                reserved: 3,
                balance: 3
            })
        );
        let other1 = tx(&st, &k, 1, 1, 7);
        assert_eq!(
            pool.admit(&st, &other1, h(&other1)),
            Err(AdmitError::NoncePending(1))
        );
        assert_eq!(
            pool.admit(&st, &txs[1], h(&txs[1])),
            Err(AdmitError::NoncePending(1))
        );
        let far = tx(&st, &k, 9, 1, 0);
        assert_eq!(
            pool.admit(&st, &far, h(&far)),
            Err(AdmitError::NonceGap {
                expected: 3,
                got: 9
            })
        );
        let mut small = PendingPool::new(1);
        small.admit(&st, &t0, h(&t0)).unwrap();
        assert_eq!(
            small.admit(&st, &txs[1], h(&txs[1])),
            Err(AdmitError::TooManyPending(1))
        );
        // Dropping nonce 1 also forgets nonce 2, which would wait behind a gap.
        assert_eq!(pool.remove(&h(&txs[1])), vec![h(&txs[1]), h(&txs[2])]);
        assert_eq!(pool.len(), 1);
        assert_eq!(pool.reserved(&address(&k)), 1);
    }

    #[test]
    fn after_a_block_consumed_and_unpayable_txs_are_dropped() {
        let (_, mut st, k) = net(4);
        let mut pool = PendingPool::new(16);
        // Nonce 0 moves 2 of the 4 units away; nonces 1 and 2 reserve 1 each (4 reserved
        // fees would not fit after the block).
        let t0 = tx(&st, &k, 0, 1, 2);
        let t1 = tx(&st, &k, 1, 1, 0);
        let t2 = tx(&st, &k, 2, 1, 0);
        for t in [&t0, &t1, &t2] {
            pool.admit(&st, t, h(t)).unwrap();
        }
        let out = apply_raw_block(&mut st, 1, None, &[t0.encode()]).unwrap();
        assert!(out.results[0].as_ref().is_ok_and(|r| r.failed.is_none()));
        // Balance 1 now: t0 is consumed, t1 still payable, t2 no longer.
        let mut dropped = pool.after_commit(&st);
        dropped.sort();
        let mut want = vec![h(&t0), h(&t2)];
        want.sort();
        assert_eq!(dropped, want);
        assert_eq!(pool.len(), 1);
        assert_eq!(pool.reserved(&address(&k)), 1);
        assert_eq!(pool.next_nonce(&st, &address(&k)), 2);
    }

    #[test]
    fn an_included_failing_tx_pays_its_fee_and_cannot_be_replayed() {
        let (_, mut st, k) = net(10);
        let t = tx(&st, &k, 0, 2, 1_000);
        let out = apply_raw_block(&mut st, 1, None, &[t.encode()]).unwrap();
        let r = out.results[0].as_ref().unwrap();
        assert_eq!(
            r.failed,
            Some(TxError::InsufficientFunds {
                needed: 1_000,
                available: 8
            })
        );
        assert_eq!(st.account(&address(&k)).balance, 8);
        assert_eq!(st.account(&address(&k)).nonce, 1);
        assert_eq!(st.supply().burned, 2);
        let again = apply_raw_block(&mut st, 2, None, &[t.encode()]).unwrap();
        assert_eq!(
            again.results[0],
            Err(TxError::BadNonce {
                expected: 1,
                got: 0
            })
        );
        assert_eq!(st.account(&address(&k)).balance, 8);
    }

    #[test]
    fn the_proposer_keeps_only_what_pays_in_nonce_order() {
        let (n, st, k) = net(5);
        // k: nonce 0 moves 3 (floor 5 - 1 - 3 = 1), nonce 1 pays 1 (floor 0), nonce 2 cannot.
        let a0 = tx(&st, &k, 0, 1, 3);
        let a1 = tx(&st, &k, 1, 1, 0);
        let a2 = tx(&st, &k, 2, 1, 0);
        // A rich user's nonce 1 before its nonce 0: the first is skipped, the second kept.
        let rich = &n.users[2];
        let b1 = tx(&st, rich, 1, 1, 1);
        let b0 = sign_tx(
            &st,
            rich,
            1,
            TxBody::Transfer {
                to: address(&key(100)),
                amount: 1,
            },
        );
        let raw: Vec<Vec<u8>> = [&b1, &a0, &a1, &a2, &b0]
            .iter()
            .map(|t| t.encode())
            .collect();
        assert_eq!(select_payable(&st, &raw), vec![1, 2, 4]);
    }
}
