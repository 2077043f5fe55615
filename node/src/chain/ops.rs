//! The pool of validator operations waiting for a block: approvals of validator-set changes (submitted over
//! the API) and equivocation evidence (found by this node's consensus core). Small and bounded; the
//! proposer offers all of it to `build_block`, which keeps what applies (`GovState::select_ops`), and after
//! every commit what can no longer apply is dropped.

use std::collections::BTreeMap;

use ledger_core::governance::{Approval, Evidence, GovError, GovState};
use ledger_core::{Hash, Height};

/// Most approvals held.
pub const POOL_APPROVALS_MAX: usize = 1024;
/// Most pieces of evidence held.
pub const POOL_EVIDENCE_MAX: usize = 256;

/// Why the pool refused an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Invalid(#[from] GovError),
    #[error("the pool of pending operations is full ({max})")]
    Full { max: usize },
}

impl OpsError {
    pub fn code(&self) -> &'static str {
        match self {
            OpsError::Invalid(e) => e.code(),
            OpsError::Full { .. } => "pool_full",
        }
    }
}

#[derive(Default)]
pub struct OpsPool {
    approvals: BTreeMap<Hash, Approval>,
    evidence: BTreeMap<Hash, Evidence>,
}

impl OpsPool {
    /// Admit an approval that could go into block `height` (the one after the tip). `Ok(false)`: held already.
    pub fn add_approval(
        &mut self,
        gov: &GovState,
        chain_id: &str,
        height: Height,
        a: Approval,
    ) -> Result<bool, OpsError> {
        let id = a.id();
        if self.approvals.contains_key(&id) {
            return Ok(false);
        }
        gov.check_approval(chain_id, height, &a)?;
        if self.approvals.len() >= POOL_APPROVALS_MAX {
            return Err(OpsError::Full { max: POOL_APPROVALS_MAX });
        }
        self.approvals.insert(id, a);
        Ok(true)
    }

    /// Admit evidence that could go into block `height` (for evidence about the height being decided, the
    /// block after it: see [`OpsPool::evidence_height`]). `Ok(false)`: held already.
    pub fn add_evidence(
        &mut self,
        gov: &GovState,
        chain_id: &str,
        height: Height,
        e: Evidence,
    ) -> Result<bool, OpsError> {
        let id = e.id();
        if self.evidence.contains_key(&id) {
            return Ok(false);
        }
        gov.check_evidence(chain_id, height, &e)?;
        if self.evidence.len() >= POOL_EVIDENCE_MAX {
            return Err(OpsError::Full { max: POOL_EVIDENCE_MAX });
        }
        self.evidence.insert(id, e);
        Ok(true)
    }

    /// The first block that can carry `e` when the next block is `next`: evidence is carried by a block
    /// above the height it is about, so evidence found at the height being decided waits one block.
    pub fn evidence_height(next: Height, e: &Evidence) -> Height {
        next.max(e.key().height.next())
    }

    /// Everything held, for the block builder.
    pub fn candidates(&self) -> (Vec<Approval>, Vec<Evidence>) {
        (self.approvals.values().cloned().collect(), self.evidence.values().cloned().collect())
    }

    /// After a commit: drop what block `height` (the next one) could not carry any more (included, expired,
    /// executed, duplicated).
    /// Signatures were checked on admission, so only what depends on the state is checked again.
    pub fn prune(&mut self, gov: &GovState, height: Height) {
        self.approvals.retain(|_, a| match gov.approval_applies(height, a) {
            Ok(()) | Err(GovError::TooManyPending { .. }) => true,
            Err(_) => false,
        });
        // Evidence about the height being decided can only go into the block after it: kept until then.
        self.evidence.retain(|_, e| match gov.evidence_applies(height, e) {
            Ok(()) | Err(GovError::EvidenceFromFuture { .. }) => true,
            Err(_) => false,
        });
    }

    pub fn approvals(&self) -> usize {
        self.approvals.len()
    }

    pub fn evidence(&self) -> usize {
        self.evidence.len()
    }
}
