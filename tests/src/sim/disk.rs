//! A simulated disk with a durable part and pending writes, to show what the flush order buys.
//!
//! Writes land in `pending`; [`Disk::flush`] makes them durable in order. A process crash (kill -9) keeps
//! pending writes (the page cache survives); a power loss drops them. The honest shell flushes as the
//! action-ordering contract says (signer state before the broadcast it guards, a decided block before
//! `NewHeight`), so a power loss can only lose writes whose effects nobody has seen yet.

use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use ledger_core::consensus::{SignedMessage, SignerState};
use ledger_core::{Block, CommitCertificate, Hash, MemStore};

use super::config::{CrashKind, SIGNER_HISTORY_MAX, SignerLoss};

/// What survives a crash: the persisted signer state, the committed chain with the state after its last
/// block, and the blocks this node built (so it can re-send a proposal it re-broadcasts after restart).
#[derive(Clone, Debug, Default)]
pub struct DiskImage {
    pub signer: SignerState,
    /// Earlier durable signer states, oldest first, at most [`SIGNER_HISTORY_MAX`]: what a rewound
    /// signer state ([`SignerLoss::Rewound`]) comes back as.
    pub signer_history: VecDeque<SignerState>,
    pub chain: Vec<(Rc<Block>, CommitCertificate)>,
    pub state: MemStore,
    pub built: BTreeMap<Hash, Rc<Block>>,
    /// Consensus messages of the current height, sent and received (CometBFT's WAL): replayed after a
    /// restart so the core regains the votes behind its persisted lock. Not needed for safety.
    pub wal: Vec<SignedMessage>,
}

#[derive(Clone, Debug)]
pub enum Write {
    Signer(SignerState),
    Commit { block: Rc<Block>, cert: CommitCertificate, state: MemStore },
    Built(Rc<Block>),
    Wal(SignedMessage),
}

#[derive(Clone, Debug, Default)]
pub struct Disk {
    pub durable: DiskImage,
    pending: Vec<Write>,
}

/// Built blocks kept on disk, most recent heights only.
const BUILT_BLOCKS_MAX: usize = 16;
/// WAL entries kept (beyond this the WAL stops growing; liveness after a restart may then need peers).
const WAL_MESSAGES_MAX: usize = 8_192;

impl Disk {
    pub fn new(state: MemStore) -> Disk {
        Disk { durable: DiskImage { state, ..DiskImage::default() }, pending: Vec::new() }
    }

    pub fn write(&mut self, w: Write) {
        self.pending.push(w);
    }

    pub fn flush(&mut self) {
        for w in std::mem::take(&mut self.pending) {
            let d = &mut self.durable;
            match w {
                Write::Signer(s) => {
                    if s != d.signer {
                        let old = std::mem::replace(&mut d.signer, s);
                        if d.signer_history.len() == SIGNER_HISTORY_MAX {
                            d.signer_history.pop_front();
                        }
                        d.signer_history.push_back(old);
                    }
                }
                Write::Commit { block, cert, state } => {
                    d.chain.push((block, cert));
                    d.state = state;
                    let height = d.chain.len() as u64;
                    d.built.retain(|_, b| b.height().0 > height);
                    d.wal.retain(|m| m.position().0.0 > height);
                }
                Write::Wal(m) => {
                    if d.wal.len() < WAL_MESSAGES_MAX {
                        d.wal.push(m);
                    }
                }
                Write::Built(b) => {
                    if d.built.len() < BUILT_BLOCKS_MAX {
                        d.built.insert(b.hash(), b);
                    }
                }
            }
        }
    }

    /// Replace the durable signer state as `loss` says (the node is down). Returns the loss that actually
    /// changed the state (a rewind with no older state left is a loss), or `None` when nothing changed.
    pub fn damage_signer(&mut self, loss: SignerLoss) -> Option<SignerLoss> {
        let d = &mut self.durable;
        let (state, applied) = match loss {
            SignerLoss::Lost => (SignerState::default(), SignerLoss::Lost),
            SignerLoss::Rewound { back } => {
                let len = d.signer_history.len();
                match (len > 0).then(|| len.saturating_sub(back.max(1))) {
                    Some(k) => {
                        let state = d.signer_history[k].clone();
                        d.signer_history.truncate(k);
                        (state, loss)
                    }
                    None => (SignerState::default(), SignerLoss::Lost),
                }
            }
        };
        if state == d.signer {
            return None;
        }
        d.signer = state;
        // The node keeps no WAL: what this shell's WAL holds of the current height (this validator's own
        // messages among them) would hand the guard what the network must show it. It goes with the state.
        d.wal.clear();
        if applied == SignerLoss::Lost {
            d.signer_history.clear();
        }
        Some(applied)
    }

    /// Returns how many pending writes were lost.
    pub fn crash(&mut self, kind: CrashKind) -> usize {
        match kind {
            CrashKind::Process => {
                self.flush();
                0
            }
            CrashKind::Power => std::mem::take(&mut self.pending).len(),
        }
    }
}
