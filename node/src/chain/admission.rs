//! The mempool's doors, shared by the driver and the simulator (`tests::sim`), which hosts them over an
//! in-memory store so that thousands of seeded schedules run the node's own transaction path:
//!
//! - [`TxGate`]: admission of a gossiped batch of transactions, cheapest check first (forged before,
//!   refused at this tip, already pooled or committed, every admission check but the signature), then one
//!   signature check per remaining transaction paid from the sending peer's budget, then the pool.
//! - [`build_from_pool`]: a block from the pool's fair candidates; what does not apply is reported back.
//! - [`execute_with_pool`]: execute a block, skipping signature checks of transactions the pool has
//!   already verified, and remember the ones it verifies.
//!
//! The pool is passed as a `Mutex` because the node shares it between the API, the swarm task and the
//! driver: each function takes the lock only to read or record, never while checking signatures or
//! executing.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard, PoisonError};

use ledger_core::gossip::{DropReason, RecentSet, Resource, Verdict};
use ledger_core::governance::GovState;
use ledger_core::state::{ApplyBlockError, BlockTemplate, BuiltBlock, StoreError, apply_block, build_block};
use ledger_core::{
    AccountStore, Block, ConsensusParams, Height, Parent, SignedTransaction, StateChanges, StateTree, TxError, TxId,
};

use crate::mempool::{Mempool, Source};

/// Transaction ids remembered as refused (each kind).
pub const REFUSED_TXS_MAX: usize = 65_536;

fn lock(pool: &Mutex<Mempool>) -> MutexGuard<'_, Mempool> {
    pool.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Codes that only a forged or broken transaction can have (as opposed to stale or unlucky ones).
fn is_forgery(code: &str) -> bool {
    matches!(code, "bad_signature" | "malformed" | "wrong_chain" | "too_large" | "weak_key" | "bad_key")
}

/// Gossip admission of transaction batches, with what it refused so that copies cost a lookup.
pub struct TxGate {
    refused: Mutex<Refused>,
}

struct Refused {
    /// Refused against the state at `tip` (unfunded, stale nonce, ...): the same answer until a commit.
    tip: Height,
    stateful: RecentSet<TxId>,
    /// Forged (the id covers the signature, so these never become valid).
    forged: RecentSet<TxId>,
}

impl Default for TxGate {
    fn default() -> Self {
        TxGate {
            refused: Mutex::new(Refused {
                tip: Height(0),
                stateful: RecentSet::new(REFUSED_TXS_MAX),
                forged: RecentSet::new(REFUSED_TXS_MAX),
            }),
        }
    }
}

impl TxGate {
    fn refused(&self) -> MutexGuard<'_, Refused> {
        self.refused.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Judge a gossiped batch against the state `store` committed at `tip`, admitting what passes to `pool`.
    /// `check_signatures` is the expensive part (keys and signatures, verified as one batch: less than half
    /// the cost of one by one from 64 transactions up), run without the pool's lock and only after `spend`
    /// granted one [`Resource::TxSignatures`] per transaction that needs it; it returns one verdict per
    /// transaction, in order. Accepted when something new was
    /// admitted; rejected (the sender pays) when a transaction is forged.
    ///
    /// The same as [`TxGate::prepare_batch`] then [`TxGate::finish_batch`], which the node runs on two
    /// threads (the cheap part where the peer's budget lives, the signatures off the network task).
    pub fn admit_batch<S: AccountStore + ?Sized>(
        &self,
        txs: &[SignedTransaction],
        pool: &Mutex<Mempool>,
        store: &S,
        tip: Height,
        check_signatures: &dyn Fn(&[&SignedTransaction]) -> Vec<Result<(), TxError>>,
        spend: &mut dyn FnMut(Resource, u64) -> bool,
    ) -> Verdict {
        match self.prepare_batch(txs, pool, store, tip, spend) {
            Ok(checked) => self.finish_batch(&checked, txs, pool, store, tip, check_signatures),
            Err(verdict) => verdict,
        }
    }

    /// The cheap part of [`TxGate::admit_batch`]: every check but the signatures, and the budget for those.
    /// `Ok`: the transactions whose signatures are to be checked (paid for); `Err`: the verdict already.
    pub fn prepare_batch<S: AccountStore + ?Sized>(
        &self,
        txs: &[SignedTransaction],
        pool: &Mutex<Mempool>,
        store: &S,
        tip: Height,
        spend: &mut dyn FnMut(Resource, u64) -> bool,
    ) -> Result<PreparedBatch, Verdict> {
        let mut to_check: Vec<u32> = Vec::new();
        let mut refused_recently = 0usize;
        {
            let mut refused = self.refused();
            if refused.tip != tip {
                refused.tip = tip;
                refused.stateful = RecentSet::new(REFUSED_TXS_MAX);
            }
            let mempool = lock(pool);
            // A node refusing transactions for its disk refuses relayed ones too: before any signature is
            // checked, so a rebroadcast costs nothing (no blame: the peer did nothing wrong).
            if mempool.disk_refusal().is_some() {
                return Err(Verdict::Ignore(DropReason::NotAdmissible));
            }
            for (i, tx) in (0u32..).zip(txs) {
                let id = tx.id();
                if refused.forged.contains(&id) {
                    return Err(Verdict::Reject(format!("tx {id}: forged (seen before)")));
                }
                if refused.stateful.contains(&id) {
                    refused_recently += 1;
                    continue;
                }
                if mempool.known_good(&id) {
                    continue; // pooled or committed: nothing new
                }
                match mempool.precheck_from(tx, store, tip, Source::Peer) {
                    Ok(()) => to_check.push(i),
                    // Its lower nonce may be in an earlier batch still being verified: judged again when
                    // admitted, after that batch (batches finish in arrival order).
                    Err(e) if e.code() == crate::mempool::code::NONCE_GAP_UNDER_LOAD => to_check.push(i),
                    Err(e) if is_forgery(e.code()) => {
                        refused.forged.insert(id);
                        return Err(Verdict::Reject(format!("tx {id}: {e}")));
                    }
                    Err(_) => refused.stateful.insert(id),
                }
            }
        }
        if to_check.is_empty() {
            return Err(Verdict::Ignore(if refused_recently > 0 {
                DropReason::RefusedRecently
            } else {
                DropReason::NotAdmissible
            }));
        }
        if !spend(Resource::TxSignatures, to_check.len() as u64) {
            return Err(Verdict::Ignore(DropReason::OverBudget));
        }
        Ok(PreparedBatch { to_check })
    }

    /// The expensive part of [`TxGate::admit_batch`]: check the prepared transactions' signatures as one
    /// batch, then admit them against the state `store` holds at `tip` (later than the prepared one when a
    /// block committed in between). `txs` is the batch `prepared` came from.
    pub fn finish_batch<S: AccountStore + ?Sized>(
        &self,
        prepared: &PreparedBatch,
        txs: &[SignedTransaction],
        pool: &Mutex<Mempool>,
        store: &S,
        tip: Height,
        check_signatures: &dyn Fn(&[&SignedTransaction]) -> Vec<Result<(), TxError>>,
    ) -> Verdict {
        let to_check: Vec<&SignedTransaction> = prepared.to_check.iter().filter_map(|&i| txs.get(i as usize)).collect();
        for (tx, verdict) in to_check.iter().zip(check_signatures(&to_check)) {
            if let Err(e) = verdict {
                let id = tx.id();
                self.refused().forged.insert(id);
                lock(pool).record_refused(id, &e);
                return Verdict::Reject(format!("tx {id}: {e}"));
            }
        }
        let mut admitted = 0usize;
        let mut mempool = lock(pool);
        for tx in to_check {
            if mempool.add_relayed_prechecked(tx.clone(), Ok(()), store, tip).is_ok() {
                admitted += 1;
            }
        }
        if admitted > 0 { Verdict::Accept } else { Verdict::Ignore(DropReason::NotAdmissible) }
    }
}

/// Which transactions of a gossiped batch (their indices) passed every cheap check and had their signature
/// checks paid for by the sending peer ([`TxGate::prepare_batch`]).
pub struct PreparedBatch {
    to_check: Vec<u32>,
}

impl PreparedBatch {
    /// The indices, in the batch, of the transactions whose signatures are to be checked.
    pub fn indices(&self) -> &[u32] {
        &self.to_check
    }

    pub fn len(&self) -> usize {
        self.to_check.len()
    }

    pub fn is_empty(&self) -> bool {
        self.to_check.is_empty()
    }
}

/// Build the next block from at most `limit` of the pool's candidates (all pooled, so all verified); the
/// builder's refusals go back to the pool, which evicts or keeps each by reason.
pub fn build_from_pool<S: AccountStore + ?Sized>(
    pool: &Mutex<Mempool>,
    store: &S,
    tree: &StateTree,
    gov: &GovState,
    template: BlockTemplate<'_>,
    params: &ConsensusParams,
    limit: usize,
) -> Result<BuiltBlock, StoreError> {
    let candidates = lock(pool).take_for_block(limit.min(params.txs_per_block_max as usize));
    let checked: BTreeSet<TxId> = candidates.iter().map(|tx| tx.id()).collect();
    let built = build_block(store, tree, gov, template, params, candidates, &|id| checked.contains(id))?;
    lock(pool).on_build_rejections(&built.rejected);
    Ok(built)
}

/// Execute `block` on `store`. Outer error: the store failed; inner: the block is invalid (why). Signature
/// checks are skipped for transactions the pool verified, the others are checked as one batch (keys from
/// `keys`), and the pool remembers them once the block has applied.
#[allow(clippy::too_many_arguments)]
pub fn execute_with_pool<S: AccountStore + ?Sized>(
    pool: &Mutex<Mempool>,
    store: &S,
    tree: &StateTree,
    gov: &GovState,
    block: &Block,
    parent: &Parent<'_>,
    params: &ConsensusParams,
    keys: &dyn ledger_core::crypto::KeyCache,
) -> Result<Result<StateChanges, String>, StoreError> {
    // Asked in one go, so the lock (which admission needs) is not held while the block executes.
    let unchecked: Vec<&SignedTransaction> = {
        let mempool = lock(pool);
        block.txs.iter().filter(|tx| !mempool.known_good(&tx.id())).collect()
    };
    // Those are checked as one batch; one that fails is left to the block's execution, which checks it
    // again alone and refuses the block naming it (same verdict: see ledger_core::zip215).
    let verdicts = SignedTransaction::check_keys_and_signatures(&unchecked, keys);
    let failed: BTreeSet<TxId> =
        unchecked.iter().zip(&verdicts).filter(|(_, v)| v.is_err()).map(|(tx, _)| tx.id()).collect();
    match apply_block(store, tree, gov, block, parent, params, &|id| !failed.contains(id)) {
        Ok(c) => {
            // Every transaction of an executed block had its keys and signature checked.
            lock(pool).note_checked(unchecked.iter().map(|tx| tx.id()));
            Ok(Ok(c))
        }
        Err(ApplyBlockError::Store(e)) => Err(e),
        Err(ApplyBlockError::Invalid(e)) => Ok(Err(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_core::crypto::NoKeyCache;
    use ledger_core::{Account, Hash, Keypair, MemStore, Signature, Transaction, Validator};

    const CHAIN: &str = "admission-test";

    fn transfer(from: &Keypair, to: &Keypair, nonce: u64) -> SignedTransaction {
        Transaction {
            chain_id: CHAIN.into(),
            sender: from.public(),
            recipient: to.public(),
            amount: 1,
            fee: ConsensusParams::default().min_fee,
            nonce,
            expiry_height: 1_000,
            memo: String::new(),
        }
        .sign(from)
    }

    /// The node prepares gossiped batches on the swarm task and finishes them (signatures, admission) on the
    /// verification thread, so a sender's next nonce can be prepared while the batch holding the nonce
    /// before it is still being verified. Under load a gap is refused to peers; here it is not a gap yet:
    /// it must be judged again at admission, after the batch before it, and be admitted.
    #[test]
    fn a_nonce_prepared_while_the_one_before_is_being_verified_is_admitted_after_it() {
        let params = ConsensusParams::default();
        let alice = Keypair::from_seed(&[1; 32]);
        let bob = Keypair::from_seed(&[2; 32]);
        let mut store = MemStore::new();
        store.set_account(alice.public(), Account { balance: 1_000_000, nonce: 0 });
        // Always "under load": gapped transactions are refused.
        let limits = crate::mempool::MempoolLimits { gapped_below_fill_percent: 0, ..Default::default() };
        let pool = Mutex::new(Mempool::new(CHAIN, params, limits));
        let gate = TxGate::default();
        let check = |txs: &[&SignedTransaction]| {
            SignedTransaction::check_keys_and_signatures(txs, &ledger_core::crypto::NoKeyCache)
        };
        let spend = &mut |_: Resource, _: u64| true;
        let first = vec![transfer(&alice, &bob, 0)];
        let second = vec![transfer(&alice, &bob, 1)];
        let a = gate.prepare_batch(&first, &pool, &store, Height(0), spend).expect("first prepared");
        let b = gate.prepare_batch(&second, &pool, &store, Height(0), spend).expect("second prepared, not refused");
        assert_eq!(gate.finish_batch(&a, &first, &pool, &store, Height(0), &check), Verdict::Accept);
        assert_eq!(gate.finish_batch(&b, &second, &pool, &store, Height(0), &check), Verdict::Accept);
        assert_eq!(pool.lock().expect("pool").len(), 2);

        // Control: a real gap (nonce 3 with 2 never sent) is still refused under load, at admission.
        let gapped = vec![transfer(&alice, &bob, 3)];
        let g = gate.prepare_batch(&gapped, &pool, &store, Height(0), spend).expect("prepared");
        assert_eq!(
            gate.finish_batch(&g, &gapped, &pool, &store, Height(0), &check),
            Verdict::Ignore(DropReason::NotAdmissible)
        );
        assert_eq!(pool.lock().expect("pool").len(), 2);
    }

    /// A node past its disk floor refuses relayed transactions before checking any signature, without
    /// blaming the peer, and takes them again once the refusal is lifted.
    #[test]
    fn a_disk_refusing_node_ignores_gossiped_batches_before_their_signatures() {
        let alice = Keypair::from_seed(&[1; 32]);
        let bob = Keypair::from_seed(&[2; 32]);
        let mut store = MemStore::new();
        store.set_account(alice.public(), Account { balance: 1_000_000, nonce: 0 });
        let pool = Mutex::new(Mempool::new(CHAIN, ConsensusParams::default(), Default::default()));
        pool.lock().expect("pool").set_disk_refusal(Some(crate::storage::disk::DiskRefusal {
            code: crate::storage::disk::DISK_FULL,
            message: "full".into(),
        }));
        let gate = TxGate::default();
        let mut spent = 0;
        let batch = vec![transfer(&alice, &bob, 0)];
        let got = gate.prepare_batch(&batch, &pool, &store, Height(0), &mut |_, n| {
            spent += n;
            true
        });
        assert_eq!(got.err(), Some(Verdict::Ignore(DropReason::NotAdmissible)));
        assert_eq!(spent, 0, "no signature budget spent");
        pool.lock().expect("pool").set_disk_refusal(None);
        assert!(gate.prepare_batch(&batch, &pool, &store, Height(0), &mut |_, _| true).is_ok());
    }

    /// A block of 1,000 good transfers and one whose signature is another message's, built by a proposer
    /// that skipped the checks; a node executing it with none of them in its pool checks all 1,001 as one
    /// batch, which fails, then finds the bad one alone: the block is refused, naming that transaction.
    #[test]
    fn a_block_with_one_bad_signature_among_a_thousand_is_refused_naming_it() {
        let params = ConsensusParams::default();
        let keys: Vec<Keypair> =
            (0..1001u32).map(|i| Keypair::from_seed(&blake3::hash(&i.to_le_bytes()).into())).collect();
        let mut store = MemStore::new();
        for k in &keys {
            store.set_account(k.public(), Account { balance: 1_000_000, nonce: 0 });
        }
        let proposer = Keypair::from_seed(&[7; 32]);
        let validators = ledger_core::ValidatorSet::new(vec![Validator {
            public_key: proposer.public(),
            power: 1,
            moniker: "p".into(),
        }])
        .expect("set");
        let gov = ledger_core::governance::GovState::genesis(validators);
        let good: Vec<SignedTransaction> =
            (0..1001).map(|i| transfer(&keys[i], &keys[(i + 1) % keys.len()], 0)).collect();
        let mut txs = good.clone();
        let bad = 613;
        let other = transfer(&keys[bad], &keys[0], 1);
        txs[bad] = SignedTransaction::new(txs[bad].tx().clone(), Signature(other.signature().0));
        let bad_id = txs[bad].id();
        let parent = Parent { height: Height(0), hash: Hash([0; 32]), timestamp_ms: 1_000, chain_id: CHAIN };
        let template = || BlockTemplate {
            parent: parent.clone(),
            proposer: proposer.public(),
            timestamp_ms: 2_000,
            last_commit: None,
            approvals: Vec::new(),
            evidence: Vec::new(),
        };
        let built = build_block(&store, store.tree(), &gov, template(), &params, txs, &|_| true).expect("built");
        assert_eq!(built.block.txs.len(), 1001, "the careless proposer took every transaction");

        let pool = Mutex::new(Mempool::new(CHAIN, params.clone(), Default::default()));
        let verdict = execute_with_pool(&pool, &store, store.tree(), &gov, &built.block, &parent, &params, &NoKeyCache)
            .expect("store");
        let why = verdict.expect_err("the block is refused");
        assert!(why.contains(&format!("transaction {bad}")), "names the transaction by its index: {why}");
        assert!(why.contains("signature"), "{why}");
        assert!(!pool.lock().expect("pool").known_good(&bad_id), "nothing of a refused block is remembered");
        // Control: the same 1,001 transfers with the good signature back make a block that executes.
        let fine = build_block(&store, store.tree(), &gov, template(), &params, good, &|_| true).expect("built");
        let verdict = execute_with_pool(&pool, &store, store.tree(), &gov, &fine.block, &parent, &params, &NoKeyCache)
            .expect("store");
        assert!(verdict.is_ok(), "{verdict:?}");
        assert!(pool.lock().expect("pool").known_good(&fine.block.txs[bad].id()), "its checks are remembered");
    }
}
