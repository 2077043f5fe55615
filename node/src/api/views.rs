//! JSON shapes of the answers (field names are the contract in `docs/api.md`) and their construction from
//! ledger types. Hashes and ids are lowercase hex, addresses `ldg…` text, heights and amounts numbers.

use ledger_core::merkle::MerkleProof;
use ledger_core::{Block, CommitCertificate, SignedTransaction, ValidatorSet, encoding};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ErrorBody;

pub use ledger_core::time::rfc3339_ms;

/// `GET /health`: `ok` (200), or `unhealthy` (503) with every reason that applies.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HealthView {
    /// `ok` or `unhealthy`.
    pub status: String,
    /// Why the node is unhealthy (absent when `ok`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<HealthReason>,
}

/// One reason `/health` is unhealthy: a stable code and a human message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HealthReason {
    /// `no_peers`, `stalled`, `signer_halted` or `storage_unreadable`.
    pub code: String,
    pub message: String,
}

/// `GET /livez`: the process serves HTTP.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LivezView {
    /// Always `up`.
    pub status: String,
}

/// The double-sign guard of this node, in `GET /status`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SignerView {
    /// `full_node` (no key in the validator set), `watching` (just started: observes the network before it
    /// signs), `suspect` (saw its own key in a message it did not sign: waits), `active` (signs) or
    /// `halted` (another process signs with this key: this one signs nothing until restarted).
    pub mode: String,
    /// The guard signs nothing at or below this height.
    pub sign_floor: u64,
    /// Why the guard is in this mode, or null.
    pub detail: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatusView {
    pub chain_id: String,
    pub genesis_hash: String,
    pub node_id: String,
    /// Latest committed height (0 = genesis only).
    pub height: u64,
    /// Null at genesis.
    pub latest_block_hash: Option<String>,
    /// Header timestamp of the latest block, ms since the Unix epoch (the genesis time at height 0).
    pub latest_block_time: u64,
    /// The same instant in RFC 3339, UTC, with milliseconds: `2026-01-01T00:00:00.000Z`.
    pub latest_block_time_utc: String,
    pub catching_up: bool,
    pub n_peers: usize,
    /// This node's validator address, or null.
    pub validator: Option<String>,
    /// Why `validator` is null although a validator key is configured (e.g. the key is not in the
    /// validator set); null when `validator` is set or no key is configured.
    pub validator_reason: Option<String>,
    /// The double-sign guard.
    pub signer: SignerView,
    pub consensus_height: u64,
    pub consensus_round: u32,
    pub protocol_version: u32,
    /// While `catching_up`: how far it has to go; null otherwise.
    pub sync: Option<SyncView>,
}

/// A catch-up's progress.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SyncView {
    /// The height the peers have committed.
    pub target_height: u64,
    /// Blocks committed per second since the catch-up began (0 in its first second).
    pub blocks_per_second: f64,
    /// Seconds left at that rate; null until a rate is known.
    pub eta_seconds: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ValidatorView {
    pub index: usize,
    pub address: String,
    pub voting_power: u64,
    pub moniker: String,
    /// Blocks in `[counted_from_height, counted_to_height]` this validator proposed.
    pub blocks_proposed: u64,
    /// Heights in that range whose certificate, as carried on chain (in the next block's `last_commit`),
    /// has no signature of this validator. The same on every node for the same range. Heights at which it
    /// was not in the set do not count.
    pub blocks_missed: u64,
    /// Voting power as a share of the set's total, in basis points (2500 = 25 %), rounded down.
    pub share_bps: u64,
    /// `active`; `leaving` when a decided change removes it from the next heights' set; `jailed` when
    /// committed equivocation evidence removes it (it returns only through an approved add).
    pub status: String,
    /// Jailed for equivocation (it leaves the set at the next activation and returns only through governance).
    pub jailed: bool,
}

/// A member of an upcoming validator set.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SetMemberView {
    pub address: String,
    pub voting_power: u64,
    /// Share of the upcoming set's total power, in basis points, rounded down.
    pub share_bps: u64,
    /// Against the current set: `staying`, `power_change` (its power changes) or `joining` (an approved add,
    /// or the new key of a rotation).
    pub status: String,
    pub moniker: String,
}

/// A validator-set change waiting for approvals.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PendingChangeView {
    pub id: String,
    /// The change as signed (JSON form of `ValidatorChange`).
    #[schema(value_type = Object)]
    pub change: serde_json::Value,
    /// Canonical bytes of the change (hex): what `wallet validator approve` signs.
    pub change_hex: String,
    pub approvers: Vec<String>,
    /// Power of the approvers in the current set, and what a quorum needs (more than 2/3 of the total).
    pub approved_power: u64,
    pub total_power: u64,
    pub first_seen_height: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ValidatorsView {
    pub validators: Vec<ValidatorView>,
    pub total_voting_power: u64,
    /// Range of heights the counters cover: the most recent `window_blocks` heights whose certificate is
    /// on chain, up to `to_height` when given (0..0 before block 2 is committed).
    pub counted_from_height: u64,
    pub counted_to_height: u64,
    /// Most heights the counters cover.
    pub window_blocks: u64,
    /// The height `validators` is the set of (the one after the tip).
    pub height: u64,
    /// The set of the height after that: decided changes and jailings show here first (one decided in block
    /// `H` applies from `H + 2`).
    pub next_validators: Vec<SetMemberView>,
    pub next_validators_hash: String,
    pub pending_changes: Vec<PendingChangeView>,
    pub jailed: Vec<String>,
}

/// `GET /`: what this server is and its routes.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IndexView {
    pub name: String,
    pub version: String,
    /// The full description of every route.
    pub openapi: String,
    pub routes: Vec<RouteView>,
}

/// One route of `GET /`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RouteView {
    /// `GET` or `POST`.
    pub method: String,
    /// Path template, e.g. `/blocks/{height}`.
    pub path: String,
    pub description: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PeerView {
    pub peer_id: String,
    pub address: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PeersView {
    pub n_peers: usize,
    pub peers: Vec<PeerView>,
}

/// A transaction's decoded fields with its id.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TxView {
    pub id: String,
    pub chain_id: String,
    pub sender: String,
    pub recipient: String,
    pub amount: u64,
    pub fee: u64,
    pub nonce: u64,
    pub expiry_height: u64,
    pub memo: String,
    pub signature: String,
}

impl TxView {
    pub fn of(tx: &SignedTransaction) -> TxView {
        let t = tx.tx();
        TxView {
            id: tx.id().to_hex(),
            chain_id: t.chain_id.clone(),
            sender: t.sender.to_address_string(),
            recipient: t.recipient.to_address_string(),
            amount: t.amount,
            fee: t.fee,
            nonce: t.nonce,
            expiry_height: t.expiry_height,
            memo: t.memo.clone(),
            signature: t_sig(tx),
        }
    }
}

fn t_sig(tx: &SignedTransaction) -> String {
    tx.signature().to_hex()
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BlockView {
    pub height: u64,
    pub hash: String,
    /// The header's `timestamp_ms` in RFC 3339, UTC, with milliseconds.
    pub time_utc: String,
    /// Decoded header fields.
    #[schema(value_type = Object)]
    pub header: serde_json::Value,
    /// Canonical borsh bytes of the header: its blake3 (domain `BlockHeader`) is `hash`.
    pub header_hex: String,
    pub txs: Vec<TxView>,
    /// Addresses of the validators whose precommits are in the certificate that committed this block.
    pub signers: Vec<String>,
    /// The certificate of the previous block carried in this block (null at height 1).
    #[schema(value_type = Option<Object>)]
    pub last_commit: Option<serde_json::Value>,
    /// Validators' approvals of validator-set changes carried by this block, decoded.
    #[schema(value_type = Vec<Object>)]
    pub approvals: Vec<serde_json::Value>,
    /// The same, as canonical borsh bytes (hex): with `evidence_hex` they hash to the header's `ops_hash`.
    pub approvals_hex: Vec<String>,
    /// Equivocation evidence carried by this block (two signed votes each), decoded.
    #[schema(value_type = Vec<Object>)]
    pub evidence: Vec<serde_json::Value>,
    pub evidence_hex: Vec<String>,
}

/// A block in a list: header and counts, no transactions.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BlockSummaryView {
    pub height: u64,
    pub hash: String,
    /// The header's `timestamp_ms` in RFC 3339, UTC, with milliseconds.
    pub time_utc: String,
    #[schema(value_type = Object)]
    pub header: serde_json::Value,
    pub header_hex: String,
    pub tx_count: usize,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BlocksPage {
    /// Newest first.
    pub blocks: Vec<BlockSummaryView>,
    /// Pass as `before` for the next (older) page; null when there is none.
    pub next: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CommitSigView {
    pub validator_index: u16,
    /// The validator's address (null if the index is outside the set, which a stored certificate never is).
    pub validator: Option<String>,
    pub signature: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CommitView {
    pub height: u64,
    pub round: u32,
    pub block_hash: String,
    pub signatures: Vec<CommitSigView>,
    /// Canonical borsh bytes of the certificate.
    pub certificate_hex: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProofView {
    pub index: u32,
    pub leaf_count: u32,
    /// Sibling hashes from the leaf level upwards.
    pub siblings: Vec<String>,
}

impl ProofView {
    pub fn of(p: &MerkleProof) -> ProofView {
        ProofView {
            index: p.index,
            leaf_count: p.leaf_count,
            siblings: p.siblings.iter().map(|h| h.to_hex()).collect(),
        }
    }
}

/// Status of a transaction; which optional fields are present depends on `status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct TxStatusView {
    pub id: String,
    /// `pending`, `committed`, `rejected`, `evicted` or `unknown`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<ErrorBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proof: Option<ProofView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx: Option<TxView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_hex: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AccountView {
    pub address: String,
    pub balance: u64,
    pub nonce: u64,
    /// Nonce for the next transaction, counting this node's pending ones.
    pub next_nonce: u64,
}

/// An account's value under a state root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProvenAccountView {
    pub balance: u64,
    pub nonce: u64,
}

/// The leaf where a state proof's path ends (hex hashes).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StateProofLeafView {
    /// The leaf's key: blake3 of its address (keyed, domain "ledger v1 state key").
    pub key: String,
    /// Hash of the leaf's address, balance and nonce (domain "ledger v1 state value").
    pub value: String,
}

/// A state proof decoded for humans; `proof_hex` is what a verifier decodes.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StateProofView {
    /// Sibling hashes on the address's key path, from the root down.
    pub siblings: Vec<String>,
    /// The leaf at the end of the path; null when the path ends in an empty subtree.
    pub leaf: Option<StateProofLeafView>,
}

impl StateProofView {
    pub fn of(p: &ledger_core::statetree::StateProof) -> StateProofView {
        StateProofView {
            siblings: p.siblings.iter().map(|h| h.to_hex()).collect(),
            leaf: p.leaf.as_ref().map(|l| StateProofLeafView { key: l.key.to_hex(), value: l.value.to_hex() }),
        }
    }
}

/// `GET /accounts/{address}/proof`: an account (or its absence) in the latest committed state, with the
/// header whose `state_root` the proof is against.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AccountProofView {
    pub address: String,
    /// Whether the address holds an account (a non-zero balance or nonce); absent accounts are balance 0.
    pub present: bool,
    /// The account the proof shows; null when absent.
    pub account: Option<ProvenAccountView>,
    /// The height of the state: the latest committed height.
    pub height: u64,
    /// Hash of the header at `height`.
    pub block_hash: String,
    /// The header's `state_root` (hex), the root the proof is against.
    pub state_root: String,
    /// Canonical borsh bytes of the header at `height`; its certificate is `GET /blocks/{height}/commit`.
    pub header_hex: String,
    /// Canonical borsh bytes of the `StateProof`.
    pub proof_hex: String,
    /// The same proof, decoded.
    pub proof: StateProofView,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AccountTxView {
    pub height: u64,
    pub index: u32,
    /// `sent` or `received` (`sent` for a transfer to oneself).
    pub direction: String,
    pub tx: TxView,
}

/// Where the next page of an account's history starts.
#[derive(Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct AccountTxsCursor {
    pub before: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before_index: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AccountTxsPage {
    pub address: String,
    /// Newest first.
    pub txs: Vec<AccountTxView>,
    /// Heights this page covers, inclusive (`scanned_to` ≤ `scanned_from`; `scanned_to` is 1 when the history
    /// ends here); null at genesis.
    pub scanned_from_height: Option<u64>,
    pub scanned_to_height: Option<u64>,
    /// Pass as `before` and `before_index` for the next page; null when the history ends.
    pub next: Option<AccountTxsCursor>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MempoolView {
    pub count: usize,
    pub bytes: usize,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SubmitRequest {
    /// Hex of the signed transaction's canonical bytes.
    pub tx: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchRequest {
    /// Hex of each signed transaction's canonical bytes (at most 1000).
    #[schema(max_items = 1000)]
    pub txs: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchResponse {
    pub results: Vec<BatchResult>,
}

fn to_value<T: Serialize>(v: &T) -> serde_json::Value {
    // Serialising these ledger types cannot fail (no maps with non-string keys, no failing impls).
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

pub fn signers(cert: &CommitCertificate, set: &ValidatorSet) -> Vec<String> {
    cert.signatures
        .iter()
        .filter_map(|s| set.get(usize::from(s.validator_index)))
        .map(|v| v.public_key.to_address_string())
        .collect()
}

pub fn block_view(block: &Block, cert: Option<&CommitCertificate>, set: &ValidatorSet) -> BlockView {
    BlockView {
        height: block.height().0,
        hash: block.hash().to_hex(),
        time_utc: rfc3339_ms(block.header.timestamp_ms),
        header: to_value(&block.header),
        header_hex: hex::encode(encoding::encode(&block.header)),
        txs: block.txs.iter().map(TxView::of).collect(),
        signers: cert.map(|c| signers(c, set)).unwrap_or_default(),
        last_commit: block.last_commit.as_ref().map(to_value),
        approvals: block.approvals.iter().map(to_value).collect(),
        approvals_hex: block.approvals.iter().map(|a| hex::encode(encoding::encode(a))).collect(),
        evidence: block.evidence.iter().map(to_value).collect(),
        evidence_hex: block.evidence.iter().map(|e| hex::encode(encoding::encode(e))).collect(),
    }
}

/// A block in a list, from its header and transaction count ([`crate::storage::Storage::block_summary`]: the
/// transactions are not decoded to count them).
pub fn summary_of(header: &ledger_core::BlockHeader, tx_count: usize) -> BlockSummaryView {
    BlockSummaryView {
        height: header.height.0,
        hash: header.hash().to_hex(),
        time_utc: rfc3339_ms(header.timestamp_ms),
        header: to_value(header),
        header_hex: hex::encode(encoding::encode(header)),
        tx_count,
    }
}

pub fn commit_view(cert: &CommitCertificate, set: &ValidatorSet) -> CommitView {
    CommitView {
        height: cert.height.0,
        round: cert.round.0,
        block_hash: cert.block_hash.to_hex(),
        signatures: cert
            .signatures
            .iter()
            .map(|s| CommitSigView {
                validator_index: s.validator_index,
                validator: set.get(usize::from(s.validator_index)).map(|v| v.public_key.to_address_string()),
                signature: s.signature.to_hex(),
            })
            .collect(),
        certificate_hex: hex::encode(encoding::encode(cert)),
    }
}
