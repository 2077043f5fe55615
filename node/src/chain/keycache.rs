//! Decompressed ed25519 keys by their bytes ([`ledger_core::crypto::KeyCache`]), shared by every thread
//! that checks transactions (gossip validation, API admission). Only keys that passed the full check are
//! kept, so a cached answer is exactly what decompressing again would give.

use std::collections::HashMap;
use std::sync::RwLock;

use ledger_core::PublicKey;
use ledger_core::crypto::{CheckedKey, CryptoError, KeyCache};

/// Most keys kept (~200 bytes each); when full the cache starts over, which costs only decompressions.
pub const KEY_CACHE_MAX: usize = 100_000;

#[derive(Default)]
pub struct SharedKeyCache {
    keys: RwLock<HashMap<[u8; 32], CheckedKey>>,
}

impl KeyCache for SharedKeyCache {
    fn verifying_key(&self, key: &PublicKey) -> Result<CheckedKey, CryptoError> {
        if let Some(vk) = self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(&key.0) {
            return Ok(*vk);
        }
        let vk = key.checked_key()?;
        let mut keys = self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if keys.len() >= KEY_CACHE_MAX {
            keys.clear();
        }
        keys.insert(key.0, vk);
        Ok(vk)
    }
}

impl SharedKeyCache {
    pub fn len(&self) -> usize {
        self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_core::Keypair;

    #[test]
    fn cached_keys_answer_like_fresh_ones_and_bad_keys_are_never_kept() {
        let cache = SharedKeyCache::default();
        let good = Keypair::from_seed(&[7; 32]).public();
        let first = cache.verifying_key(&good).unwrap();
        let again = cache.verifying_key(&good).unwrap();
        assert_eq!(first, again);
        assert_eq!(first, good.checked_key().unwrap());
        // The identity point (small order) and a non-point are refused every time and not remembered.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = PublicKey(identity);
        for _ in 0..2 {
            assert_eq!(cache.verifying_key(&weak), Err(CryptoError::WeakKey));
        }
        assert_eq!(cache.len(), 1);
    }
}
