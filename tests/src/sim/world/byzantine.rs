//! The Byzantine behaviours of the simulated validators (see `Behaviour`): each runs a real core to stay in
//! step and tampers with what it sends. A Byzantine node signs with its first key (no planned change
//! touches a Byzantine validator).

use std::rc::Rc;

use ledger_core::state::{BlockTemplate, build_block};
use ledger_core::{Block, Hash, Height, Keypair, Round, SignedTransaction, Transaction, Vote};

use super::super::config::Behaviour;
use super::{FLOOD_PER_ROUND, Msg, World, gov_of, parent_of, random_hash};

impl World {
    /// Send `a` to half A and `b` to half B; with leaking, each also gets the other version.
    pub(super) fn send_split(&mut self, i: usize, a: Msg, b: Msg) {
        for j in 0..self.nodes.len() {
            if j == i {
                continue;
            }
            let (mine, other) = if self.half_b[j] { (&b, &a) } else { (&a, &b) };
            self.send(i, j, mine.clone());
            if self.cfg.leak_equivocations {
                self.send(i, j, other.clone());
            }
        }
    }

    pub(super) fn byzantine_send(&mut self, i: usize, behaviour: Behaviour, msg: Msg) {
        let key = self.nodes[i].keys[0].clone();
        let chain_id = self.genesis.chain_id.clone();
        match (behaviour, msg) {
            (Behaviour::Silent, _) => {}
            (b, Msg::Proposal(p, Some(block))) if b.equivocates_proposals() && p.proposal.proposer == key.public() => {
                let alt = self.alternative_block(i, &block);
                let (h, r) = (p.proposal.height.0, p.proposal.round.0);
                let p2 = ledger_core::Proposal { block_hash: alt.hash(), ..p.proposal.clone() }.sign(&chain_id, &key);
                self.coalition.insert((h, r), (block.hash(), alt.hash()));
                self.send_split(i, Msg::Proposal(p, Some(block)), Msg::Proposal(p2, Some(alt)));
            }
            (b, Msg::Vote(v)) if b.equivocates_votes() && v.vote.validator == key.public() => {
                let (h, r) = (v.vote.height.0, v.vote.round.0);
                let sign = |hash: Option<Hash>| Vote { block_hash: hash, ..v.vote.clone() }.sign(&chain_id, &key);
                let (a, b2) = match (b, self.coalition.get(&(h, r))) {
                    (Behaviour::ForkCoalition, Some((x, y))) => (sign(Some(*x)), sign(Some(*y))),
                    _ => {
                        let other = match v.vote.block_hash {
                            Some(_) => None,
                            None => Some(self.other_value(i, v.vote.round)),
                        };
                        (v.clone(), sign(other))
                    }
                };
                self.send_split(i, Msg::Vote(a), Msg::Vote(b2));
            }
            (Behaviour::InvalidVoter, Msg::Proposal(p, Some(block))) if p.proposal.proposer == key.public() => {
                let mut bad = (*block).clone();
                bad.header.state_root = random_hash(&mut self.byz_rng);
                let bad = Rc::new(bad);
                self.invalid.insert((p.proposal.height.0, p.proposal.round.0), bad.hash());
                let p2 = ledger_core::Proposal { block_hash: bad.hash(), ..p.proposal.clone() }.sign(&chain_id, &key);
                self.broadcast_plain(i, Msg::Proposal(p2, Some(bad)));
            }
            (Behaviour::InvalidVoter, Msg::Vote(v)) if v.vote.validator == key.public() => {
                let target = match self.invalid.get(&(v.vote.height.0, v.vote.round.0)) {
                    Some(h) => *h,
                    None => random_hash(&mut self.byz_rng),
                };
                let v2 = Vote { block_hash: Some(target), ..v.vote.clone() }.sign(&chain_id, &key);
                self.broadcast_plain(i, Msg::Vote(v2));
            }
            (_, msg) => self.broadcast_plain(i, msg),
        }
    }

    /// A different valid block for the same height: same parent, no transactions, a later timestamp.
    pub(super) fn alternative_block(&mut self, i: usize, block: &Block) -> Rc<Block> {
        let key = self.nodes[i].keys[0].public();
        let live = self.nodes[i].live.as_mut().expect("node is live");
        let parent = parent_of(&self.genesis, &live.chain);
        let template = BlockTemplate {
            parent,
            proposer: key,
            timestamp_ms: block.header.timestamp_ms + 1,
            last_commit: block.last_commit.clone(),
            approvals: Vec::new(),
            evidence: Vec::new(),
        };
        let gov = gov_of(&live.state);
        let built = build_block(&live.state, live.state.tree(), gov, template, &self.params, Vec::new(), &|_| true)
            .expect("the in-memory store cannot fail");
        let alt = Rc::new(built.block);
        live.candidates.insert_built(alt.clone(), built.changes);
        alt
    }

    /// Some block hash other than nil for a conflicting vote: a proposal seen at this round, else random.
    pub(super) fn other_value(&mut self, i: usize, round: Round) -> Hash {
        let seen = self.nodes[i]
            .live
            .as_ref()
            .and_then(|l| l.proposals.iter().find(|p| p.proposal.round == round).map(|p| p.proposal.block_hash));
        seen.unwrap_or_else(|| random_hash(&mut self.byz_rng))
    }

    /// Re-send a few remembered messages (any height, any signer) to random peers.
    pub(super) fn replay_old(&mut self, i: usize) {
        let n = self.nodes.len();
        for _ in 0..3 {
            let log = &self.nodes[i].log;
            if log.is_empty() {
                return;
            }
            let m = log[self.byz_rng.index(log.len())].clone();
            let to = (i + 1 + self.byz_rng.index(n - 1)) % n;
            self.send(i, to, m);
        }
    }

    /// Forged votes and proposals (valid messages of others with a broken signature), votes signed by a
    /// key outside the set, and replays of old messages, [`FLOOD_PER_ROUND`] per peer per gossip round.
    pub(super) fn flood(&mut self, i: usize) {
        let Some(live) = self.nodes[i].live.as_ref() else { return };
        let height = live.core.height();
        let outsider = Keypair::from_seed(&[0xF1; 32]);
        let n = self.nodes.len();
        let Some(set) = self.set_for(i, height) else { return };
        for to in (0..n).filter(|j| *j != i) {
            for k in 0..FLOOD_PER_ROUND {
                let round = Round(self.byz_rng.range(0, 3) as u32);
                let validator = set.validators()[self.byz_rng.index(set.len())].public_key;
                let vote = Vote {
                    kind: ledger_core::VoteKind::Prevote,
                    height,
                    round,
                    block_hash: Some(random_hash(&mut self.byz_rng)),
                    validator,
                };
                let msg = match k % 5 {
                    3 => Msg::Txs(Rc::new(vec![self.forged_tx(i, &outsider)])),
                    4 => Msg::Txs(Rc::new(vec![self.unfunded_or_replayed_tx(i, &outsider)])),
                    0 => {
                        let mut v = vote.sign(&self.genesis.chain_id, &outsider);
                        v.vote.validator = validator; // someone else's name on the outsider's signature
                        Msg::Vote(v)
                    }
                    1 => {
                        Msg::Vote(Vote { validator: outsider.public(), ..vote }.sign(&self.genesis.chain_id, &outsider))
                    }
                    _ => {
                        let proposer = set.proposer(height, round).public_key;
                        let p = ledger_core::Proposal {
                            height,
                            round,
                            pol_round: None,
                            block_hash: random_hash(&mut self.byz_rng),
                            proposer,
                        }
                        .sign(&self.genesis.chain_id, &outsider);
                        Msg::Proposal(p, None)
                    }
                };
                self.send(i, to, msg);
            }
        }
    }

    /// A transfer from a funded account whose signature is broken (the id covers it: a new id each time).
    pub(super) fn forged_tx(&mut self, i: usize, outsider: &Keypair) -> SignedTransaction {
        let from = &self.accounts[self.byz_rng.index(self.accounts.len())];
        let height = self.nodes[i].live.as_ref().map_or(Height(1), |l| l.core.height());
        let tx = Transaction {
            chain_id: self.genesis.chain_id.clone(),
            sender: from.public(),
            recipient: outsider.public(),
            amount: self.byz_rng.range(1, 1_000),
            fee: 1,
            nonce: self.byz_rng.range(0, 8),
            expiry_height: height.0 + 100,
            memo: String::new(),
        };
        // The outsider's signature under the account holder's name.
        let forged = tx.clone().sign(outsider);
        SignedTransaction::new(tx, *forged.signature())
    }

    /// Half the time a well-signed transfer from an account that does not exist (fresh each time, so its
    /// signature would be checked if the cheap checks did not come first); else a committed transaction
    /// replayed.
    pub(super) fn unfunded_or_replayed_tx(&mut self, i: usize, outsider: &Keypair) -> SignedTransaction {
        let committed: Option<SignedTransaction> = self.nodes[i].live.as_ref().and_then(|l| {
            let with_txs: Vec<&Rc<Block>> = l.chain.iter().map(|(b, _)| b).filter(|b| !b.txs.is_empty()).collect();
            with_txs.last().map(|b| b.txs[0].clone())
        });
        if let Some(tx) = committed
            && self.byz_rng.chance(500)
        {
            return tx;
        }
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&self.byz_rng.next_u64().to_le_bytes());
        let nobody = Keypair::from_seed(&seed);
        let height = self.nodes[i].live.as_ref().map_or(Height(1), |l| l.core.height());
        Transaction {
            chain_id: self.genesis.chain_id.clone(),
            sender: nobody.public(),
            recipient: outsider.public(),
            amount: 1,
            fee: 1,
            nonce: 0,
            expiry_height: height.0 + 100,
            memo: String::new(),
        }
        .sign(&nobody)
    }

    /// Signed votes for rounds far ahead of the current one, some beyond the core's window.
    pub(super) fn skip_rounds(&mut self, i: usize) {
        let key = self.nodes[i].keys[0].clone();
        let Some(live) = self.nodes[i].live.as_ref() else { return };
        let (height, round) = (live.core.height(), live.core.round());
        for _ in 0..2 {
            let ahead = self.byz_rng.range(1, 40) as u32;
            let kind = if self.byz_rng.chance(500) {
                ledger_core::VoteKind::Prevote
            } else {
                ledger_core::VoteKind::Precommit
            };
            let block_hash = if self.byz_rng.chance(500) { None } else { Some(random_hash(&mut self.byz_rng)) };
            let v = Vote { kind, height, round: Round(round.0 + ahead), block_hash, validator: key.public() }
                .sign(&self.genesis.chain_id, &key);
            self.broadcast_plain(i, Msg::Vote(v));
        }
    }
}
