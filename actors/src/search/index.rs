//! The node's tantivy index of chat messages: schema, updates and queries.
//!
//! A document per live message: its shard (`group`), stream, `stream\0id` (the key updates
//! replace by), id, author, text, time and seq. The per-shard positions in the feeds the index
//! has taken are stored with each commit (tantivy's commit payload), so they are exactly as
//! durable as the documents they describe.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use chatsdk_cluster::GroupId;
use serde::{Deserialize, Serialize};
use tantivy::collector::{Count, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::query::{
    AllQuery, BooleanQuery, Occur, Query, QueryParser, RangeQuery, RegexQuery, TermQuery,
    TermSetQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, Value, FAST, INDEXED, STORED, STRING, TEXT,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::{Index, IndexReader, IndexWriter, Order, ReloadPolicy, TantivyDocument, Term};

use crate::model::Message;

/// Memory of the node's index writer (tantivy's minimum is 15 MB).
const WRITER_BYTES: usize = 32 << 20;
/// Longest text a highlight covers (messages are at most 10,000 characters).
const MAX_HIGHLIGHT_CHARS: usize = 10_100;

/// Why a search or an index update failed.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The query (in query syntax) does not parse.
    #[error("the query does not parse: {0}")]
    BadQuery(String),
    #[error("search index: {0}")]
    Index(String),
}

impl From<tantivy::TantivyError> for SearchError {
    fn from(e: tantivy::TantivyError) -> Self {
        SearchError::Index(e.to_string())
    }
}

/// A query, as the chat layer sends it to a shard's replica.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SearchRequest {
    /// The streams the caller may read (`chat:<app>:<channel>`): nothing else matches.
    pub streams: Vec<String>,
    /// The user's words (every one must match), or a tantivy query when `syntax`.
    pub text: String,
    pub syntax: bool,
    /// The last word is a prefix (search as you type).
    pub prefix_last: bool,
    /// Only messages of this author.
    pub user: Option<String>,
    /// Sent at or after / at or before (ms).
    pub from: Option<u64>,
    pub to: Option<u64>,
    /// Authors the caller blocks.
    pub exclude_users: Vec<String>,
    /// Best hits wanted (the page's offset plus its size).
    pub limit: usize,
}

/// A matching message.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Hit {
    pub stream: String,
    pub id: String,
    pub user: String,
    pub text: String,
    /// The text, HTML-escaped, with the matched words in `<mark>`.
    pub highlighted: String,
    pub at: u64,
    pub seq: u64,
    pub score: f32,
}

/// Hits and how many messages matched in all.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Found {
    pub hits: Vec<Hit>,
    pub total: usize,
}

#[derive(Clone, Copy)]
struct Fields {
    group: Field,
    stream: Field,
    key: Field,
    id: Field,
    user: Field,
    text: Field,
    at: Field,
    seq: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let f = Fields {
        group: b.add_u64_field("group", INDEXED),
        stream: b.add_text_field("stream", STRING | STORED),
        key: b.add_text_field("key", STRING),
        id: b.add_text_field("id", STORED),
        user: b.add_text_field("user", STRING | STORED),
        text: b.add_text_field("text", TEXT | STORED),
        at: b.add_u64_field("at", INDEXED | FAST | STORED),
        seq: b.add_u64_field("seq", STORED),
    };
    (b.build(), f)
}

/// The node's message index.
pub struct SearchIndex {
    index: Index,
    /// The index's directory, for pruning its map of mapped files (see [`SearchIndex::commit`]).
    files: MmapDirectory,
    reader: IndexReader,
    /// None once closed (the node stopped): the directory's lock is released with it.
    writer: Mutex<Option<IndexWriter<TantivyDocument>>>,
    f: Fields,
    /// Feed positions taken, per shard (as of the last commit, plus what is pending).
    checkpoints: Mutex<BTreeMap<GroupId, u64>>,
}

fn doc_key(stream: &str, id: &str) -> String {
    format!("{stream}\0{id}")
}

impl SearchIndex {
    /// Opens the index in `dir`, or makes a new one there when there is none or it cannot be
    /// read (another schema, damage): an index is rebuilt from the shards, never trusted blindly.
    pub fn open(dir: &Path) -> Result<SearchIndex, SearchError> {
        std::fs::create_dir_all(dir).map_err(|e| SearchError::Index(e.to_string()))?;
        let (schema, f) = schema();
        let open = || -> Result<(Index, MmapDirectory), SearchError> {
            let d = MmapDirectory::open(dir).map_err(|e| SearchError::Index(e.to_string()))?;
            Ok((Index::open_or_create(d.clone(), schema.clone())?, d))
        };
        let (index, files) = match open() {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(error = %e, dir = %dir.display(), "search index unreadable; rebuilding it");
                std::fs::remove_dir_all(dir).map_err(|e| SearchError::Index(e.to_string()))?;
                std::fs::create_dir_all(dir).map_err(|e| SearchError::Index(e.to_string()))?;
                open()?
            }
        };
        let checkpoints = index
            .load_metas()?
            .payload
            .and_then(|p| serde_json::from_str::<BTreeMap<GroupId, u64>>(&p).ok())
            .unwrap_or_default();
        let writer = index.writer_with_num_threads(1, WRITER_BYTES)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(SearchIndex {
            index,
            files,
            reader,
            writer: Mutex::new(Some(writer)),
            f,
            checkpoints: Mutex::new(checkpoints),
        })
    }

    /// Runs `f` on the writer; an error once the index is closed.
    fn with_writer<T>(
        &self,
        f: impl FnOnce(&mut IndexWriter<TantivyDocument>) -> Result<T, SearchError>,
    ) -> Result<T, SearchError> {
        let mut guard = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        match guard.as_mut() {
            Some(w) => f(w),
            None => Err(SearchError::Index("the index is closed".into())),
        }
    }

    /// Closes the index: pending changes are dropped (the feeds have them), merges finish, and
    /// the directory is free for the next start.
    pub fn close(&self) {
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(w) = writer {
            if let Err(e) = w.wait_merging_threads() {
                tracing::warn!(error = %e, "search index merges did not finish");
            }
        }
    }

    fn positions(&self) -> std::sync::MutexGuard<'_, BTreeMap<GroupId, u64>> {
        self.checkpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The feed position taken for `group` (None: the group's part must be built).
    pub fn checkpoint(&self, group: GroupId) -> Option<u64> {
        self.positions().get(&group).copied()
    }

    /// The shards the index has a part of.
    pub fn groups(&self) -> Vec<GroupId> {
        self.positions().keys().copied().collect()
    }

    /// Indexes a message of `stream` (replacing its earlier version); a deleted one is removed.
    pub fn put(&self, group: GroupId, stream: &str, m: &Message) -> Result<(), SearchError> {
        let key = Term::from_field_text(self.f.key, &doc_key(stream, &m.id));
        let Some(text) = m.text.as_deref().filter(|_| m.deleted_at.is_none()) else {
            return self.with_writer(|w| {
                w.delete_term(key);
                Ok(())
            });
        };
        let mut doc = TantivyDocument::default();
        doc.add_u64(self.f.group, u64::from(group));
        doc.add_text(self.f.stream, stream);
        doc.add_text(self.f.key, doc_key(stream, &m.id));
        doc.add_text(self.f.id, &m.id);
        doc.add_text(self.f.user, &m.user_id);
        doc.add_text(self.f.text, text);
        doc.add_u64(self.f.at, m.created_at);
        doc.add_u64(self.f.seq, m.seq);
        self.with_writer(|w| {
            w.delete_term(key);
            w.add_document(doc)?;
            Ok(())
        })
    }

    /// Removes a message.
    pub fn remove(&self, stream: &str, id: &str) -> Result<(), SearchError> {
        let key = Term::from_field_text(self.f.key, &doc_key(stream, id));
        self.with_writer(|w| {
            w.delete_term(key);
            Ok(())
        })
    }

    /// Removes every message of a stream (a dropped channel).
    pub fn remove_stream(&self, stream: &str) -> Result<(), SearchError> {
        let term = Term::from_field_text(self.f.stream, stream);
        self.with_writer(|w| {
            w.delete_term(term);
            Ok(())
        })
    }

    /// Removes a shard's part (the node no longer replicates it, or it is being rebuilt).
    pub fn remove_group(&self, group: GroupId) -> Result<(), SearchError> {
        let term = Term::from_field_u64(self.f.group, u64::from(group));
        self.with_writer(|w| {
            w.delete_term(term);
            Ok(())
        })?;
        self.positions().remove(&group);
        Ok(())
    }

    /// Records that `group`'s feed was taken up to `position` (made durable by the next
    /// commit).
    pub fn advance(&self, group: GroupId, position: u64) {
        self.positions().insert(group, position);
    }

    /// Commits what was put and removed, with the feed positions, and makes it searchable.
    pub fn commit(&self) -> Result<(), SearchError> {
        let payload = serde_json::to_string(&*self.positions())
            .map_err(|e| SearchError::Index(e.to_string()))?;
        self.with_writer(|w| {
            let mut prepared = w.prepare_commit()?;
            prepared.set_payload(&payload);
            prepared.commit()?;
            Ok(())
        })?;
        self.reader.reload()?;
        // tantivy's directory remembers every file it ever mapped (a path and a weak
        // reference) and forgets the dead ones only when asked for its cache's state: without
        // this, each segment written, merged away or rewritten by a delete left an entry for
        // good, about 50 a second at 200 sends/s (heaptrack, 25-minute soak: 74,000 paths and
        // a 2.7 MB table), a steady part of the soak's memory growth.
        let _ = self.files.get_cache_info();
        Ok(())
    }

    /// Refuses a query in query syntax that does not parse.
    pub fn check_syntax(&self, text: &str) -> Result<(), SearchError> {
        QueryParser::for_index(&self.index, vec![self.f.text])
            .parse_query(text)
            .map(|_| ())
            .map_err(|e| SearchError::BadQuery(e.to_string()))
    }

    /// Messages matching `req`, best first (by score for words, newest first otherwise).
    pub fn search(&self, req: &SearchRequest) -> Result<Found, SearchError> {
        if req.streams.is_empty() || req.limit == 0 {
            return Ok(Found::default());
        }
        let f = self.f;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(
            Occur::Must,
            Box::new(TermSetQuery::new(
                req.streams
                    .iter()
                    .map(|s| Term::from_field_text(f.stream, s)),
            )),
        )];
        let mut analyzer = self.index.tokenizer_for_field(f.text)?;
        let mut asked = std::collections::HashSet::new();
        let mut prefix: Option<String> = None;
        let words: Option<Box<dyn Query>> = if req.text.trim().is_empty() {
            None
        } else if req.syntax {
            let parser = QueryParser::for_index(&self.index, vec![f.text]);
            let q = parser
                .parse_query(&req.text)
                .map_err(|e| SearchError::BadQuery(e.to_string()))?;
            Some(q)
        } else {
            let mut tokens = Vec::new();
            let mut stream = analyzer.token_stream(&req.text);
            while let Some(t) = stream.next() {
                tokens.push(t.text.clone());
            }
            drop(stream);
            if tokens.is_empty() {
                // Only punctuation: no word can match.
                return Ok(Found::default());
            }
            if req.prefix_last {
                prefix = tokens.pop();
            }
            let mut musts: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            for t in tokens {
                let term = Term::from_field_text(f.text, &t);
                asked.insert(t);
                musts.push((
                    Occur::Must,
                    Box::new(TermQuery::new(
                        term,
                        IndexRecordOption::WithFreqsAndPositions,
                    )),
                ));
            }
            if let Some(p) = &prefix {
                // Tokens are letters and digits only, so the prefix needs no regex escaping.
                let q = RegexQuery::from_pattern(&format!("{p}.*"), f.text)
                    .map_err(|e| SearchError::BadQuery(e.to_string()))?;
                musts.push((Occur::Must, Box::new(q)));
            }
            Some(Box::new(BooleanQuery::new(musts)))
        };
        if let Some(w) = &words {
            clauses.push((Occur::Must, w.box_clone()));
        }
        if let Some(u) = &req.user {
            clauses.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(f.user, u),
                    IndexRecordOption::Basic,
                )),
            ));
        }
        if req.from.is_some() || req.to.is_some() {
            let bound = |v: Option<u64>| match v {
                Some(v) => Bound::Included(Term::from_field_u64(f.at, v)),
                None => Bound::Unbounded,
            };
            clauses.push((
                Occur::Must,
                Box::new(RangeQuery::new(bound(req.from), bound(req.to))),
            ));
        }
        for u in &req.exclude_users {
            clauses.push((
                Occur::MustNot,
                Box::new(TermQuery::new(
                    Term::from_field_text(f.user, u),
                    IndexRecordOption::Basic,
                )),
            ));
        }
        if words.is_none() && clauses.iter().all(|(o, _)| *o == Occur::MustNot) {
            clauses.push((Occur::Must, Box::new(AllQuery)));
        }
        let query = BooleanQuery::new(clauses);
        let searcher = self.reader.searcher();
        let limit = req.limit.min(10_000);
        let (addresses, total): (Vec<(f32, tantivy::DocAddress)>, usize) = if words.is_some() {
            // By score, then newest first: the order the chat layer merges shards by, so that
            // a page cut inside a run of equal scores is cut the same way every time.
            let by_score_then_time =
                TopDocs::with_limit(limit).tweak_score(|segment: &tantivy::SegmentReader| {
                    let at = segment.fast_fields().u64("at").ok();
                    move |doc: tantivy::DocId, score: tantivy::Score| {
                        (score, at.as_ref().and_then(|c| c.first(doc)).unwrap_or(0))
                    }
                });
            let (hits, total) = searcher.search(&query, &(by_score_then_time, Count))?;
            (hits.into_iter().map(|((s, _), a)| (s, a)).collect(), total)
        } else {
            let (by_time, total) = searcher.search(
                &query,
                &(
                    TopDocs::with_limit(limit).order_by_fast_field::<u64>("at", Order::Desc),
                    Count,
                ),
            )?;
            (by_time.into_iter().map(|(_, a)| (0.0, a)).collect(), total)
        };
        let snippets = match &words {
            Some(w) if req.syntax => {
                let mut g = SnippetGenerator::create(&searcher, w.as_ref(), f.text)?;
                g.set_max_num_chars(MAX_HIGHLIGHT_CHARS);
                Some(g)
            }
            _ => None,
        };
        let mut hits = Vec::with_capacity(addresses.len());
        for (score, address) in addresses {
            let doc: TantivyDocument = searcher.doc(address)?;
            let text_of = |field: Field| {
                doc.get_first(field)
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            };
            let num_of = |field: Field| doc.get_first(field).and_then(|v| v.as_u64()).unwrap_or(0);
            let text = text_of(f.text);
            let highlighted = match &snippets {
                Some(g) => {
                    let mut s = g.snippet(&text);
                    s.set_snippet_prefix_postfix("<mark>", "</mark>");
                    if s.highlighted().is_empty() {
                        escape_html(&text)
                    } else {
                        s.to_html()
                    }
                }
                None => highlight(&mut analyzer, &text, &asked, prefix.as_deref()),
            };
            hits.push(Hit {
                stream: text_of(f.stream),
                id: text_of(f.id),
                user: text_of(f.user),
                highlighted,
                text,
                at: num_of(f.at),
                seq: num_of(f.seq),
                score,
            });
        }
        Ok(Found { hits, total })
    }
}

/// `text`, HTML-escaped, with the words whose tokens are in `asked` in `<mark>`.
fn highlight(
    analyzer: &mut tantivy::tokenizer::TextAnalyzer,
    text: &str,
    asked: &std::collections::HashSet<String>,
    prefix: Option<&str>,
) -> String {
    let mut out = String::with_capacity(text.len() + 32);
    let mut at = 0;
    let mut tokens = analyzer.token_stream(text);
    while let Some(t) = tokens.next() {
        let (from, to) = (t.offset_from, t.offset_to);
        let wanted = asked.contains(&t.text) || prefix.is_some_and(|p| t.text.starts_with(p));
        if !wanted || from < at || to > text.len() {
            continue;
        }
        let (Some(before), Some(word)) = (text.get(at..from), text.get(from..to)) else {
            continue;
        };
        out.push_str(&escape_html(before));
        out.push_str("<mark>");
        out.push_str(&escape_html(word));
        out.push_str("</mark>");
        at = to;
    }
    out.push_str(&escape_html(text.get(at..).unwrap_or_default()));
    out
}

/// Escapes text for HTML.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
