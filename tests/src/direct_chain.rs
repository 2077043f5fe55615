//! A one-validator chain committed straight into a `Storage`, without consensus or the network: real
//! blocks (built by `build_block`), certificates and commits. For the storage benchmarks
//! (`history_bench`, `retention_bench`).

use anyhow::Result;
use ledger_core::state::{BlockTemplate, build_block};
use ledger_core::{
    Address, Block, CommitCertificate, CommitSig, Genesis, Hash, Keypair, Parent, Round, SignedTransaction,
    Transaction, Vote, VoteKind,
};
use node::storage::Storage;

/// The chain's tip as the next block needs it.
pub struct DirectChain {
    pub genesis: Genesis,
    validator: Keypair,
    parent: (Hash, u64, Option<CommitCertificate>),
}

impl DirectChain {
    /// `validator` must be the genesis' only validator.
    pub fn new(genesis: Genesis, validator: Keypair) -> DirectChain {
        let parent = (genesis.hash(), genesis.genesis_time_ms, None);
        DirectChain { genesis, validator, parent }
    }

    /// A signed transfer of 1 on this chain, that never expires.
    pub fn transfer(&self, from: &Keypair, to: Address, fee: u64, nonce: u64) -> SignedTransaction {
        Transaction {
            chain_id: self.genesis.chain_id.clone(),
            sender: from.public(),
            recipient: to,
            amount: 1,
            fee,
            nonce,
            expiry_height: u64::MAX,
            memo: String::new(),
        }
        .sign(from)
    }

    /// The next block of `txs` on `store`'s tip, built (signatures treated as verified) but not committed.
    pub fn build_next(&self, store: &Storage, txs: Vec<SignedTransaction>) -> Result<Block> {
        Ok(self.build(store, txs, true)?.block)
    }

    fn build(
        &self,
        store: &Storage,
        txs: Vec<SignedTransaction>,
        signatures_checked: bool,
    ) -> Result<ledger_core::state::BuiltBlock> {
        let tip = store.latest_height()?;
        let template = BlockTemplate {
            parent: Parent {
                height: tip,
                hash: self.parent.0,
                timestamp_ms: self.parent.1,
                chain_id: &self.genesis.chain_id,
            },
            proposer: self.validator.public(),
            timestamp_ms: self.parent.1 + 1,
            last_commit: self.parent.2.clone(),
            approvals: Vec::new(),
            evidence: Vec::new(),
        };
        let tree = store.tree()?;
        let gov = store.gov_state()?;
        let built = build_block(store, &tree, &gov, template, &self.genesis.params, txs, &|_| signatures_checked)
            .map_err(|e| anyhow::anyhow!("build block {}: {e:?}", tip.next()))?;
        anyhow::ensure!(built.rejected.is_empty(), "rejected at {}: {:?}", tip.next(), built.rejected);
        Ok(built)
    }

    /// Build the next block of `txs` on `store`'s tip, certify it and commit it. `signatures_checked`: treat
    /// every signature as verified already (as the mempool would have), so that only storage is measured.
    pub fn commit_next(
        &mut self,
        store: &Storage,
        txs: Vec<SignedTransaction>,
        signatures_checked: bool,
    ) -> Result<Block> {
        let built = self.build(store, txs, signatures_checked)?;
        let block = built.block;
        let vote = Vote {
            kind: VoteKind::Precommit,
            height: block.height(),
            round: Round(0),
            block_hash: Some(block.hash()),
            validator: self.validator.public(),
        }
        .sign(&self.genesis.chain_id, &self.validator);
        let cert = CommitCertificate {
            height: block.height(),
            round: Round(0),
            block_hash: block.hash(),
            signatures: vec![CommitSig { validator_index: 0, signature: vote.signature }],
        };
        store.commit_block(&block, &cert, &built.changes)?;
        self.parent = (block.hash(), block.header.timestamp_ms, Some(cert));
        Ok(block)
    }
}
