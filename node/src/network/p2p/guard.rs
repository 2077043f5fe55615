//! The swarm task's defence against peers: every gossip message and sync request a peer sends is paid for
//! from its budget in a [`PeerBook`] (the rules are `ledger_core::gossip`'s, shared with the simulator),
//! faults cost score, and a peer whose score falls far enough is disconnected and refused for a while.
//!
//! What operators see: `ledger_peer_penalties_total{reason}`, `ledger_peer_bans_total`,
//! `ledger_peers_banned`, `ledger_gossip_dropped_total{reason}` (see [`PeerStats`]), and one WARN per ban,
//! at most one every [`BAN_WARN_INTERVAL`] with the number of bans in between.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ledger_core::gossip::{Change, DropReason, Offence, PeerBook, PeerLimits, Resource, Standing};
use libp2p::PeerId;
use tokio::time::Instant;

/// Ban warnings are rate-limited: a flood of fresh identities must not flood the log.
pub const BAN_WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Counters of the guard, read by `/metrics`.
#[derive(Debug, Default)]
pub struct PeerStats {
    penalties: [AtomicU64; 3],
    bans: AtomicU64,
    banned_now: AtomicU64,
    dropped: [AtomicU64; DropReason::ALL.len()],
}

impl PeerStats {
    fn offence_index(o: Offence) -> usize {
        Offence::ALL.iter().position(|x| *x == o).unwrap_or(0)
    }

    fn drop_index(r: DropReason) -> usize {
        DropReason::ALL.iter().position(|x| *x == r).unwrap_or(0)
    }

    /// Penalties so far, by offence.
    pub fn penalties(&self) -> Vec<(Offence, u64)> {
        Offence::ALL.iter().map(|o| (*o, self.penalties[Self::offence_index(*o)].load(Ordering::Relaxed))).collect()
    }

    /// Gossip messages dropped without blame so far, by reason.
    pub fn dropped(&self) -> Vec<(DropReason, u64)> {
        DropReason::ALL.iter().map(|r| (*r, self.dropped[Self::drop_index(*r)].load(Ordering::Relaxed))).collect()
    }

    pub fn bans(&self) -> u64 {
        self.bans.load(Ordering::Relaxed)
    }

    pub fn banned_now(&self) -> u64 {
        self.banned_now.load(Ordering::Relaxed)
    }

    pub fn count_drop(&self, r: DropReason) {
        self.dropped[Self::drop_index(r)].fetch_add(1, Ordering::Relaxed);
    }
}

/// The peer book with its clock, counters and log limiter.
pub(crate) struct Guard {
    book: PeerBook<PeerId>,
    epoch: Instant,
    pub stats: std::sync::Arc<PeerStats>,
    last_ban_warn: Option<Instant>,
    bans_unreported: u64,
}

impl Guard {
    pub fn new(limits: PeerLimits, stats: std::sync::Arc<PeerStats>) -> Guard {
        Guard { book: PeerBook::new(limits), epoch: Instant::now(), stats, last_ban_warn: None, bans_unreported: 0 }
    }

    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub fn standing(&mut self, peer: &PeerId) -> Standing {
        let now = self.now_ms();
        self.book.standing(peer, now)
    }

    pub fn is_banned(&mut self, peer: &PeerId) -> bool {
        matches!(self.standing(peer), Standing::Banned { .. })
    }

    /// Spend from `peer`'s budget; `false` means refused (nothing spent).
    pub fn try_spend(&mut self, peer: &PeerId, resource: Resource, amount: u64) -> bool {
        let now = self.now_ms();
        self.book.try_spend(peer, resource, amount, now)
    }

    /// Record an offence; returns true if the peer is now banned (the caller disconnects it).
    pub fn penalise(&mut self, peer: &PeerId, offence: Offence, why: &str) -> bool {
        let now = self.now_ms();
        self.stats.penalties[PeerStats::offence_index(offence)].fetch_add(1, Ordering::Relaxed);
        let change = self.book.penalise(peer, offence, now);
        match change {
            Change::None => false,
            Change::NowIgnored => {
                tracing::debug!(%peer, offence = offence.label(), why, "ignoring peer's messages until its score recovers");
                false
            }
            Change::NowBanned { until_ms } => {
                self.stats.bans.fetch_add(1, Ordering::Relaxed);
                self.refresh_banned();
                let secs = until_ms.saturating_sub(now) / 1000;
                let t = Instant::now();
                if self.last_ban_warn.is_none_or(|last| t.saturating_duration_since(last) >= BAN_WARN_INTERVAL) {
                    self.last_ban_warn = Some(t);
                    let others = std::mem::take(&mut self.bans_unreported);
                    tracing::warn!(
                        %peer,
                        offence = offence.label(),
                        why,
                        ban_secs = secs,
                        other_bans_since_last_warning = others,
                        "peer banned for {secs} s: disconnected, reconnections refused"
                    );
                } else {
                    self.bans_unreported += 1;
                }
                true
            }
        }
    }

    /// Forget a disconnected peer unless it owes score or is banned.
    pub fn on_disconnected(&mut self, peer: &PeerId) {
        let now = self.now_ms();
        self.book.forget_if_clean(peer, now);
        self.refresh_banned();
    }

    pub fn refresh_banned(&mut self) {
        let now = self.now_ms();
        self.stats.banned_now.store(self.book.banned(now) as u64, Ordering::Relaxed);
    }
}
