//! The driver: Algorithm 1 of "The latest gossip on BFT consensus" for one height at a time, with the
//! vote keeper, the signer guard and proposal bookkeeping around it. See the module doc of
//! [`crate::consensus`] for the contract with the shell.

use std::collections::{BTreeMap, BTreeSet};

use crate::cert::{CommitCertificate, CommitSig};
use crate::crypto::{Keypair, PublicKey, Signature};
use crate::hash::Hash;
use crate::params::ConsensusParams;
use crate::types::{Height, Round};
use crate::validator::ValidatorSet;
use crate::vote::{MessageError, Proposal, SignedProposal, SignedVote, Vote, VoteKind};

use super::keeper::{AddOutcome, VoteError, VoteKeeper};
use super::signer::{Lock, SignStep, SignedMessage, SignerState, Signing};
use super::{ROUNDS_AHEAD_MAX, RULE_FIRINGS_MAX};

/// Which timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimeoutKind {
    Propose,
    Prevote,
    Precommit,
}

/// A timer the shell runs and reports back with [`Event::TimeoutFired`]. Time is data: the core never
/// reads a clock; [`timeout_duration_ms`] gives the duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timeout {
    pub height: Height,
    pub round: Round,
    pub kind: TimeoutKind,
}

/// `timeout_X(r) = timeout_X_ms + r * timeout_delta_ms`, saturating.
pub fn timeout_duration_ms(params: &ConsensusParams, timeout: &Timeout) -> u64 {
    let base = match timeout.kind {
        TimeoutKind::Propose => params.timeout_propose_ms,
        TimeoutKind::Prevote => params.timeout_prevote_ms,
        TimeoutKind::Precommit => params.timeout_precommit_ms,
    };
    base.saturating_add(u64::from(timeout.round.0).saturating_mul(params.timeout_delta_ms))
}

/// The step of the current round (the paper's `step_p`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    Propose,
    Prevote,
    Precommit,
}

/// What the shell tells the core.
#[derive(Clone, Debug)]
pub enum Event {
    /// Begin the height given at construction: round 0, or the round of the last signed message after a
    /// restart. Exactly once, before anything else.
    Start,
    /// A proposal from the network (signature and proposer are checked here).
    Proposal(SignedProposal),
    /// A prevote or precommit from the network.
    Vote(SignedVote),
    /// The shell's verdict on a block it was asked to validate ([`Action::ValidateBlock`]).
    BlockValidity { height: Height, round: Round, block_hash: Hash, valid: bool },
    /// The block the shell built after [`Action::BuildBlock`].
    ProposalValue { height: Height, round: Round, block_hash: Hash },
    /// A timer scheduled by [`Action::ScheduleTimeout`] fired.
    TimeoutFired(Timeout),
    /// The decided block was committed (or the node synced past this height): start `height` with
    /// `validators`. Precommits for the last decided height keep being collected.
    NewHeight { height: Height, validators: ValidatorSet },
    /// Look-back: this validator's key was found at `height` (a certificate in the store or from sync):
    /// never sign at or below it. Raises the persisted floor ([`Action::PersistSignerState`] follows).
    RaiseSignFloor(Height),
    /// The start-up watch is over (the shell watched the network long enough; see [`GuardMode`]).
    EndWatch,
    /// Sign with `key` from now on, with `signer` as its state (as persisted for that key; default if it
    /// never signed): a governance key rotation takes effect at the next height. Fed between heights,
    /// before [`Event::NewHeight`]. The new key never signs at or below the current height (its floor is
    /// raised to it and [`Action::PersistSignerState`] follows); the old key signs nothing more here.
    ReplaceKey { key: Keypair, signer: SignerState },
}

/// Heights decided with their votes seen, and no message with this validator's key that it did not sign,
/// before a suspicion is cleared (two, so that a twin's late vote of the first one still shows up).
pub const SUSPECT_QUIET_HEIGHTS: u32 = 2;

/// What the double-sign guard lets this validator do. Only `Active` signs (and only above the floor).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuardMode {
    /// Just started: observes the network and signs nothing until [`Event::EndWatch`], so that another
    /// process running this key, or this validator's own messages from before a restart that lost its
    /// signer state, show up before it signs.
    Watching,
    /// A message with this key that this process did not sign was seen at `since` before it signed
    /// anything: the floor is raised to `since`, and nothing is signed until [`SUSPECT_QUIET_HEIGHTS`]
    /// heights above it were decided here (not synced: their votes were seen) without another such message
    /// (it was this validator's own, from before a restart); another one at a higher height means a live
    /// twin ([`GuardMode::Halted`]). `quiet_heights` counts those heights.
    Suspect {
        since: Height,
        quiet_heights: u32,
    },
    Active,
    /// Another process signs with this key: this one never signs again (until restarted).
    Halted,
}

/// Proof of misbehaviour: two different messages signed by one validator for one slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Evidence {
    DoubleVote { first: SignedVote, second: SignedVote },
    DoubleProposal { first: SignedProposal, second: SignedProposal },
}

/// What the core asks the shell to do, in order (see the module doc for the contract).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Write this state durably before executing any later action.
    PersistSignerState(SignerState),
    BroadcastProposal(SignedProposal),
    BroadcastVote(SignedVote),
    ScheduleTimeout(Timeout),
    /// This node proposes in (height, round) and has no valid value: build a block and answer with
    /// [`Event::ProposalValue`].
    BuildBlock {
        height: Height,
        round: Round,
    },
    /// Execute the proposed block (fetch it if missing) and answer with [`Event::BlockValidity`].
    ValidateBlock {
        height: Height,
        round: Round,
        block_hash: Hash,
    },
    /// 2f+1 votes exist for `block_hash` but its proposal is missing: fetch the signed proposal and the
    /// block, then feed [`Event::Proposal`].
    RequestProposal {
        height: Height,
        round: Round,
        block_hash: Hash,
    },
    /// The height is decided. Final: it is emitted once per height.
    Decide {
        height: Height,
        round: Round,
        block_hash: Hash,
        certificate: CommitCertificate,
    },
    Evidence(Evidence),
    /// A verified message signed with this validator's key that this process did not sign. `halted`: the
    /// guard concluded another process runs this key and stopped signing for good; otherwise it raised
    /// its floor to `height` and watches (see [`GuardMode`]). The shell must make this loud.
    ForeignSignature {
        height: Height,
        round: Round,
        step: SignStep,
        halted: bool,
    },
}

/// Why an event was refused. The core's state is unchanged when an event is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsensusError {
    #[error("consensus has not been started")]
    NotStarted,
    #[error("consensus was already started")]
    AlreadyStarted,
    #[error("message is for height {got}, expected {expected}")]
    WrongHeight { expected: Height, got: Height },
    #[error("message is for round {got}, more than {max_ahead} rounds ahead of {current}")]
    RoundTooFarAhead { current: Round, got: Round, max_ahead: u32 },
    #[error(transparent)]
    Message(#[from] MessageError),
    #[error("proposer of round {round} is {expected:?}, not {got:?}")]
    WrongProposer { round: Round, expected: PublicKey, got: PublicKey },
    #[error("proof-of-lock round {pol_round} is not below the proposal round {round}")]
    PolRoundNotBelowRound { round: Round, pol_round: Round },
    #[error("{what} for ({height:?}, {round:?}) was not asked for")]
    Unsolicited { what: &'static str, height: Height, round: Round },
    #[error("new height {got} is not above the current height {current}")]
    HeightNotAbove { current: Height, got: Height },
    #[error("signer state has signed at height {signed}, above the start height {start}: storage went back")]
    SignerAhead { signed: Height, start: Height },
}

impl From<VoteError> for ConsensusError {
    fn from(e: VoteError) -> Self {
        match e {
            VoteError::WrongHeight { expected, got } => ConsensusError::WrongHeight { expected, got },
            VoteError::Message(m) => ConsensusError::Message(m),
        }
    }
}

/// Everything needed to build a [`Consensus`].
#[derive(Clone, Debug)]
pub struct Config {
    pub chain_id: String,
    pub validators: ValidatorSet,
    pub params: ConsensusParams,
    /// `None` for a full node: it follows consensus to learn decisions but never signs.
    pub key: Option<Keypair>,
    /// As last persisted; `SignerState::default()` on first start.
    pub signer: SignerState,
    pub height: Height,
    /// Look-back floor found by the shell at start (merged into the signer state's floor).
    pub sign_floor: Height,
    /// Start in [`GuardMode::Watching`] (until [`Event::EndWatch`]) instead of `Active`.
    pub watch: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Pending,
    Valid,
    Invalid,
}

#[derive(Clone, Copy, Debug, Default)]
struct RoundFlags {
    /// L34 fired in this round.
    prevote_timeout_scheduled: bool,
    /// L47 fired in this round.
    precommit_timeout_scheduled: bool,
    /// L36 fired in this round.
    polka_value_seen: bool,
    /// Waiting for [`Event::ProposalValue`] for this round (L18).
    awaiting_value: bool,
}

#[derive(Clone, Copy, Debug)]
struct Decision {
    round: Round,
    block_hash: Hash,
}

/// The decided previous height, whose late precommits are still collected.
#[derive(Clone, Debug)]
struct PreviousCommit {
    height: Height,
    round: Round,
    block_hash: Hash,
    validators: ValidatorSet,
    signatures: BTreeMap<u16, Signature>,
}

/// The consensus core of one node. Events in ([`Consensus::handle`]), actions out.
#[derive(Debug)]
pub struct Consensus {
    chain_id: String,
    validators: ValidatorSet,
    params: ConsensusParams,
    key: Option<Keypair>,
    signer: SignerState,
    started: bool,
    height: Height,
    round: Round,
    step: Step,
    /// lockedValue / lockedRound (L2).
    locked: Option<Lock>,
    /// validValue / validRound (L2).
    valid: Option<Lock>,
    decision: Option<Decision>,
    /// The first valid proposal of each round from its proposer.
    proposals: BTreeMap<Round, SignedProposal>,
    /// Shell verdicts on blocks of proposals (valid(v) in the paper).
    verdicts: BTreeMap<Hash, Verdict>,
    keeper: VoteKeeper,
    /// Highest round each validator has sent a verified message for (L55).
    highest_round: BTreeMap<u16, Round>,
    flags: RoundFlags,
    /// (round, block) pairs already asked for with RequestProposal.
    requested: BTreeSet<(Round, Hash)>,
    /// Proposal slots already reported as equivocating.
    double_proposals: BTreeSet<Round>,
    previous: Option<PreviousCommit>,
    guard: GuardMode,
    /// Position of the last message in the signer state handed over at construction: messages with this
    /// key at or below it may be from before the restart.
    start_position: Option<(Height, Round, SignStep)>,
    /// First position this process signed afresh.
    first_fresh: Option<(Height, Round, SignStep)>,
    /// Messages this process signed at the current height, by position.
    signed_here: BTreeMap<(Height, Round, SignStep), SignedMessage>,
    #[cfg(any(test, feature = "broken-lock"))]
    ignore_lock: bool,
}

impl Consensus {
    /// Build the core for `config.height`. Nothing happens until [`Event::Start`].
    pub fn new(config: Config) -> Result<Consensus, ConsensusError> {
        if let Some((signed, _, _)) = config.signer.position()
            && signed > config.height
        {
            return Err(ConsensusError::SignerAhead { signed, start: config.height });
        }
        let start_position = config.signer.position();
        let mut signer = config.signer;
        signer.raise_floor(config.sign_floor);
        let guard = if config.watch { GuardMode::Watching } else { GuardMode::Active };
        Ok(Consensus {
            chain_id: config.chain_id,
            keeper: VoteKeeper::new(config.height),
            validators: config.validators,
            params: config.params,
            key: config.key,
            signer,
            started: false,
            height: config.height,
            round: Round(0),
            step: Step::Propose,
            locked: None,
            valid: None,
            decision: None,
            proposals: BTreeMap::new(),
            verdicts: BTreeMap::new(),
            highest_round: BTreeMap::new(),
            flags: RoundFlags::default(),
            requested: BTreeSet::new(),
            double_proposals: BTreeSet::new(),
            previous: None,
            guard,
            start_position,
            first_fresh: None,
            signed_here: BTreeMap::new(),
            #[cfg(any(test, feature = "broken-lock"))]
            ignore_lock: false,
        })
    }

    /// Negative control for simulations: ignore the lock when prevoting (L22, L28). Never in production.
    #[cfg(any(test, feature = "broken-lock"))]
    pub fn set_broken_lock(&mut self, on: bool) {
        self.ignore_lock = on;
    }

    pub fn height(&self) -> Height {
        self.height
    }

    pub fn round(&self) -> Round {
        self.round
    }

    pub fn step(&self) -> Step {
        self.step
    }

    pub fn validators(&self) -> &ValidatorSet {
        &self.validators
    }

    pub fn params(&self) -> &ConsensusParams {
        &self.params
    }

    pub fn signer_state(&self) -> &SignerState {
        &self.signer
    }

    /// What the double-sign guard lets this validator do.
    pub fn guard(&self) -> GuardMode {
        self.guard
    }

    /// Nothing is signed at or below this height.
    pub fn sign_floor(&self) -> Height {
        self.signer.floor()
    }

    /// (round, block) decided at the current height, if any.
    pub fn decision(&self) -> Option<(Round, Hash)> {
        self.decision.map(|d| (d.round, d.block_hash))
    }

    /// (lockedRound, lockedValue), if locked.
    pub fn locked(&self) -> Option<Lock> {
        self.locked
    }

    /// (validRound, validValue), if any.
    pub fn valid(&self) -> Option<Lock> {
        self.valid
    }

    /// The fullest commit certificate known for `height`: the current height once decided, or the previous
    /// decided height (with the precommits that arrived after the decision).
    pub fn commit_certificate(&self, height: Height) -> Option<CommitCertificate> {
        if height == self.height {
            let d = self.decision?;
            return self.keeper.commit_certificate(&self.validators, d.round, d.block_hash);
        }
        let p = self.previous.as_ref().filter(|p| p.height == height)?;
        Some(CommitCertificate {
            height: p.height,
            round: p.round,
            block_hash: p.block_hash,
            signatures: p.signatures.iter().map(|(i, s)| CommitSig { validator_index: *i, signature: *s }).collect(),
        })
    }

    /// This validator's own signed messages at the current height (its proposals, then its votes by round
    /// and kind), for the shell to re-gossip: links lose messages, and a message lost during a partition
    /// is otherwise never sent again. Every message returned was signed (and its signer state persisted)
    /// before, so re-sending it is safe (contract rule 3). Empty for a full node.
    pub fn own_messages(&self) -> Vec<SignedMessage> {
        let Some(key) = self.my_key() else {
            return Vec::new();
        };
        let me = key.public();
        let mut out: Vec<SignedMessage> = self
            .proposals
            .values()
            .filter(|p| p.proposal.proposer == me)
            .cloned()
            .map(SignedMessage::Proposal)
            .collect();
        if let Some(index) = self.validators.index_of(&me).and_then(|i| u16::try_from(i).ok()) {
            out.extend(self.keeper.votes_of(index).into_iter().map(SignedMessage::Vote));
        }
        out
    }

    /// Votes of other validators worth relaying when progress stalls: every vote held for the rounds that
    /// can still matter at this height (the current round, the one before it, and the locked and valid
    /// rounds). A peer that missed some, in particular one of a double voter's conflicting votes, can then
    /// reach the same thresholds we did (a polka that justified our lock, or one a POL proposal names). The
    /// round before matters to a peer still in it: we left it on 2f+1 precommits it may lack (a Byzantine
    /// validator that sent its precommit to us alone, and our relay of it lost), and without them it waits
    /// in that round for ever (found by the simulator, seed 3348: a validator left round 0 during its watch,
    /// so never precommitted there). Gossipsub relays every message once; lost relays come back only from
    /// here. Bounded by 4 rounds x 2 kinds x validators x [`super::VALUES_PER_VOTER_MAX`].
    pub fn relay_votes(&self) -> Vec<SignedVote> {
        let mut rounds = vec![self.round];
        if self.round.0 > 0 {
            rounds.push(Round(self.round.0 - 1));
        }
        rounds.extend(self.locked.map(|l| l.round));
        rounds.extend(self.valid.map(|l| l.round));
        rounds.sort_unstable();
        rounds.dedup();
        let me = self.my_key().map(|k| k.public());
        rounds.into_iter().flat_map(|r| self.keeper.votes_in(r)).filter(|v| Some(v.vote.validator) != me).collect()
    }

    /// Feed one event; get the actions to execute, in order. A refused event changes nothing.
    pub fn handle(&mut self, event: Event) -> Result<Vec<Action>, ConsensusError> {
        let mut out = Vec::new();
        match event {
            Event::Start => {
                if self.started {
                    return Err(ConsensusError::AlreadyStarted);
                }
                self.started = true;
                self.begin_height(&mut out);
            }
            _ if !self.started => return Err(ConsensusError::NotStarted),
            Event::Proposal(p) => self.on_proposal(p, &mut out)?,
            Event::Vote(v) => self.on_vote(v, &mut out)?,
            Event::BlockValidity { height, round, block_hash, valid } => {
                self.check_height(height)?;
                match self.verdicts.get_mut(&block_hash) {
                    Some(v @ Verdict::Pending) => *v = if valid { Verdict::Valid } else { Verdict::Invalid },
                    // A repeated or late verdict: the first one stands.
                    Some(_) => {}
                    None => {
                        return Err(ConsensusError::Unsolicited { what: "block validity", height, round });
                    }
                }
            }
            Event::ProposalValue { height, round, block_hash } => {
                self.check_height(height)?;
                if round != self.round || !self.flags.awaiting_value || self.step != Step::Propose {
                    return Err(ConsensusError::Unsolicited { what: "proposal value", height, round });
                }
                self.flags.awaiting_value = false;
                // L19: a freshly built value has validRound -1.
                self.propose(block_hash, None, &mut out);
            }
            Event::TimeoutFired(t) => self.on_timeout(t, &mut out),
            Event::NewHeight { height, validators } => {
                if height <= self.height {
                    return Err(ConsensusError::HeightNotAbove { current: self.height, got: height });
                }
                // Decided here, with its votes seen (not synced past): counts toward clearing a suspicion.
                let decided_here = self.decision.is_some();
                let left_height = self.height;
                self.previous = self.decision.map(|d| PreviousCommit {
                    height: self.height,
                    round: d.round,
                    block_hash: d.block_hash,
                    signatures: self
                        .keeper
                        .commit_signatures(d.round, d.block_hash)
                        .into_iter()
                        .map(|s| (s.validator_index, s.signature))
                        .collect(),
                    validators: self.validators.clone(),
                });
                self.validators = validators;
                self.reset_height(height);
                // Heights above the suspicious one decided here (their votes seen) without another foreign
                // message: it was this validator's own message from before a restart.
                if let GuardMode::Suspect { since, quiet_heights } = self.guard
                    && decided_here
                    && left_height > since
                {
                    let quiet_heights = quiet_heights.saturating_add(1);
                    self.guard = if quiet_heights >= SUSPECT_QUIET_HEIGHTS {
                        GuardMode::Active
                    } else {
                        GuardMode::Suspect { since, quiet_heights }
                    };
                }
                self.begin_height(&mut out);
            }
            Event::RaiseSignFloor(height) => {
                if self.signer.raise_floor(height) && self.my_key().is_some() {
                    out.push(Action::PersistSignerState(self.signer.clone()));
                }
            }
            Event::ReplaceKey { key, signer } => {
                if let Some((signed, _, _)) = signer.position()
                    && signed > self.height
                {
                    return Err(ConsensusError::SignerAhead { signed, start: self.height });
                }
                self.start_position = signer.position();
                self.first_fresh = None;
                self.signed_here.clear();
                self.signer = signer;
                self.signer.raise_floor(self.height);
                self.key = Some(key);
                out.push(Action::PersistSignerState(self.signer.clone()));
            }
            Event::EndWatch => {
                if self.guard == GuardMode::Watching {
                    self.guard = GuardMode::Active;
                    // Silent so far, this node may have let its step run past a vote it did not cast. It steps
                    // back to where that vote is due, as a node that had not yet timed out would be (it signed
                    // nothing in this round, so nothing conflicts), and the rules cast it now: the round goes
                    // on with this node's vote instead of waiting for a round it cannot start alone.
                    if self.decision.is_none() {
                        match self.step {
                            Step::Propose if !self.flags.awaiting_value => self.start_round(self.round, &mut out),
                            Step::Propose => {}
                            Step::Prevote => {
                                // L22/L28 on the proposal if it is known, else L57 when this timeout fires.
                                self.step = Step::Propose;
                                self.schedule(TimeoutKind::Propose, &mut out);
                            }
                            Step::Precommit => {
                                // L34-L46 again, with what this node has seen of the round's prevotes.
                                self.step = Step::Prevote;
                                self.flags.prevote_timeout_scheduled = false;
                                self.flags.polka_value_seen = false;
                            }
                        }
                    }
                }
            }
        }
        self.run_rules(&mut out);
        Ok(out)
    }

    fn check_height(&self, got: Height) -> Result<(), ConsensusError> {
        if got != self.height {
            return Err(ConsensusError::WrongHeight { expected: self.height, got });
        }
        Ok(())
    }

    fn check_round(&self, got: Round) -> Result<(), ConsensusError> {
        if u64::from(got.0) > u64::from(self.round.0) + u64::from(ROUNDS_AHEAD_MAX) {
            return Err(ConsensusError::RoundTooFarAhead { current: self.round, got, max_ahead: ROUNDS_AHEAD_MAX });
        }
        Ok(())
    }

    fn reset_height(&mut self, height: Height) {
        self.height = height;
        self.round = Round(0);
        self.step = Step::Propose;
        self.locked = None;
        self.valid = None;
        self.decision = None;
        self.proposals.clear();
        self.verdicts.clear();
        self.keeper = VoteKeeper::new(height);
        self.highest_round.clear();
        self.flags = RoundFlags::default();
        self.requested.clear();
        self.double_proposals.clear();
        self.signed_here.clear();
    }

    /// Start the height: round 0 (L10), or, after a restart, the round and step of the last signed message
    /// with the persisted lock, re-broadcasting that message so peers that missed it get it.
    fn begin_height(&mut self, out: &mut Vec<Action>) {
        let resume = self.signer.last_signed().filter(|m| m.position().0 == self.height).cloned();
        let Some(last) = resume else {
            self.start_round(Round(0), out);
            return;
        };
        self.locked = self.signer.lock_at(self.height);
        // A lock is also a valid value (L36 sets both).
        self.valid = self.locked;
        let (_, round, step) = last.position();
        self.round = round;
        self.flags = RoundFlags::default();
        match last {
            SignedMessage::Proposal(p) => {
                self.step = Step::Propose;
                self.verdicts.insert(p.proposal.block_hash, Verdict::Valid);
                self.proposals.insert(round, p.clone());
                out.push(Action::BroadcastProposal(p));
                self.schedule(TimeoutKind::Propose, out);
            }
            SignedMessage::Vote(v) => {
                self.step = if step == SignStep::Prevote { Step::Prevote } else { Step::Precommit };
                self.count_vote(v.clone(), out);
                out.push(Action::BroadcastVote(v));
            }
        }
    }

    fn my_key(&self) -> Option<&Keypair> {
        self.key.as_ref().filter(|k| self.validators.index_of(&k.public()).is_some())
    }

    fn schedule(&self, kind: TimeoutKind, out: &mut Vec<Action>) {
        out.push(Action::ScheduleTimeout(Timeout { height: self.height, round: self.round, kind }));
    }

    /// L11-L21.
    fn start_round(&mut self, round: Round, out: &mut Vec<Action>) {
        self.round = round; // L12
        self.step = Step::Propose; // L13
        self.flags = RoundFlags::default();
        let proposer = self.validators.proposer(self.height, round).public_key;
        if let Some(key) = self.my_key()
            && key.public() == proposer
        {
            // L14
            match self.valid {
                // L15-L16: re-propose validValue with its round.
                Some(v) => self.propose(v.block_hash, Some(v.round), out),
                // L18: getValue() is the shell's job.
                None => {
                    self.flags.awaiting_value = true;
                    out.push(Action::BuildBlock { height: self.height, round });
                }
            }
        }
        // L21. The proposer schedules it too (as CometBFT does), so a shell that never builds a block
        // cannot stall this node in the propose step.
        self.schedule(TimeoutKind::Propose, out);
    }

    /// L19: sign and broadcast a proposal, then treat it as received.
    fn propose(&mut self, block_hash: Hash, pol_round: Option<Round>, out: &mut Vec<Action>) {
        let Some(key) = self.my_key().cloned() else {
            return;
        };
        if self.guard != GuardMode::Active {
            return;
        }
        let proposal =
            Proposal { height: self.height, round: self.round, pol_round, block_hash, proposer: key.public() };
        let signed = match self.signer.sign_proposal(&self.chain_id, &key, proposal) {
            Signing::Fresh(p) => {
                self.note_signed(SignedMessage::Proposal(p.clone()));
                out.push(Action::PersistSignerState(self.signer.clone()));
                p
            }
            Signing::Repeat(p) => p,
            Signing::Refused => return,
        };
        out.push(Action::BroadcastProposal(signed.clone()));
        // We built (or already validated) this block.
        self.verdicts.insert(block_hash, Verdict::Valid);
        self.proposals.insert(self.round, signed);
    }

    /// Sign, persist, broadcast and count our own vote for the current round. A full node, or a refusal
    /// by the guard, casts nothing; the step still advances.
    fn cast_vote(&mut self, kind: VoteKind, block_hash: Option<Hash>, out: &mut Vec<Action>) {
        let Some(key) = self.my_key().cloned() else {
            return;
        };
        if self.guard != GuardMode::Active {
            return;
        }
        let vote = Vote { kind, height: self.height, round: self.round, block_hash, validator: key.public() };
        let signed = match self.signer.sign_vote(&self.chain_id, &key, vote) {
            Signing::Fresh(v) => {
                self.note_signed(SignedMessage::Vote(v.clone()));
                out.push(Action::PersistSignerState(self.signer.clone()));
                v
            }
            Signing::Repeat(v) => v,
            Signing::Refused => return,
        };
        out.push(Action::BroadcastVote(signed.clone()));
        self.count_vote(signed, out);
    }

    fn on_proposal(&mut self, signed: SignedProposal, out: &mut Vec<Action>) -> Result<(), ConsensusError> {
        let p = &signed.proposal;
        self.check_height(p.height)?;
        self.check_round(p.round)?;
        if self.decision.is_some() {
            // The height is decided: proposals no longer matter.
            return Ok(());
        }
        let expected = self.validators.proposer(p.height, p.round).public_key;
        if p.proposer != expected {
            return Err(ConsensusError::WrongProposer { round: p.round, expected, got: p.proposer });
        }
        if let Some(pol_round) = p.pol_round
            && pol_round >= p.round
        {
            return Err(ConsensusError::PolRoundNotBelowRound { round: p.round, pol_round });
        }
        if let Some(first) = self.proposals.get(&p.round) {
            if *first == signed {
                return Ok(());
            }
            signed.verify(&self.chain_id, &self.validators)?;
            if self.double_proposals.insert(p.round) {
                out.push(Action::Evidence(Evidence::DoubleProposal { first: first.clone(), second: signed }));
            }
            return Ok(());
        }
        signed.verify(&self.chain_id, &self.validators)?;
        if self.is_my_key(&p.proposer) {
            self.check_own(&SignedMessage::Proposal(signed.clone()), out);
        }
        let p = &signed.proposal;
        let (round, block_hash) = (p.round, p.block_hash);
        if let Some(index) = self.validators.index_of(&p.proposer).and_then(|i| u16::try_from(i).ok()) {
            self.saw_round(index, round);
        }
        self.proposals.insert(round, signed);
        if let std::collections::btree_map::Entry::Vacant(e) = self.verdicts.entry(block_hash) {
            e.insert(Verdict::Pending);
            out.push(Action::ValidateBlock { height: self.height, round, block_hash });
        }
        Ok(())
    }

    fn on_vote(&mut self, vote: SignedVote, out: &mut Vec<Action>) -> Result<(), ConsensusError> {
        let v = &vote.vote;
        if let Some(prev) = self.previous.as_mut()
            && v.height == prev.height
        {
            // Late precommit for the last decided height: only useful to complete its certificate.
            if v.kind != VoteKind::Precommit || v.round != prev.round || v.block_hash != Some(prev.block_hash) {
                return Ok(());
            }
            vote.verify(&self.chain_id, &prev.validators)?;
            if let Some(index) = prev.validators.index_of(&v.validator).and_then(|i| u16::try_from(i).ok()) {
                prev.signatures.insert(index, vote.signature);
            }
            return Ok(());
        }
        self.check_height(v.height)?;
        self.check_round(v.round)?;
        if self.decision.is_some() && v.kind == VoteKind::Prevote {
            // After the decision only precommits matter (for the certificate).
            return Ok(());
        }
        let outcome = self.keeper.add(&self.chain_id, &self.validators, vote.clone())?;
        // Verified by the keeper (a forged vote never gets here), so it may be judged.
        if self.is_my_key(&vote.vote.validator) {
            self.check_own(&SignedMessage::Vote(vote.clone()), out);
        }
        self.after_add(&vote, outcome, out);
        Ok(())
    }

    fn is_my_key(&self, key: &PublicKey) -> bool {
        self.my_key().is_some_and(|k| k.public() == *key)
    }

    fn note_signed(&mut self, message: SignedMessage) {
        let position = message.position();
        self.first_fresh.get_or_insert(position);
        self.signed_here.insert(position, message);
    }

    /// A verified message signed with this validator's key arrived from the network. Either this process
    /// signed it, or it may be from before a restart (at or below the handed-over signer state, or below
    /// what this process first signed), or another process signs with this key. See [`GuardMode`].
    fn check_own(&mut self, message: &SignedMessage, out: &mut Vec<Action>) {
        let position = message.position();
        if self.guard == GuardMode::Halted {
            return;
        }
        match self.signed_here.get(&position) {
            Some(mine) if mine == message => return,
            // A different message at a position this process signed: only another process can have made it.
            Some(_) => return self.foreign(position, true, out),
            None => {}
        }
        if self.signer.last_signed() == Some(message) {
            return;
        }
        if self.start_position.is_some_and(|start| position <= start) {
            return; // signed before the restart, and covered by the state handed over
        }
        match self.guard {
            GuardMode::Halted => {}
            GuardMode::Active if self.first_fresh.is_some_and(|first| position >= first) => {
                self.foreign(position, true, out)
            }
            // Below what this process first signed: possibly its own from before a restart that lost the
            // signer state; it does not conflict with anything signed here.
            GuardMode::Active if self.first_fresh.is_some() => {}
            GuardMode::Active | GuardMode::Watching => {
                self.guard = GuardMode::Suspect { since: position.0, quiet_heights: 0 };
                self.foreign(position, false, out);
            }
            GuardMode::Suspect { since, .. } if position.0 > since => self.foreign(position, true, out),
            GuardMode::Suspect { .. } => {}
        }
    }

    fn foreign(&mut self, position: (Height, Round, SignStep), halt: bool, out: &mut Vec<Action>) {
        let (height, round, step) = position;
        let was_halted = self.guard == GuardMode::Halted;
        if halt {
            self.guard = GuardMode::Halted;
        }
        if self.signer.raise_floor(height) {
            out.push(Action::PersistSignerState(self.signer.clone()));
        }
        if was_halted {
            return; // reported once
        }
        out.push(Action::ForeignSignature { height, round, step, halted: halt });
    }

    /// Count a vote we signed ourselves (already trusted, but the keeper checks it like any other).
    fn count_vote(&mut self, vote: SignedVote, out: &mut Vec<Action>) {
        if let Ok(outcome) = self.keeper.add(&self.chain_id, &self.validators, vote.clone()) {
            self.after_add(&vote, outcome, out);
        }
    }

    fn after_add(&mut self, vote: &SignedVote, outcome: AddOutcome, out: &mut Vec<Action>) {
        match outcome {
            AddOutcome::Counted(_) => {
                if let Some(index) = self.validators.index_of(&vote.vote.validator).and_then(|i| u16::try_from(i).ok())
                {
                    self.saw_round(index, vote.vote.round);
                }
            }
            AddOutcome::Duplicate => {}
            AddOutcome::Equivocation { evidence, .. } => {
                if let Some(pair) = evidence {
                    let (first, second) = *pair;
                    out.push(Action::Evidence(Evidence::DoubleVote { first, second }));
                }
            }
        }
    }

    fn saw_round(&mut self, index: u16, round: Round) {
        let entry = self.highest_round.entry(index).or_insert(round);
        if round > *entry {
            *entry = round;
        }
    }

    /// L57-L67. Stale timeouts (other height, round or step) are ignored.
    fn on_timeout(&mut self, t: Timeout, out: &mut Vec<Action>) {
        if t.height != self.height || t.round != self.round || self.decision.is_some() {
            return;
        }
        match t.kind {
            // L57-L60
            TimeoutKind::Propose if self.step == Step::Propose => {
                self.flags.awaiting_value = false;
                self.cast_vote(VoteKind::Prevote, None, out);
                self.step = Step::Prevote;
            }
            // L61-L64
            TimeoutKind::Prevote if self.step == Step::Prevote => {
                self.cast_vote(VoteKind::Precommit, None, out);
                self.step = Step::Precommit;
            }
            // L65-L67
            TimeoutKind::Precommit => self.start_round(self.round.next(), out),
            _ => {}
        }
    }

    /// Fire the upon-rules until none applies. Each firing moves the state forward (a step, a round, a
    /// flag, a decision), so this terminates; the cap only guards against a bug turning into a hang.
    fn run_rules(&mut self, out: &mut Vec<Action>) {
        if !self.started {
            return;
        }
        for _ in 0..RULE_FIRINGS_MAX {
            if !self.fire_one_rule(out) {
                break;
            }
        }
        self.request_missing_proposals(out);
    }

    fn verdict(&self, block_hash: Hash) -> Option<bool> {
        match self.verdicts.get(&block_hash) {
            Some(Verdict::Valid) => Some(true),
            Some(Verdict::Invalid) => Some(false),
            Some(Verdict::Pending) | None => None,
        }
    }

    fn lock_ignored(&self) -> bool {
        #[cfg(any(test, feature = "broken-lock"))]
        {
            self.ignore_lock
        }
        #[cfg(not(any(test, feature = "broken-lock")))]
        {
            false
        }
    }

    /// L23: lockedRound = -1 or lockedValue = v.
    fn lock_allows(&self, v: Hash) -> bool {
        self.lock_ignored() || self.locked.is_none_or(|l| l.block_hash == v)
    }

    /// L29: lockedRound <= vr or lockedValue = v.
    fn lock_allows_pol(&self, v: Hash, vr: Round) -> bool {
        self.lock_ignored() || self.locked.is_none_or(|l| l.round <= vr || l.block_hash == v)
    }

    fn fire_one_rule(&mut self, out: &mut Vec<Action>) -> bool {
        if self.decision.is_some() {
            return false;
        }
        // L49-L54: decide in any round.
        for r in self.keeper.precommit_rounds() {
            if let Some(v) = self.keeper.quorum_value(&self.validators, r, VoteKind::Precommit)
                && self.verdict(v) == Some(true)
                && let Some(certificate) = self.keeper.commit_certificate(&self.validators, r, v)
            {
                self.decision = Some(Decision { round: r, block_hash: v });
                out.push(Action::Decide { height: self.height, round: r, block_hash: v, certificate });
                return true;
            }
        }
        // L55-L56
        if let Some(r) = self.round_to_skip_to() {
            self.start_round(r, out);
            return true;
        }
        let r = self.round;
        let set = &self.validators;
        if self.step == Step::Propose
            && let Some(p) = self.proposals.get(&r).map(|p| p.proposal.clone())
            && let Some(valid) = self.verdict(p.block_hash)
        {
            let v = p.block_hash;
            match p.pol_round {
                // L22-L27
                None => {
                    let vote = (valid && self.lock_allows(v)).then_some(v);
                    self.cast_vote(VoteKind::Prevote, vote, out);
                    self.step = Step::Prevote;
                    return true;
                }
                // L28-L33
                Some(vr) if vr < r && self.keeper.quorum_value(set, vr, VoteKind::Prevote) == Some(v) => {
                    let vote = (valid && self.lock_allows_pol(v, vr)).then_some(v);
                    self.cast_vote(VoteKind::Prevote, vote, out);
                    self.step = Step::Prevote;
                    return true;
                }
                Some(_) => {}
            }
        }
        // L34-L35
        if self.step == Step::Prevote
            && !self.flags.prevote_timeout_scheduled
            && self.keeper.has_any_quorum(set, r, VoteKind::Prevote)
        {
            self.flags.prevote_timeout_scheduled = true;
            self.schedule(TimeoutKind::Prevote, out);
            return true;
        }
        // L36-L43
        if self.step >= Step::Prevote
            && !self.flags.polka_value_seen
            && let Some(v) = self.keeper.quorum_value(set, r, VoteKind::Prevote)
            && self.proposals.get(&r).is_some_and(|p| p.proposal.block_hash == v)
            && self.verdict(v) == Some(true)
        {
            self.flags.polka_value_seen = true;
            if self.step == Step::Prevote {
                let lock = Lock { round: r, block_hash: v };
                self.locked = Some(lock); // L38-L39
                self.signer.set_lock(self.height, lock);
                self.cast_vote(VoteKind::Precommit, Some(v), out); // L40
                self.step = Step::Precommit; // L41
            }
            self.valid = Some(Lock { round: r, block_hash: v }); // L42-L43
            return true;
        }
        // L44-L46
        if self.step == Step::Prevote && self.keeper.has_nil_quorum(set, r, VoteKind::Prevote) {
            self.cast_vote(VoteKind::Precommit, None, out);
            self.step = Step::Precommit;
            return true;
        }
        // L47-L48
        if !self.flags.precommit_timeout_scheduled && self.keeper.has_any_quorum(set, r, VoteKind::Precommit) {
            self.flags.precommit_timeout_scheduled = true;
            self.schedule(TimeoutKind::Precommit, out);
            return true;
        }
        false
    }

    /// L55: the largest round r > round_p such that validators whose latest message is at round >= r hold
    /// more than 1/3 of the power. The paper asks for f+1 messages of the same round r; counting "at r or
    /// above" also guarantees an honest validator reached r, and catches up in one jump.
    fn round_to_skip_to(&self) -> Option<Round> {
        let mut ahead: Vec<(Round, u64)> = self
            .highest_round
            .iter()
            .filter(|(_, r)| **r > self.round)
            .filter_map(|(i, r)| self.validators.get(usize::from(*i)).map(|v| (*r, v.power)))
            .collect();
        ahead.sort_by_key(|a| std::cmp::Reverse(a.0));
        let mut power: u64 = 0;
        for (round, p) in ahead {
            power = power.saturating_add(p);
            if self.validators.is_one_third(power) {
                return Some(round);
            }
        }
        None
    }

    /// RequestProposal when 2f+1 precommits (any round) or 2f+1 prevotes (current round) are for a block
    /// whose proposal we do not hold. Once per (round, block).
    fn request_missing_proposals(&mut self, out: &mut Vec<Action>) {
        if self.decision.is_some() {
            return;
        }
        let mut wanted: Vec<(Round, Hash)> = self
            .keeper
            .precommit_rounds()
            .into_iter()
            .filter_map(|r| self.keeper.quorum_value(&self.validators, r, VoteKind::Precommit).map(|v| (r, v)))
            .filter(|(_, v)| !self.verdicts.contains_key(v))
            .collect();
        if let Some(v) = self.keeper.quorum_value(&self.validators, self.round, VoteKind::Prevote)
            && self.proposals.get(&self.round).is_none_or(|p| p.proposal.block_hash != v)
        {
            wanted.push((self.round, v));
        }
        for (round, block_hash) in wanted {
            if self.requested.insert((round, block_hash)) {
                out.push(Action::RequestProposal { height: self.height, round, block_hash });
            }
        }
    }
}
