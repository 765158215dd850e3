//! Search routes (Part B §2.11, A2): messages of the caller's channels, of one channel, and
//! word suggestions.
//!
//! Query parameters: `q` (≤ 256 bytes; plain words, each must match, the last also as a
//! prefix; `syntax=true` for tantivy query syntax), `channelId`, the author as `authorId` (or
//! `userId` for a bearer caller; on a channel's search `user_id` too, as the Server API spells
//! it), `fromDate`/`toDate` (or `from`/`to`: ISO 8601, a date, or milliseconds), `limit`
//! (1..100, 20), `offset`.

use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chatsdk_actors::chat::{SearchPage, SearchQuery};
use chatsdk_actors::render::Iso;
use chatsdk_actors::Caller;

use crate::auth::extract::Auth;
use crate::body::Query;
use crate::error::{ApiResult, AppError};
use crate::state::GatewayState;

chatsdk_actors::dialect_views! {
    scope: search;
    records: chatsdk_actors::render;
    types {
        /// One hit.
        pub struct ResultView<'a> {
            pub message_id: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            pub channel_id: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            pub channel_name: Option<String>,
            pub user_id: &'a str,
            pub user_name: Option<String>,
            pub text: &'a str,
            pub highlighted_text: &'a str,
            pub seq: u64,
            pub created_at: Iso,
        }

        /// A page of hits.
        pub struct Results<'a> {
            pub results: Vec<ResultView<'a>>,
            pub query: &'a str,
            pub total_hits: usize,
            pub processing_time_ms: u64,
            pub offset: usize,
            pub limit: usize,
            pub has_more: bool,
        }

        /// `GET /api/search/suggestions`.
        pub struct Suggestions {
            pub suggestions: Vec<String>,
        }
    }
}

/// A time parameter: ISO 8601, a date (`2026-12-04`, the day's start), or milliseconds.
fn time_param(name: &str, v: Option<String>) -> ApiResult<Option<u64>> {
    let Some(v) = v else { return Ok(None) };
    if let Ok(ms) = v.parse::<u64>() {
        return Ok(Some(ms));
    }
    let iso = if v.len() == 10 {
        format!("{v}T00:00:00Z")
    } else {
        v
    };
    chatsdk_actors::time::parse_iso(&iso)
        .map(Some)
        .ok_or_else(|| AppError::bad(format!("{name} must be an ISO-8601 date, or milliseconds")))
}

/// The query common to the routes; `author_keys` are the parameters that name the author.
fn query(q: &Query, author_keys: &[&str]) -> ApiResult<SearchQuery> {
    let text = q.str("q").unwrap_or_default();
    let limit = q.num("limit", 20, 100)?.max(1) as usize;
    let syntax = matches!(q.str("syntax").as_deref(), Some("true" | "1"));
    Ok(SearchQuery {
        text,
        syntax,
        prefix_last: true,
        channel: q.str("channelId"),
        user: author_keys.iter().find_map(|k| q.str(k)),
        from: time_param("fromDate", q.str("fromDate").or_else(|| q.str("from")))?,
        to: time_param("toDate", q.str("toDate").or_else(|| q.str("to")))?,
        limit,
        offset: q.num("offset", 0, 1_000)? as usize,
    })
}

fn filtered(s: &SearchQuery) -> bool {
    s.user.is_some() || s.from.is_some() || s.to.is_some()
}

async fn answer(
    state: &GatewayState,
    auth: &Auth,
    caller: &Caller,
    s: SearchQuery,
    with_channel: bool,
) -> ApiResult<Response> {
    let started = Instant::now();
    let (text, offset, limit) = (s.text.clone(), s.offset, s.limit);
    let page = if text.trim().is_empty() && !filtered(&s) {
        SearchPage::default()
    } else {
        state.chat.search(caller, s).await?
    };
    let dir = state.chat.directory();
    let user_name = |id: &str| {
        dir.user(&caller.app, id)
            .ok()
            .flatten()
            .map(|u| u.name.clone())
    };
    let channel_name = |id: &str| {
        dir.channel(&caller.app, id)
            .ok()
            .flatten()
            .and_then(|c| c.name.clone())
    };
    let ms = started.elapsed().as_millis() as u64;
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::Results {
        results: page
            .hits
            .iter()
            .map(|(channel, h)| v::ResultView {
                message_id: &h.id,
                channel_id: with_channel.then_some(channel.as_str()),
                channel_name: if with_channel { channel_name(channel) } else { None },
                user_id: &h.user,
                user_name: user_name(&h.user),
                text: &h.text,
                highlighted_text: &h.highlighted,
                seq: h.seq,
                created_at: Iso(h.at),
            })
            .collect(),
        query: &text,
        total_hits: page.total,
        processing_time_ms: ms,
        offset,
        limit,
        has_more: offset + page.hits.len() < page.total,
    }))
}

/// `GET /api/search`.
pub async fn search(
    State(state): State<GatewayState>,
    auth: Auth,
    q: Query,
) -> ApiResult<Response> {
    auth.require_scope("search:read")?;
    // A bearer caller's `userId` names an author; a server key names its acting user with it.
    let (acting, authors): (Option<String>, &[&str]) = if auth.user.is_some() {
        (None, &["authorId", "userId"])
    } else {
        (q.str("userId"), &["authorId"])
    };
    let caller = auth.caller(acting);
    let s = query(&q, authors)?;
    if s.channel.is_none() && caller.user.is_none() {
        return Err(AppError::bad(
            "user_id (whose channels to search) or channel_id is required",
        ));
    }
    answer(&state, &auth, &caller, s, true).await
}

/// `GET /api/channels/:id/search`.
pub async fn channel(
    State(state): State<GatewayState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    auth.require_scope("search:read")?;
    let caller = auth.caller(None);
    let mut s = query(&q, &["authorId", "userId"])?;
    s.channel = Some(id);
    answer(&state, &auth, &caller, s, false).await
}

/// `GET /api/search/suggestions?q(≥2)&channelId`: up to five words of the caller's messages
/// that start with the last word of `q`, most frequent first.
pub async fn suggestions(
    State(state): State<GatewayState>,
    auth: Auth,
    q: Query,
) -> ApiResult<Response> {
    auth.require_scope("search:read")?;
    let text = q.str("q").unwrap_or_default();
    let caller = auth.caller(if auth.user.is_some() {
        None
    } else {
        q.str("userId")
    });
    if text.chars().count() < 2 {
        return Ok(
            reply!(auth.dialect, StatusCode::OK, v => v::Suggestions { suggestions: vec![] }),
        );
    }
    if caller.user.is_none() && q.str("channelId").is_none() {
        return Err(AppError::bad("user_id or channel_id is required"));
    }
    let prefix = text
        .split_whitespace()
        .last()
        .unwrap_or_default()
        .to_lowercase();
    let s = SearchQuery {
        text: text.clone(),
        prefix_last: true,
        channel: q.str("channelId"),
        limit: 50,
        ..SearchQuery::default()
    };
    let page = state.chat.search(&caller, s).await?;
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for (_, h) in &page.hits {
        for word in h
            .text
            .split(|c: char| !c.is_alphanumeric())
            .map(str::to_lowercase)
            .filter(|w| w.starts_with(&prefix))
        {
            *counts.entry(word).or_default() += 1;
        }
    }
    let mut words: Vec<(String, usize)> = counts.into_iter().collect();
    words.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(reply!(auth.dialect, StatusCode::OK, v => v::Suggestions {
        suggestions: words.into_iter().take(5).map(|(w, _)| w).collect(),
    }))
}
