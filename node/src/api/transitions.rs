//! `GET /validators/transitions`: every change of the validator set since genesis, with what a light client
//! needs to follow it from the genesis set alone.
//!
//! A set that is first in force at height `a` is named by the header at `a - 1` (`next_validators_hash`),
//! and that header is certified by the set in force at `a - 1`, the previous one. So a client that trusts
//! the set before a transition checks the certificate of header `a - 1` with it, checks that the header
//! names it (`validators_hash`), and takes the set whose canonical bytes hash to the header's
//! `next_validators_hash` (the wallet's `verify` does exactly that). The answer carries canonical bytes for
//! all three (set, header, certificate); the decoded members are for reading only.
//!
//! This route reads storage only (`Storage::validator_sets`, every set by its first height, and the header
//! and certificate at the height before); it is not consensus. Pages are bounded by
//! [`TRANSITIONS_PAGE_MAX`]: a transition is at most about 140 kB of JSON (a full set of 256 validators
//! with 64-byte monikers and a certificate with 256 signatures, in hex, plus the decoded members).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use ledger_core::{Height, encoding};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorView};
use super::handlers::{ApiResult, query};
use super::state::ApiState;
use super::views::SetMemberView;
use crate::storage::StorageError;

/// Most transitions in one answer.
pub const TRANSITIONS_PAGE_MAX: usize = 16;
/// Transitions in one answer when `limit` is not given.
pub const TRANSITIONS_PAGE_DEFAULT: usize = 16;
/// `from_height` is at most this (an `int64` in the OpenAPI document).
const FROM_HEIGHT_MAX: u64 = i64::MAX as u64;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TransitionsQuery {
    /// Only sets first in force at this height or later (default 0: every set since genesis).
    #[param(minimum = 0, maximum = 9223372036854775807_i64)]
    pub from_height: Option<u64>,
    /// Page size (default 16, at most 16).
    #[param(minimum = 1, maximum = 16)]
    pub limit: Option<usize>,
}

/// One change of the validator set and its proof from the set before.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SetTransitionView {
    /// The first height the new set certifies (at least 3: a change decided in block `H` applies at `H + 2`).
    pub first_height: u64,
    /// Hash of the new set (blake3, domain `ValidatorSet`, of the bytes of `validators_hex`); the header's
    /// `next_validators_hash`.
    pub validators_hash: String,
    /// Canonical borsh bytes of the new set: its validators in certificate-index order.
    pub validators_hex: String,
    /// The same members, decoded, for reading; a client verifies `validators_hex`.
    pub validators: Vec<SetMemberView>,
    /// Canonical borsh bytes of the header at `first_height - 1`, which names the new set in
    /// `next_validators_hash` and the set before in `validators_hash`.
    pub header_hex: String,
    /// Canonical borsh bytes of the certificate of that header, signed by the set before.
    pub certificate_hex: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SetTransitionsPage {
    /// Oldest first.
    pub transitions: Vec<SetTransitionView>,
    /// Pass as `from_height` for the next page; null when this page holds the last transition.
    pub next_from_height: Option<u64>,
    /// The latest committed height when this page was read (every transition up to `tip_height + 1` is
    /// known).
    pub tip_height: u64,
}

#[utoipa::path(get, path = "/validators/transitions", tag = "node", params(TransitionsQuery),
    responses((status = 200, description = "Changes of the validator set since genesis, oldest first: each new set's canonical bytes with the header before its first height (which names it in next_validators_hash) and that header's certificate, signed by the set before; follow next_from_height to continue", body = SetTransitionsPage),
              (status = 400, description = "`bad_query`: from_height above 2^63 - 1, limit 0 or above 16, or not a number", body = ErrorView)))]
pub async fn validator_transitions(
    State(s): State<ApiState>,
    q: Result<Query<TransitionsQuery>, QueryRejection>,
) -> ApiResult<SetTransitionsPage> {
    let q = query(q)?;
    let from = q.from_height.unwrap_or(0);
    if from > FROM_HEIGHT_MAX {
        return Err(ApiError::bad_request("bad_query", format!("from_height must be at most {FROM_HEIGHT_MAX}")));
    }
    let limit = match q.limit {
        None => TRANSITIONS_PAGE_DEFAULT,
        Some(0) => return Err(ApiError::bad_request("bad_query", "limit must be at least 1")),
        Some(n) if n > TRANSITIONS_PAGE_MAX => {
            return Err(ApiError::bad_request(
                "bad_query",
                format!("limit {n} is above the maximum {TRANSITIONS_PAGE_MAX}"),
            ));
        }
        Some(n) => n,
    };
    let page = s
        .read(move |st| {
            let tip = st.latest_height()?;
            // The genesis set (first height 1) is not a transition: the client has it from the genesis file.
            let sets: Vec<_> =
                st.validator_sets().into_iter().filter(|(first, _)| first.0 > 1 && first.0 >= from).collect();
            let mut transitions = Vec::with_capacity(sets.len().min(limit));
            for (first, set) in sets.iter().take(limit) {
                let before = Height(first.0 - 1);
                let missing = |what: &str| StorageError::Corrupt {
                    what: format!("validator set from height {first}"),
                    detail: format!("the {what} at height {before} is not stored"),
                };
                let header = st.header(before)?.ok_or_else(|| missing("block header"))?;
                let previous = st.validator_set_at(before).ok_or_else(|| missing("validator set"))?;
                let cert = st.certificate(before)?.ok_or_else(|| missing("certificate"))?;
                transitions.push(SetTransitionView {
                    first_height: first.0,
                    validators_hash: set.hash().to_hex(),
                    validators_hex: hex::encode(encoding::encode(set.as_ref())),
                    validators: set
                        .validators()
                        .iter()
                        .map(|v| SetMemberView {
                            address: v.public_key.to_address_string(),
                            voting_power: v.power,
                            share_bps: super::handlers::share_bps(v.power, set.total_power()),
                            status: match previous.power_of(&v.public_key) {
                                None => "joining",
                                Some(p) if p != v.power => "power_change",
                                Some(_) => "staying",
                            }
                            .into(),
                            moniker: v.moniker.clone(),
                        })
                        .collect(),
                    header_hex: hex::encode(encoding::encode(&header)),
                    certificate_hex: hex::encode(encoding::encode(&cert)),
                });
            }
            let next_from_height =
                (sets.len() > limit).then(|| transitions.last().map(|t| t.first_height + 1)).flatten();
            Ok(SetTransitionsPage { transitions, next_from_height, tip_height: tip.0 })
        })
        .await?;
    Ok(Json(page))
}
