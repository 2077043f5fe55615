//! Tendermint consensus as a pure state machine: events in, actions out.
//!
//! This implements Algorithm 1 of Buchman, Kwon and Milosevic, "The latest gossip on BFT consensus"
//! (2018), for one height at a time; comments cite its lines (`// L22`). The value agreed on is a block
//! hash; blocks travel outside the core. "2f+1" means more than 2/3 of the voting power, "f+1" more than
//! 1/3 ([`crate::ValidatorSet::is_quorum`], [`crate::ValidatorSet::is_one_third`]).
//!
//! It is not: a network, a clock, a block store or an executor. No I/O, no time, no randomness, no hash
//! maps: the same events in the same order give the same actions, byte for byte.
//!
//! # Parts
//! - [`Consensus`] (driver.rs): the round state machine (L11-L67) plus proposal bookkeeping.
//! - [`VoteKeeper`] (keeper.rs): verified votes per (round, kind), weighted thresholds, equivocation.
//! - [`SignerState`] (signer.rs): the guard that makes double signing impossible, and the persisted lock.
//!
//! # Driving it
//! Build with [`Consensus::new`], feed [`Event::Start`], then every event with [`Consensus::handle`]. Each
//! call returns the actions to execute, or a [`ConsensusError`] when the event is refused (a bad peer
//! message is an outcome, never a panic; the state is unchanged). Timers are data: on
//! [`Action::ScheduleTimeout`] the shell waits [`timeout_duration_ms`] and feeds [`Event::TimeoutFired`];
//! stale timeouts are ignored, so the shell need not cancel them.
//!
//! The flow of a block: as proposer, [`Action::BuildBlock`] -> [`Event::ProposalValue`]. On a proposal,
//! [`Action::ValidateBlock`] -> [`Event::BlockValidity`] (once per block hash; the core does not prevote
//! for a block before its verdict). When 2f+1 votes name a block whose proposal is missing,
//! [`Action::RequestProposal`] -> the shell fetches it and feeds [`Event::Proposal`]. On
//! [`Action::Decide`] the shell commits the block, then feeds [`Event::NewHeight`].
//!
//! # Action-ordering contract
//! 1. Execute the actions of one call in the order returned, before feeding the next event.
//! 2. [`Action::PersistSignerState`] must be durable (written and fsynced) before any later action of the
//!    same call runs. It always comes right before the [`Action::BroadcastProposal`] or
//!    [`Action::BroadcastVote`] it guards: a message is never sent that the persisted state does not
//!    cover, so a crash between the two cannot lead to a conflicting signature after restart (I7).
//!    It also comes alone when the look-back floor rises ([`Event::RaiseSignFloor`], or a message with
//!    this validator's key that this process did not sign): persist it all the same.
//! 3. A broadcast without a persist before it re-sends a message already covered by the persisted state
//!    (e.g. after a restart); it is safe to send.
//! 4. [`Action::Decide`] is emitted once per height. Commit the block (with the certificate) durably, then
//!    feed [`Event::NewHeight`]. [`Consensus::commit_certificate`] keeps returning the fullest certificate
//!    for the decided height and, after `NewHeight`, for the previous height.
//!
//! # Restart
//! Persist every [`SignerState`] and pass the last one back in [`Config::signer`]. If it holds a message
//! signed at the start height, `Start` resumes at that round and step with the persisted lock, and
//! re-broadcasts that message; the guard refuses any signature at or below it unless the payload is the
//! same. A signer state from a higher height is refused ([`ConsensusError::SignerAhead`]).
//!
//! # The double-sign guard at start
//! The signer state only protects what it remembers. A validator whose state was lost or rewound, or a
//! second process started with the same key (twins), would sign again where the key already signed. So
//! the core also keeps a look-back floor (in [`SignerState`], persisted) that the shell raises from the
//! certificates it holds or syncs ([`Event::RaiseSignFloor`]), and a [`GuardMode`]: with
//! [`Config::watch`] it starts `Watching` and signs nothing until [`Event::EndWatch`]; a verified message
//! with its own key that it did not sign raises the floor to that height and makes it `Suspect` (or
//! `Halted`, when it can only come from another live process), announced with
//! [`Action::ForeignSignature`].
//!
//! # Limits
//! - [`ROUNDS_AHEAD_MAX`]: proposals and votes more than this many rounds above the current round are
//!   refused. Rounds at or below it are kept for the height (L28 and L49 look at earlier rounds); rounds
//!   only advance with timeouts that grow linearly, so their number stays small in practice.
//! - Per (round, kind), one vote per validator ([`crate::params::VALIDATORS_MAX`]); one proposal per
//!   round; equivocating votes are not stored beyond the first evidence pair.
//! - [`RULE_FIRINGS_MAX`]: upper bound on rules fired by one event (a guard against a livelock bug).

mod driver;
mod keeper;
mod signer;

#[cfg(test)]
mod tests;

pub use driver::{
    Action, Config, Consensus, ConsensusError, Event, Evidence, GuardMode, SUSPECT_QUIET_HEIGHTS, Step, Timeout,
    TimeoutKind, timeout_duration_ms,
};
pub use keeper::{AddOutcome, Threshold, VALUES_PER_VOTER_MAX, VoteError, VoteKeeper};
pub use signer::{Lock, SignStep, SignedMessage, SignerState};

/// Messages for rounds above `current + ROUNDS_AHEAD_MAX` are refused. Large enough for round skipping
/// (L55) to catch up with a network a few rounds ahead, small enough that Byzantine validators can make us
/// store at most `ROUNDS_AHEAD_MAX + 1` future rounds of votes.
pub const ROUNDS_AHEAD_MAX: u32 = 16;

/// Most upon-rules one event can fire. Each firing advances the state (step, round, flag or decision);
/// a round skip plus the rules of one round fire about ten; far below this cap.
pub const RULE_FIRINGS_MAX: usize = 256;
