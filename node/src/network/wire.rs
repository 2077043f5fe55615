//! Wire messages: what nodes send each other, in canonical borsh behind a one-byte version.
//!
//! Every decoder takes its size limit before it looks at the bytes, refuses an unknown version, and uses
//! `ledger_core::encoding::decode`, which refuses trailing bytes and non-canonical input. Counts inside a
//! message are checked again after decoding against their own named limits.

use borsh::{BorshDeserialize, BorshSerialize};
use ledger_core::encoding::{self, DecodeError};
use ledger_core::{Block, CommitCertificate, Height, SignedProposal, SignedTransaction, SignedVote};

/// Version byte in front of every gossip message and sync frame. 2: consensus messages carry `resend`.
pub const WIRE_VERSION: u8 = 2;
/// Most transactions in one gossip batch.
pub const TX_BATCH_MAX: usize = 1024;
/// Most blocks in one sync response.
pub const SYNC_BLOCKS_MAX: u32 = 64;
/// Budget of encoded blocks a server puts in one sync response (one block always fits, whatever its size).
pub const SYNC_RESPONSE_BUDGET_BYTES: usize = 8 * 1024 * 1024;
/// Room for a proposal, a certificate and framing on top of a block.
pub const MESSAGE_OVERHEAD_BYTES: usize = 128 * 1024;
/// Largest sync request frame.
pub const SYNC_REQUEST_BYTES_MAX: usize = 64;

/// Largest gossip message: a proposal carrying a block of `block_bytes_max`. Must be equal on every node.
pub fn max_transmit_size(block_bytes_max: usize) -> usize {
    block_bytes_max + MESSAGE_OVERHEAD_BYTES
}

/// Largest sync response frame.
pub fn sync_response_bytes_max(block_bytes_max: usize) -> usize {
    SYNC_RESPONSE_BUDGET_BYTES + block_bytes_max + MESSAGE_OVERHEAD_BYTES
}

/// A proposal with the block it proposes.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ProposalMessage {
    pub proposal: SignedProposal,
    pub block: Block,
    /// See [`GossipMessage::Vote::resend`].
    pub resend: u32,
}

/// A gossip message. Transactions go on the `txs` topic; proposals and votes on `consensus`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum GossipMessage {
    TxBatch(Vec<SignedTransaction>),
    Proposal(Box<ProposalMessage>),
    Vote {
        vote: SignedVote,
        /// Unsigned and meaningless to consensus: 0 on the first send, a fresh number on every re-send.
        /// Gossip message ids are content hashes and gossipsub drops a copy of a message it has seen
        /// recently, so without this a re-sent vote (after a partition lost the first copy) would be
        /// dropped as a duplicate.
        resend: u32,
    },
}

/// Which topic a message belongs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopicKind {
    Txs,
    Consensus,
}

impl GossipMessage {
    pub fn topic(&self) -> TopicKind {
        match self {
            GossipMessage::TxBatch(_) => TopicKind::Txs,
            GossipMessage::Proposal(_) | GossipMessage::Vote { .. } => TopicKind::Consensus,
        }
    }
}

/// Why wire bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("empty message")]
    Empty,
    #[error("unknown wire version {0}")]
    UnknownVersion(u8),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("batch of {n} transactions, limit is {max}")]
    BatchTooLarge { n: usize, max: usize },
    #[error("empty transaction batch")]
    EmptyBatch,
    #[error("message of kind {got:?} arrived on topic {topic:?}")]
    WrongTopic { topic: TopicKind, got: TopicKind },
    #[error("sync response has {n} blocks, limit is {max}")]
    TooManyBlocks { n: usize, max: u32 },
    #[error("snapshot response has {n} entries, limit is {max}")]
    SnapshotTooLarge { n: usize, max: usize },
}

fn frame<T: BorshSerialize>(value: &T) -> Vec<u8> {
    frame_sized(value, 256)
}

/// [`frame`] into a buffer of `capacity` bytes to start with (see [`encoding::encode_sized`]).
fn frame_sized<T: BorshSerialize>(value: &T, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity.max(1));
    out.push(WIRE_VERSION);
    // Writing into a Vec cannot fail; the io::Result is an artefact of borsh's writer trait.
    let _ = value.serialize(&mut out);
    out
}

fn unframe<T: BorshSerialize + BorshDeserialize>(bytes: &[u8], max: usize) -> Result<T, WireError> {
    if bytes.len() > max {
        return Err(DecodeError::TooLarge { len: bytes.len(), max }.into());
    }
    let (&version, rest) = bytes.split_first().ok_or(WireError::Empty)?;
    if version != WIRE_VERSION {
        return Err(WireError::UnknownVersion(version));
    }
    Ok(encoding::decode(rest, max)?)
}

impl GossipMessage {
    pub fn encode(&self) -> Vec<u8> {
        // Transactions are nearly all of a batch or a proposal; the rest is a few hundred bytes (a proposal's
        // previous certificate, a few KiB, may grow the buffer once).
        let capacity = match self {
            GossipMessage::TxBatch(txs) => SignedTransaction::total_encoded_len(txs).saturating_add(16),
            GossipMessage::Proposal(p) => SignedTransaction::total_encoded_len(&p.block.txs).saturating_add(8192),
            GossipMessage::Vote { .. } => 256,
        };
        frame_sized(self, capacity)
    }

    /// Decode a message that arrived on `topic`, at most `max` bytes.
    pub fn decode(bytes: &[u8], topic: TopicKind, max: usize) -> Result<GossipMessage, WireError> {
        let msg: GossipMessage = unframe(bytes, max)?;
        if let GossipMessage::TxBatch(txs) = &msg {
            if txs.is_empty() {
                return Err(WireError::EmptyBatch);
            }
            if txs.len() > TX_BATCH_MAX {
                return Err(WireError::BatchTooLarge { n: txs.len(), max: TX_BATCH_MAX });
            }
        }
        if msg.topic() != topic {
            return Err(WireError::WrongTopic { topic, got: msg.topic() });
        }
        Ok(msg)
    }
}

/// Ask a peer for committed blocks from `from_height`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SyncRequest {
    pub from_height: Height,
    pub max_count: u32,
}

/// Committed blocks with the certificates that committed them, in height order. The receiver verifies
/// every certificate: a peer's word counts for nothing.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SyncResponse {
    pub blocks: Vec<(Block, CommitCertificate)>,
}

impl SyncRequest {
    pub fn encode(&self) -> Vec<u8> {
        frame(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<SyncRequest, WireError> {
        unframe(bytes, SYNC_REQUEST_BYTES_MAX)
    }
}

impl SyncResponse {
    pub fn encode(&self) -> Vec<u8> {
        frame(self)
    }

    pub fn decode(bytes: &[u8], max: usize) -> Result<SyncResponse, WireError> {
        let r: SyncResponse = unframe(bytes, max)?;
        if r.blocks.len() > SYNC_BLOCKS_MAX as usize {
            return Err(WireError::TooManyBlocks { n: r.blocks.len(), max: SYNC_BLOCKS_MAX });
        }
        Ok(r)
    }
}

/// A frame of a request-response protocol: encoded whole, decoded under a byte limit.
pub trait WireMessage: Sized + Send + 'static {
    fn to_frame(&self) -> Vec<u8>;
    fn from_frame(bytes: &[u8], max: usize) -> Result<Self, WireError>;
}

impl WireMessage for SyncRequest {
    fn to_frame(&self) -> Vec<u8> {
        self.encode()
    }
    fn from_frame(bytes: &[u8], max: usize) -> Result<Self, WireError> {
        unframe(bytes, max.min(SYNC_REQUEST_BYTES_MAX))
    }
}

impl WireMessage for SyncResponse {
    fn to_frame(&self) -> Vec<u8> {
        self.encode()
    }
    fn from_frame(bytes: &[u8], max: usize) -> Result<Self, WireError> {
        SyncResponse::decode(bytes, max)
    }
}

/// Largest snapshot request frame.
pub const SNAPSHOT_REQUEST_BYTES_MAX: usize = 64;
/// Largest snapshot response frame (metadata: a governance state, every set change, a manifest).
pub const SNAPSHOT_RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Most snapshot heights one offer names.
pub const SNAPSHOT_OFFERS_MAX: usize = 16;

/// Ask a peer about its state snapshots (state sync).
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum SnapshotRequest {
    /// Which snapshot heights it holds.
    Offers,
    /// The block, certificate, governance state, set changes and manifest of one snapshot.
    Meta { height: Height },
    /// The accounts of one snapshot under a position of its tree (a part of a manifest): the first
    /// `depth` bits of `position`. Asked by position, not by index, so any holder answers for exactly the
    /// part the syncing node verified, whoever's manifest it came from.
    Chunk { height: Height, depth: u16, position: ledger_core::Hash },
}

/// A peer's answer. Nothing in it is trusted: the syncing node checks the metadata from its genesis file
/// and every chunk against the verified manifest.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum SnapshotResponse {
    Offers(Vec<Height>),
    Meta(Box<ledger_core::light::SnapshotMeta>),
    Chunk(Vec<(ledger_core::Address, ledger_core::Account)>),
    /// Not held (any more).
    Unavailable,
}

impl WireMessage for SnapshotRequest {
    fn to_frame(&self) -> Vec<u8> {
        frame(self)
    }
    fn from_frame(bytes: &[u8], max: usize) -> Result<Self, WireError> {
        unframe(bytes, max.min(SNAPSHOT_REQUEST_BYTES_MAX))
    }
}

impl WireMessage for SnapshotResponse {
    fn to_frame(&self) -> Vec<u8> {
        frame(self)
    }
    fn from_frame(bytes: &[u8], max: usize) -> Result<Self, WireError> {
        let r: SnapshotResponse = unframe(bytes, max.min(SNAPSHOT_RESPONSE_BYTES_MAX))?;
        match &r {
            SnapshotResponse::Offers(h) if h.len() > SNAPSHOT_OFFERS_MAX => {
                Err(WireError::SnapshotTooLarge { n: h.len(), max: SNAPSHOT_OFFERS_MAX })
            }
            SnapshotResponse::Chunk(a) if a.len() > crate::storage::snapshot::CHUNK_ACCOUNTS_MAX as usize => {
                Err(WireError::SnapshotTooLarge {
                    n: a.len(),
                    max: crate::storage::snapshot::CHUNK_ACCOUNTS_MAX as usize,
                })
            }
            _ => Ok(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_core::{Keypair, Transaction};

    fn tx() -> SignedTransaction {
        let k = Keypair::from_seed(&[1; 32]);
        Transaction {
            chain_id: "c".into(),
            sender: k.public(),
            recipient: k.public(),
            amount: 1,
            fee: 1,
            nonce: 0,
            expiry_height: 9,
            memo: String::new(),
        }
        .sign(&k)
    }

    #[test]
    fn round_trip_and_hostile_bytes() {
        let m = GossipMessage::TxBatch(vec![tx(), tx()]);
        let bytes = m.encode();
        assert_eq!(GossipMessage::decode(&bytes, TopicKind::Txs, 1 << 20), Ok(m));
        assert!(matches!(
            GossipMessage::decode(&bytes, TopicKind::Consensus, 1 << 20),
            Err(WireError::WrongTopic { .. })
        ));
        assert_eq!(GossipMessage::decode(&[], TopicKind::Txs, 10), Err(WireError::Empty));
        assert_eq!(GossipMessage::decode(&[9, 0], TopicKind::Txs, 10), Err(WireError::UnknownVersion(9)));
        assert!(matches!(GossipMessage::decode(&bytes, TopicKind::Txs, 10), Err(WireError::Decode(_))));
        // Truncated, trailing byte, unknown enum tag, huge claimed length.
        assert!(GossipMessage::decode(&bytes[..bytes.len() - 1], TopicKind::Txs, 1 << 20).is_err());
        let mut long = bytes.clone();
        long.push(0);
        assert!(GossipMessage::decode(&long, TopicKind::Txs, 1 << 20).is_err());
        assert!(GossipMessage::decode(&[WIRE_VERSION, 7], TopicKind::Txs, 1 << 20).is_err());
        assert!(GossipMessage::decode(&[WIRE_VERSION, 0, 255, 255, 255, 255], TopicKind::Txs, 1 << 20).is_err());
        assert_eq!(
            GossipMessage::decode(&GossipMessage::TxBatch(vec![]).encode(), TopicKind::Txs, 1 << 20),
            Err(WireError::EmptyBatch)
        );
    }

    #[test]
    fn a_resent_vote_has_other_bytes_and_the_same_vote() {
        use ledger_core::{Hash, Round, Vote, VoteKind};
        let k = Keypair::from_seed(&[2; 32]);
        let vote = Vote {
            kind: VoteKind::Prevote,
            height: Height(3),
            round: Round(1),
            block_hash: Some(Hash::ZERO),
            validator: k.public(),
        }
        .sign("c", &k);
        let first = GossipMessage::Vote { vote: vote.clone(), resend: 0 };
        let again = GossipMessage::Vote { vote: vote.clone(), resend: 7 };
        assert_ne!(first.encode(), again.encode(), "a re-send must not look like a duplicate to gossipsub");
        for m in [first, again] {
            let bytes = m.encode();
            assert_eq!(GossipMessage::decode(&bytes, TopicKind::Consensus, 1 << 20), Ok(m));
            let mut long = bytes.clone();
            long.push(0);
            assert!(GossipMessage::decode(&long, TopicKind::Consensus, 1 << 20).is_err());
            assert!(GossipMessage::decode(&bytes[..bytes.len() - 1], TopicKind::Consensus, 1 << 20).is_err());
        }
    }

    #[test]
    fn sync_frames() {
        let r = SyncRequest { from_height: Height(5), max_count: 3 };
        assert_eq!(SyncRequest::decode(&r.encode()), Ok(r));
        assert!(SyncRequest::decode(&[WIRE_VERSION; 100]).is_err());
        let resp = SyncResponse { blocks: vec![] };
        assert_eq!(SyncResponse::decode(&resp.encode(), 100), Ok(resp));
    }
}
