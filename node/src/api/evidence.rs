//! `GET /evidence`: committed equivocation evidence, newest first, in pages (from the storage index kept
//! with each block, see `Storage::evidence_page`).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use ledger_core::{Height, encoding};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorView};
use super::handlers::query;
use super::state::ApiState;

/// The cursor pattern: `HEIGHT:INDEX`.
pub(crate) const CURSOR_PATTERN: &str = "^[0-9]{1,19}:[0-9]{1,5}$";

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EvidenceQuery {
    /// Only evidence strictly before this position (`HEIGHT:INDEX`, the `next` of the previous page).
    #[param(pattern = "^[0-9]{1,19}:[0-9]{1,5}$")]
    pub before: Option<String>,
    /// Page size (default 20, at most 100).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<usize>,
}

/// One committed piece of equivocation evidence: two different votes signed by one validator for one
/// (height, round, kind).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EvidenceView {
    /// The block that carries it.
    pub block_height: u64,
    /// Its position in that block's evidence list.
    pub index: u16,
    /// Evidence id (blake3, domain EvidenceId, of its canonical bytes).
    pub id: String,
    /// The validator that signed both votes.
    pub validator: String,
    /// The slot it equivocated in.
    pub height: u64,
    pub round: u32,
    /// `prevote` or `precommit`.
    pub kind: String,
    /// The block hashes of the two votes (null: a vote for nil).
    pub first_block_hash: Option<String>,
    pub second_block_hash: Option<String>,
    /// The first height of the set without this validator (it is jailed two blocks after the evidence).
    pub jailed_from_height: u64,
    /// Both signed votes, decoded.
    #[schema(value_type = Object)]
    pub evidence: serde_json::Value,
    /// The same, canonical borsh bytes (hex): anyone can check both signatures.
    pub evidence_hex: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EvidencePage {
    /// Newest first.
    pub evidence: Vec<EvidenceView>,
    /// Pass as `before` for the next (older) page; null when there is none.
    pub next: Option<String>,
}

fn parse_cursor(s: &str) -> Result<(Height, u16), ApiError> {
    let bad = || {
        ApiError::bad_request("bad_query", format!("before must be HEIGHT:INDEX (pattern {CURSOR_PATTERN}), not {s:?}"))
    };
    let (h, i) = s.split_once(':').ok_or_else(bad)?;
    let digits = |x: &str, max: usize| !x.is_empty() && x.len() <= max && x.bytes().all(|b| b.is_ascii_digit());
    if !digits(h, 19) || !digits(i, 5) {
        return Err(bad());
    }
    let h: u64 = h.parse().map_err(|_| bad())?;
    // Nineteen digits always fit a u64; an index above the largest possible one means "before all of that
    // height's evidence", which (h, u16::MAX) means too (a block carries at most EVIDENCE_PER_BLOCK_MAX).
    let i: u32 = i.parse().map_err(|_| bad())?;
    Ok((Height(h), u16::try_from(i).unwrap_or(u16::MAX)))
}

#[utoipa::path(get, path = "/evidence", tag = "governance", params(EvidenceQuery),
    responses((status = 200, description = "Committed equivocation evidence, newest first", body = EvidencePage),
              (status = 400, description = "Bad query", body = ErrorView)))]
pub async fn evidence(
    State(s): State<ApiState>,
    q: Result<Query<EvidenceQuery>, QueryRejection>,
) -> Result<Json<EvidencePage>, ApiError> {
    let q = query(q)?;
    let limit = super::handlers::page_limit(&s, q.limit)?;
    let before = q.before.as_deref().map(parse_cursor).transpose()?;
    let rows = s.read(move |st| st.evidence_page(before, limit.saturating_add(1))).await?;
    let more = rows.len() > limit;
    let evidence: Vec<EvidenceView> = rows.into_iter().take(limit).map(view).collect();
    let next = more.then(|| evidence.last().map(|e| format!("{}:{}", e.block_height, e.index))).flatten();
    Ok(Json(EvidencePage { evidence, next }))
}

fn view(c: crate::storage::CommittedEvidence) -> EvidenceView {
    let e = &c.evidence;
    let key = e.key();
    let kind = match key.kind {
        ledger_core::vote::VoteKind::Prevote => "prevote",
        ledger_core::vote::VoteKind::Precommit => "precommit",
    };
    EvidenceView {
        block_height: c.height.0,
        index: c.index,
        id: e.id().to_hex(),
        validator: key.validator.to_address_string(),
        height: key.height.0,
        round: key.round.0,
        kind: kind.into(),
        first_block_hash: e.first.vote.block_hash.map(|h| h.to_hex()),
        second_block_hash: e.second.vote.block_hash.map(|h| h.to_hex()),
        jailed_from_height: c.height.0.saturating_add(2),
        evidence: serde_json::to_value(e).unwrap_or(serde_json::Value::Null),
        evidence_hex: hex::encode(encoding::encode(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_parses_exactly_its_pattern() {
        assert_eq!(parse_cursor("12:3").unwrap(), (Height(12), 3));
        assert_eq!(parse_cursor("0:66603").unwrap(), (Height(0), u16::MAX), "what the pattern allows is accepted");
        assert_eq!(parse_cursor("9999999999999999999:99999").unwrap(), (Height(9_999_999_999_999_999_999), u16::MAX));
        for bad in ["", "12", ":3", "12:", "a:1", "1:700000", "99999999999999999999:1", "1:2:3", "-1:2", " 1:2"] {
            assert!(parse_cursor(bad).is_err(), "{bad:?}");
        }
    }
}
