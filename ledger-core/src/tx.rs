//! Transactions: what a user signs, its canonical bytes and its id.

use std::io;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::Serialize;

use crate::crypto::{CryptoError, Keypair, PublicKey, Signature};
use crate::encoding::{self, DecodeError};
use crate::hash::{Domain, Hash};
use crate::params::{CHAIN_ID_BYTES_MAX, ConsensusParams};

/// A transaction id: the blake3 hash (domain `TxId`) of the signed transaction's canonical bytes.
pub type TxId = Hash;

/// A transfer of `amount` from `sender` to `recipient`, paying `fee` to the block's proposer.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Transaction {
    pub chain_id: String,
    pub sender: PublicKey,
    pub recipient: PublicKey,
    pub amount: u64,
    pub fee: u64,
    /// Must equal the sender's account nonce when applied; the account nonce then increases by one.
    pub nonce: u64,
    /// Last block height this transaction may be included in.
    pub expiry_height: u64,
    /// Free text, at most `memo_bytes_max` bytes; empty means no memo.
    pub memo: String,
}

impl Transaction {
    /// Sign with `key`, which must be the sender's.
    pub fn sign(self, key: &Keypair) -> SignedTransaction {
        let signature = key.sign(Domain::TxSignature, &self.chain_id, &encoding::encode(&self));
        SignedTransaction::new(self, signature)
    }
}

/// A transaction with its signature, and its id computed once when built or decoded.
///
/// Shared, not copied: a clone is a reference count (the mempool, a block under construction and a
/// proposal hold the same transaction), and the transaction's canonical bytes are encoded once, when it is
/// built or decoded, for its id, its signing message and every later encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedTransaction {
    inner: std::sync::Arc<Inner>,
}

#[derive(Debug, PartialEq, Eq)]
struct Inner {
    tx: Transaction,
    signature: Signature,
    id: TxId,
    /// `encoding::encode(&tx)`: what is signed (inside the signing message) and hashed into the id.
    encoded: Box<[u8]>,
}

/// Why a transaction is refused, by the mempool or by the state transition. One variant per reason;
/// [`TxError::code`] gives the stable machine-readable code the API reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("malformed transaction: {0}")]
    Malformed(DecodeError),
    #[error("transaction is {len} bytes, limit is {max}")]
    TooLarge { len: usize, max: usize },
    #[error("signature does not verify")]
    BadSignature,
    #[error("wrong chain id: expected {expected:?}, got {got:?}")]
    WrongChain { expected: String, got: String },
    #[error("wrong nonce: expected {expected}, got {got}")]
    WrongNonce { expected: u64, got: u64 },
    #[error("insufficient funds: balance {balance}, needed {needed}")]
    InsufficientFunds { balance: u64, needed: u128 },
    #[error("transaction expired at height {expiry_height}, block height is {height}")]
    Expired { expiry_height: u64, height: u64 },
    #[error("fee {got} is below the minimum {min}")]
    FeeTooLow { min: u64, got: u64 },
    #[error("amount must be greater than zero")]
    ZeroAmount,
    #[error("arithmetic overflow applying the transaction")]
    Overflow,
    #[error("{role} key is not valid: {error}")]
    BadKey { role: &'static str, error: CryptoError },
    #[error("memo is {len} bytes, limit is {max}")]
    MemoTooLong { len: usize, max: usize },
}

impl TxError {
    /// Stable machine-readable code, relied on by API clients.
    pub fn code(&self) -> &'static str {
        match self {
            TxError::Malformed(_) => "malformed",
            TxError::TooLarge { .. } => "too_large",
            TxError::BadSignature => "bad_signature",
            TxError::WrongChain { .. } => "wrong_chain",
            TxError::WrongNonce { expected, got } if got < expected => "nonce_too_low",
            TxError::WrongNonce { .. } => "nonce_gap",
            TxError::InsufficientFunds { .. } => "insufficient_funds",
            TxError::Expired { .. } => "expired",
            TxError::FeeTooLow { .. } => "fee_too_low",
            TxError::ZeroAmount => "zero_amount",
            TxError::Overflow => "overflow",
            TxError::BadKey { error: CryptoError::WeakKey, .. } => "weak_key",
            TxError::BadKey { .. } => "bad_key",
            TxError::MemoTooLong { .. } => "memo_too_long",
        }
    }
}

/// Transactions whose keys passed (their index in a batch) with the sender's decompressed key.
type Keyed = Vec<(usize, crate::crypto::CheckedKey)>;

impl SignedTransaction {
    pub fn new(tx: Transaction, signature: Signature) -> SignedTransaction {
        // Fixed fields (two keys, four u64) and two length-prefixed strings: the exact size.
        let size = 2 * 32 + 4 * 8 + 2 * 4 + tx.chain_id.len() + tx.memo.len();
        let encoded = encoding::encode_sized(&tx, size).into_boxed_slice();
        let id = Self::compute_id(&encoded, &signature);
        SignedTransaction { inner: std::sync::Arc::new(Inner { tx, signature, id, encoded }) }
    }

    fn compute_id(encoded_tx: &[u8], signature: &Signature) -> TxId {
        let mut h = Hash::hasher(Domain::TxId);
        h.update(encoded_tx);
        h.update(&signature.0);
        Hash::from_hasher(&h)
    }

    /// Decode from canonical bytes, refusing more than `tx_bytes_max` bytes before parsing.
    pub fn decode(bytes: &[u8], tx_bytes_max: usize) -> Result<SignedTransaction, TxError> {
        if bytes.len() > tx_bytes_max {
            return Err(TxError::TooLarge { len: bytes.len(), max: tx_bytes_max });
        }
        encoding::decode(bytes, tx_bytes_max).map_err(TxError::Malformed)
    }

    pub fn encode(&self) -> Vec<u8> {
        encoding::encode(self)
    }

    pub fn tx(&self) -> &Transaction {
        &self.inner.tx
    }

    pub fn signature(&self) -> &Signature {
        &self.inner.signature
    }

    pub fn id(&self) -> TxId {
        self.inner.id
    }

    /// The unsigned transaction's canonical bytes (what the signature covers, inside the signing message).
    pub fn encoded_tx(&self) -> &[u8] {
        &self.inner.encoded
    }

    /// Every check that needs no account state: size, chain id, amount, fee, memo, both keys (valid points,
    /// not weak) and the signature. The key and signature checks are the expensive part (~35 µs); callers
    /// that remember which ids passed this call [`SignedTransaction::check_without_signature`] instead.
    pub fn check_stateless(&self, chain_id: &str, params: &ConsensusParams) -> Result<(), TxError> {
        self.check_without_signature(chain_id, params)?;
        self.check_keys_and_signature()
    }

    /// The expensive half of [`SignedTransaction::check_stateless`]: both keys are valid, non-weak points
    /// and the sender's signature verifies. What a mempool remembers having checked, by id.
    pub fn check_keys_and_signature(&self) -> Result<(), TxError> {
        self.check_keys_and_signature_with(&crate::crypto::NoKeyCache)
    }

    /// [`SignedTransaction::check_keys_and_signature`] taking decompressed keys from `keys`.
    pub fn check_keys_and_signature_with(&self, keys: &dyn crate::crypto::KeyCache) -> Result<(), TxError> {
        keys.verifying_key(&self.tx().recipient).map_err(|error| TxError::BadKey { role: "recipient", error })?;
        let vk = keys.verifying_key(&self.tx().sender).map_err(|error| TxError::BadKey { role: "sender", error })?;
        self.verify_with_key(&vk)
    }

    /// [`SignedTransaction::check_keys_and_signature_with`] for each of `txs`, the signatures verified as
    /// one batch (same verdict per transaction as alone; a failed batch is checked one by one).
    pub fn check_keys_and_signatures<T: std::borrow::Borrow<SignedTransaction>>(
        txs: &[T],
        keys: &dyn crate::crypto::KeyCache,
    ) -> Vec<Result<(), TxError>> {
        let (mut out, keyed) = Self::keys_of(txs, keys);
        let items = Self::batch_items(txs, &keyed);
        for ((i, _), verdict) in keyed.iter().zip(crate::crypto::verify_batch(&items)) {
            if verdict.is_err() {
                out[*i] = Err(TxError::BadSignature);
            }
        }
        out
    }

    /// Whether [`SignedTransaction::check_keys_and_signatures`] passes every one of `txs`, in one batch
    /// and nothing more: when it is false, nothing says which transaction failed.
    pub fn keys_and_signatures_all_valid<T: std::borrow::Borrow<SignedTransaction>>(
        txs: &[T],
        keys: &dyn crate::crypto::KeyCache,
    ) -> bool {
        let (out, keyed) = Self::keys_of(txs, keys);
        out.iter().all(Result::is_ok) && crate::crypto::verify_batch_all(&Self::batch_items(txs, &keyed))
    }

    /// Both keys of each of `txs` checked: a verdict each, and the sender's key of those that passed (with
    /// their index).
    fn keys_of<T: std::borrow::Borrow<SignedTransaction>>(
        txs: &[T],
        keys: &dyn crate::crypto::KeyCache,
    ) -> (Vec<Result<(), TxError>>, Keyed) {
        let mut out: Vec<Result<(), TxError>> = Vec::with_capacity(txs.len());
        let mut keyed = Vec::with_capacity(txs.len());
        for (i, tx) in txs.iter().enumerate() {
            let tx = tx.borrow().tx();
            let keys_ok = keys
                .verifying_key(&tx.recipient)
                .map_err(|error| TxError::BadKey { role: "recipient", error })
                .and_then(|_| {
                    keys.verifying_key(&tx.sender).map_err(|error| TxError::BadKey { role: "sender", error })
                });
            match keys_ok {
                Ok(vk) => {
                    keyed.push((i, vk));
                    out.push(Ok(()));
                }
                Err(e) => out.push(Err(e)),
            }
        }
        (out, keyed)
    }

    fn batch_items<'a, T: std::borrow::Borrow<SignedTransaction>>(
        txs: &'a [T],
        keyed: &'a [(usize, crate::crypto::CheckedKey)],
    ) -> Vec<crate::crypto::BatchItem<'a>> {
        keyed
            .iter()
            .map(|(i, vk)| {
                let tx = txs[*i].borrow();
                crate::crypto::BatchItem {
                    key: vk,
                    domain: Domain::TxSignature,
                    chain_id: &tx.tx().chain_id,
                    payload: tx.encoded_tx(),
                    signature: tx.signature(),
                }
            })
            .collect()
    }

    /// [`SignedTransaction::check_stateless`] minus the key and signature checks: only for a transaction
    /// already known to have passed them.
    pub fn check_without_signature(&self, chain_id: &str, params: &ConsensusParams) -> Result<(), TxError> {
        let tx = self.tx();
        if tx.chain_id != chain_id {
            return Err(TxError::WrongChain {
                expected: chain_id.to_string(),
                got: truncate(&tx.chain_id, CHAIN_ID_BYTES_MAX),
            });
        }
        let len = self.encoded_len();
        if len > params.tx_bytes_max as usize {
            return Err(TxError::TooLarge { len, max: params.tx_bytes_max as usize });
        }
        if tx.memo.len() > params.memo_bytes_max as usize {
            return Err(TxError::MemoTooLong { len: tx.memo.len(), max: params.memo_bytes_max as usize });
        }
        if tx.amount == 0 {
            return Err(TxError::ZeroAmount);
        }
        if tx.fee < params.min_fee {
            return Err(TxError::FeeTooLow { min: params.min_fee, got: tx.fee });
        }
        if tx.amount.checked_add(tx.fee).is_none() {
            return Err(TxError::Overflow);
        }
        Ok(())
    }

    /// Verify the sender's signature by the chain's rule; a weak or invalid sender key fails here.
    pub fn verify_signature(&self) -> Result<(), TxError> {
        let vk = self.tx().sender.checked_key().map_err(|error| TxError::BadKey { role: "sender", error })?;
        self.verify_with_key(&vk)
    }

    fn verify_with_key(&self, vk: &crate::crypto::CheckedKey) -> Result<(), TxError> {
        crate::crypto::verify_checked(vk, Domain::TxSignature, &self.tx().chain_id, self.encoded_tx(), self.signature())
            .map_err(|_| TxError::BadSignature)
    }

    /// Size of the canonical encoding: the transaction's bytes (kept) and the signature.
    pub fn encoded_len(&self) -> usize {
        self.inner.encoded.len() + 64
    }

    /// Sum of [`SignedTransaction::encoded_len`] over `txs`: nearly all of a block's or a batch's encoding, so
    /// the size to start its buffer with.
    pub fn total_encoded_len(txs: &[SignedTransaction]) -> usize {
        txs.iter().map(SignedTransaction::encoded_len).sum()
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

impl BorshSerialize for SignedTransaction {
    fn serialize<W: io::Write>(&self, writer: &mut W) -> io::Result<()> {
        writer.write_all(&self.inner.encoded)?;
        BorshSerialize::serialize(&self.inner.signature, writer)
    }
}

impl BorshDeserialize for SignedTransaction {
    fn deserialize_reader<R: io::Read>(reader: &mut R) -> io::Result<Self> {
        let tx = Transaction::deserialize_reader(reader)?;
        let signature = Signature::deserialize_reader(reader)?;
        Ok(SignedTransaction::new(tx, signature))
    }
}

/// JSON view: the id, the transaction's fields and the signature.
impl Serialize for SignedTransaction {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("SignedTransaction", 3)?;
        st.serialize_field("id", &self.inner.id)?;
        st.serialize_field("tx", &self.inner.tx)?;
        st.serialize_field("signature", &self.inner.signature)?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_len_matches_encoding() {
        let k = Keypair::from_seed(&[3; 32]);
        let tx = Transaction {
            chain_id: "test-chain".into(),
            sender: k.public(),
            recipient: Keypair::from_seed(&[4; 32]).public(),
            amount: 5,
            fee: 1,
            nonce: 0,
            expiry_height: 100,
            memo: "hello".into(),
        }
        .sign(&k);
        assert_eq!(tx.encoded_len(), tx.encode().len());
    }
}
