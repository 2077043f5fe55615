//! `signer_state.json`: the consensus signer state, bound to the validator key and the chain.
//!
//! The file is JSON so that an operator can read what it says (`last_signed`, `sign_floor`), but only its
//! `state` (hex of the canonical borsh of [`SignerState`]) is authoritative; the readable fields must
//! agree with it, and a checksum covers chain id, validator and state. The same document is the
//! interchange format of `ledgerd signer export` / `import`.

use std::path::{Path, PathBuf};

use ledger_core::consensus::{SignStep, SignedMessage, SignerState};
use ledger_core::{Height, PublicKey, encoding};
use serde::{Deserialize, Serialize};

use super::{SafetyError, atomic, checksum, read_bounded};

/// File name inside the data directory.
pub const FILE_NAME: &str = "signer_state.json";
/// The signer state of the key in `next_validator_key_file`, once a rotation made it sign.
pub const NEXT_FILE_NAME: &str = "next_signer_state.json";
/// Largest signer-state file read, in bytes (a state holds one signed message and a lock: a few hundred
/// bytes; a proposal's block is not in it).
pub const FILE_BYTES_MAX: u64 = 256 * 1024;
/// Largest encoded [`SignerState`] accepted.
pub const STATE_BYTES_MAX: usize = 64 * 1024;
const KIND: &str = "ledger-signer-state";
const VERSION: u32 = 1;
const CHECKSUM_CONTEXT: &str = "ledger v1 signer state file checksum";

/// (height, round, step) of a signed message, as written for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Position {
    pub height: u64,
    pub round: u32,
    pub step: String,
}

/// The document on disk (and of export/import).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignerDocument {
    pub version: u32,
    pub kind: String,
    pub chain_id: String,
    /// Address (`ldg…`) of the validator key this state belongs to.
    pub validator: String,
    /// Readable copy of the last signed message's position (`null`: never signed).
    pub last_signed: Option<Position>,
    /// Readable copy of the look-back floor: nothing at or below this height is signed.
    pub sign_floor: u64,
    /// Hex of the canonical encoding of the state: the authoritative part.
    pub state: String,
    pub checksum: String,
}

fn step_name(step: SignStep) -> &'static str {
    match step {
        SignStep::Propose => "propose",
        SignStep::Prevote => "prevote",
        SignStep::Precommit => "precommit",
    }
}

fn position_of(state: &SignerState) -> Option<Position> {
    state.position().map(|(h, r, s)| Position { height: h.0, round: r.0, step: step_name(s).to_string() })
}

fn signer_of(message: &SignedMessage) -> PublicKey {
    match message {
        SignedMessage::Proposal(p) => p.proposal.proposer,
        SignedMessage::Vote(v) => v.vote.validator,
    }
}

impl SignerDocument {
    /// The document for `state`, signed by `validator` on `chain_id`.
    pub fn new(chain_id: &str, validator: &PublicKey, state: &SignerState) -> SignerDocument {
        let bytes = encoding::encode(state);
        let address = validator.to_address_string();
        SignerDocument {
            version: VERSION,
            kind: KIND.into(),
            chain_id: chain_id.into(),
            validator: address.clone(),
            last_signed: position_of(state),
            sign_floor: state.floor().0,
            state: hex::encode(&bytes),
            checksum: checksum(CHECKSUM_CONTEXT, &[chain_id.as_bytes(), address.as_bytes(), &bytes]),
        }
    }

    pub fn to_json(&self) -> String {
        // Serialising a struct of strings and integers cannot fail.
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Parse and check a document read from `path` (for messages): format, checksum, the readable fields
    /// against the state, the state's messages against the named validator; then that it belongs to
    /// `validator` on `chain_id`.
    pub fn parse(text: &str, path: &Path, chain_id: &str, validator: &PublicKey) -> Result<SignerState, SafetyError> {
        let damaged = |detail: String| SafetyError::Damaged { path: path.to_path_buf(), detail };
        let doc: SignerDocument =
            serde_json::from_str(text).map_err(|e| damaged(format!("not a signer state: {e}")))?;
        if doc.kind != KIND || doc.version != VERSION {
            return Err(damaged(format!(
                "kind {:?} version {}, expected {KIND:?} version {VERSION}",
                doc.kind, doc.version
            )));
        }
        if doc.state.len() > STATE_BYTES_MAX * 2 {
            return Err(damaged(format!("state is longer than {STATE_BYTES_MAX} bytes")));
        }
        let bytes = hex::decode(&doc.state).map_err(|e| damaged(format!("state is not hex: {e}")))?;
        let expected = checksum(CHECKSUM_CONTEXT, &[doc.chain_id.as_bytes(), doc.validator.as_bytes(), &bytes]);
        if expected != doc.checksum {
            return Err(damaged("checksum does not match the contents".into()));
        }
        let state: SignerState =
            encoding::decode(&bytes, STATE_BYTES_MAX).map_err(|e| damaged(format!("state does not decode: {e}")))?;
        if position_of(&state) != doc.last_signed || state.floor().0 != doc.sign_floor {
            return Err(damaged("last_signed or sign_floor disagree with the state".into()));
        }
        let named = PublicKey::parse_address(&doc.validator)
            .map_err(|e| damaged(format!("validator {:?} is not an address: {e}", doc.validator)))?;
        if let Some(m) = state.last_signed()
            && signer_of(m) != named
        {
            return Err(damaged("the last signed message is not signed by the validator the file names".into()));
        }
        if named != *validator {
            return Err(SafetyError::OtherKey {
                path: path.to_path_buf(),
                found: doc.validator,
                ours: validator.to_address_string(),
            });
        }
        if doc.chain_id != chain_id {
            return Err(SafetyError::OtherChain {
                path: path.to_path_buf(),
                found: doc.chain_id,
                ours: chain_id.into(),
            });
        }
        Ok(state)
    }
}

/// The signer state file of one validator on one chain.
#[derive(Clone, Debug)]
pub struct SignerFile {
    path: PathBuf,
    chain_id: String,
    validator: PublicKey,
}

impl SignerFile {
    pub fn new(data_dir: &Path, chain_id: &str, validator: PublicKey) -> SignerFile {
        SignerFile { path: data_dir.join(FILE_NAME), chain_id: chain_id.into(), validator }
    }

    /// The state of the key a rotation switches to (`next_validator_key_file`), in a file of its own
    /// ([`NEXT_FILE_NAME`]): the old key's file is kept as it was.
    pub fn for_next_key(data_dir: &Path, chain_id: &str, validator: PublicKey) -> SignerFile {
        SignerFile { path: data_dir.join(NEXT_FILE_NAME), chain_id: chain_id.into(), validator }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored state; `None` when there is no file.
    pub fn load(&self) -> Result<Option<SignerState>, SafetyError> {
        match read_bounded(&self.path, FILE_BYTES_MAX)? {
            None => Ok(None),
            Some(text) => SignerDocument::parse(&text, &self.path, &self.chain_id, &self.validator).map(Some),
        }
    }

    /// Replace the stored state atomically and durably.
    pub fn store(&self, state: &SignerState) -> Result<(), SafetyError> {
        let doc = SignerDocument::new(&self.chain_id, &self.validator, state);
        atomic::write(&self.path, doc.to_json().as_bytes())
    }
}

/// What importing `incoming` over `current` gives: never less guarded than either. The state that signed
/// further is kept (with its lock); the floor is the higher of the two; if both signed different messages
/// at the same position, that height is never signed again.
pub fn merge(current: Option<SignerState>, incoming: SignerState) -> SignerState {
    let Some(current) = current else { return incoming };
    let (mut base, other) =
        if incoming.position() > current.position() { (incoming, current) } else { (current, incoming) };
    base.raise_floor(other.floor());
    if let (Some(a), Some(b)) = (base.last_signed(), other.last_signed())
        && a.position() == b.position()
        && a != b
    {
        let h = a.position().0;
        base.raise_floor(h);
    }
    base
}

/// Height below which nothing was signed by `state` (its last message's height), for messages.
pub fn last_height(state: &SignerState) -> Option<Height> {
    state.position().map(|p| p.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_core::consensus::{Action, Event};
    use ledger_core::{Hash, Keypair};

    fn key(i: u8) -> Keypair {
        Keypair::from_seed(&[i; 32])
    }

    /// The state a lone validator persists at height 1 (it proposes, prevotes and precommits in one go).
    fn proposed_state(k: &Keypair) -> SignerState {
        let mut c = crate::chain::signer_writes::tests::started(std::slice::from_ref(k), 0);
        let actions = c.handle(Event::ProposalValue {
            height: Height(1),
            round: ledger_core::Round(0),
            block_hash: Hash([9; 32]),
        });
        let mut state = None;
        for a in actions.unwrap() {
            if let Action::PersistSignerState(s) = a {
                state = Some(s);
            }
        }
        state.expect("a proposal was signed")
    }

    #[test]
    fn file_is_bound_to_its_key_and_chain_and_checksummed() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (key(1), key(2));
        let state = proposed_state(&a);
        let file = SignerFile::new(dir.path(), "c", a.public());
        assert_eq!(file.load().unwrap(), None);
        file.store(&state).unwrap();
        assert_eq!(file.load().unwrap(), Some(state.clone()));
        let text = std::fs::read_to_string(file.path()).unwrap();
        assert!(text.contains("\"step\": \"precommit\""), "{text}");

        let other_key = SignerFile::new(dir.path(), "c", b.public());
        assert!(matches!(other_key.load(), Err(SafetyError::OtherKey { .. })), "{:?}", other_key.load());
        let other_chain = SignerFile::new(dir.path(), "d", a.public());
        assert!(matches!(other_chain.load(), Err(SafetyError::OtherChain { .. })));

        // Any edit is damage: the floor, the validator, one byte of the state.
        for (from, to) in [("\"sign_floor\": 0", "\"sign_floor\": 5"), ("\"height\": 1", "\"height\": 2")] {
            std::fs::write(file.path(), text.replace(from, to)).unwrap();
            assert!(matches!(file.load(), Err(SafetyError::Damaged { .. })), "{from} -> {to}");
        }
        let doc: SignerDocument = serde_json::from_str(&text).unwrap();
        let mut flipped = doc.clone();
        flipped.state.replace_range(10..11, if &doc.state[10..11] == "0" { "1" } else { "0" });
        std::fs::write(file.path(), flipped.to_json()).unwrap();
        assert!(matches!(file.load(), Err(SafetyError::Damaged { .. })));
        std::fs::write(file.path(), &text[..text.len() / 2]).unwrap();
        assert!(matches!(file.load(), Err(SafetyError::Damaged { .. })));
    }

    #[test]
    fn merge_never_lowers_the_guard() {
        let a = key(1);
        let signed = proposed_state(&a);
        let floor_only = SignerState::with_floor(Height(9));
        // Signed state over a higher floor: the message stays and the floor rises.
        let m = merge(Some(signed.clone()), floor_only.clone());
        assert_eq!((m.position(), m.floor()), (signed.position(), Height(9)));
        let m = merge(Some(floor_only), signed.clone());
        assert_eq!((m.position(), m.floor()), (signed.position(), Height(9)));
        assert_eq!(merge(None, signed.clone()), signed);
    }

    #[test]
    fn data_dir_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let held = super::super::lock_data_dir(dir.path()).unwrap();
        let err = super::super::lock_data_dir(dir.path()).err();
        assert!(matches!(err, Some(SafetyError::InUse { .. })), "{err:?}");
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains(&format!("in use by PID {}", std::process::id())), "{text}");
        drop(held);
        super::super::lock_data_dir(dir.path()).unwrap();
    }
}
