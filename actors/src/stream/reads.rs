//! Reads of what members added to messages (see [`super::annotations`]): a page's annotations
//! as one reader sees them, a message's reactions, the pinned messages, a poll's results, a
//! user's saved messages.

use chatsdk_cluster::StoreError;

use super::annotations::{ReactionRecord, VoteRecord};
use super::StreamReader;
use crate::keys::{self, decode_at, StreamKeys};
use crate::kv::KvRead;
use crate::model::{Annotations, Message, Notes, PollResults, Reactor};

/// A reaction in a message's list: `(emoji, reactor, when)`.
pub type ReactionEntry = (String, Reactor, u64);

/// A user's saved message: `(channel, message, saved at)`.
pub type SavedEntry = (String, String, u64);

impl<R: KvRead> StreamReader<R> {
    /// The annotations of `messages` (those that have any), with `viewer`'s own reactions and
    /// votes: one range read over the page's seqs, and per annotated message one read more
    /// for the viewer.
    pub fn notes(
        &self,
        stream: &str,
        messages: &[Message],
        viewer: Option<&str>,
    ) -> Result<Vec<Notes>, StoreError> {
        let sk = StreamKeys(stream);
        let (Some(lo), Some(hi)) = (
            messages.iter().map(|m| m.seq).min(),
            messages.iter().map(|m| m.seq).max(),
        ) else {
            return Ok(Vec::new());
        };
        let wanted = |seq: u64| messages.iter().any(|m| m.seq == seq);
        let rows = if lo == hi {
            self.reader
                .get(&sk.annotations(lo))?
                .map(|v| vec![(sk.annotations(lo), v)])
                .unwrap_or_default()
        } else {
            self.reader.range(
                &sk.annotations(lo),
                &sk.annotations(hi + 1),
                false,
                (hi - lo + 1) as usize,
            )?
        };
        let mut out = Vec::new();
        for (k, v) in rows {
            let Some(seq) = keys::trailing_u64(&k).filter(|s| wanted(*s)) else {
                continue;
            };
            let annotations: Annotations = decode_at(&k, &v)?;
            out.push(self.viewed(&sk, seq, annotations, viewer)?);
        }
        let previews = self.reader.range(
            &sk.link_previews(lo),
            &sk.link_previews(hi + 1),
            false,
            (hi - lo + 1) as usize,
        )?;
        for (k, v) in previews {
            let Some(seq) = keys::trailing_u64(&k).filter(|s| wanted(*s)) else {
                continue;
            };
            let list: Vec<crate::previews::LinkPreview> = decode_at(&k, &v)?;
            match out.iter_mut().find(|n| n.seq == seq) {
                Some(n) => n.link_previews = list,
                None => out.push(Notes {
                    seq,
                    annotations: Annotations::default(),
                    own_reactions: Vec::new(),
                    own_votes: Vec::new(),
                    link_previews: list,
                }),
            }
        }
        Ok(out)
    }

    /// `annotations` with `viewer`'s own reactions and votes.
    fn viewed(
        &self,
        sk: &StreamKeys<'_>,
        seq: u64,
        annotations: Annotations,
        viewer: Option<&str>,
    ) -> Result<Notes, StoreError> {
        let mut notes = Notes {
            seq,
            link_previews: Vec::new(),
            own_reactions: Vec::new(),
            own_votes: Vec::new(),
            annotations,
        };
        let Some(viewer) = viewer else {
            return Ok(notes);
        };
        if !notes.annotations.reactions.is_empty() {
            for (k, _) in self.reader.scan_prefix(&sk.user_reactions(seq, viewer))? {
                notes
                    .own_reactions
                    .push(String::from_utf8_lossy(keys::last_component(&k)).into_owned());
            }
        }
        if notes.annotations.poll.is_some() {
            let key = sk.vote(seq, viewer);
            if let Some(v) = self.reader.get(&key)? {
                notes.own_votes = decode_at::<VoteRecord>(&key, &v)?.options;
            }
        }
        Ok(notes)
    }

    /// One message's notes as `viewer` sees them.
    pub fn message_notes(
        &self,
        stream: &str,
        message: &Message,
        viewer: Option<&str>,
    ) -> Result<Notes, StoreError> {
        Ok(self
            .notes(stream, std::slice::from_ref(message), viewer)?
            .pop()
            .unwrap_or(Notes {
                seq: message.seq,
                ..Notes::default()
            }))
    }

    /// Every reaction to message `id`, oldest first (`None`: no such message).
    pub fn reactions(
        &self,
        stream: &str,
        id: &str,
    ) -> Result<Option<Vec<ReactionEntry>>, StoreError> {
        let sk = StreamKeys(stream);
        let Some(m) = self.find(&sk, id)? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for (k, v) in self.reader.scan_prefix(&sk.reactions(m.seq))? {
            let r: ReactionRecord = decode_at(&k, &v)?;
            let emoji = String::from_utf8_lossy(keys::last_component(&k)).into_owned();
            out.push((emoji, r.user, r.at));
        }
        out.sort_by_key(|(_, _, at)| *at);
        Ok(Some(out))
    }

    /// The pinned messages, in message order.
    pub fn pinned(&self, stream: &str) -> Result<Vec<Message>, StoreError> {
        let sk = StreamKeys(stream);
        let mut out = Vec::new();
        for (k, _) in self.reader.scan_prefix(&sk.all_pinned())? {
            if let Some(m) = keys::trailing_u64(&k)
                .map(|seq| self.message_at(&sk, seq))
                .transpose()?
                .flatten()
            {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// A poll and its votes (`None`: no such poll in this stream).
    pub fn poll(&self, stream: &str, poll_id: &str) -> Result<Option<PollResults>, StoreError> {
        let sk = StreamKeys(stream);
        let key = sk.poll(poll_id);
        let Some(raw) = self.reader.get(&key)? else {
            return Ok(None);
        };
        let seq = super::index_seq(&key, &raw)?;
        let ann_key = sk.annotations(seq);
        let Some(ann) = self.reader.get(&ann_key)? else {
            return Ok(None);
        };
        let ann: Annotations = decode_at(&ann_key, &ann)?;
        let Some(poll) = ann.poll.filter(|p| p.id == poll_id) else {
            return Ok(None);
        };
        let mut votes = Vec::new();
        for (k, v) in self.reader.scan_prefix(&sk.votes(seq))? {
            let vote: VoteRecord = decode_at(&k, &v)?;
            let user = String::from_utf8_lossy(keys::last_component(&k)).into_owned();
            votes.push((user, vote.options, vote.at));
        }
        votes.sort_by_key(|(_, _, at)| *at);
        Ok(Some(PollResults {
            channel_id: stream.rsplit(':').next().unwrap_or_default().to_string(),
            poll: *poll,
            votes: votes.into_iter().map(|(u, o, _)| (u, o)).collect(),
        }))
    }

    /// A user's saved messages, newest first: `limit` of them after skipping `offset`.
    pub fn saved(
        &self,
        stream: &str,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<SavedEntry>, StoreError> {
        let sk = StreamKeys(stream);
        let prefix = sk.all_saved_at();
        let mut out = Vec::new();
        for (k, _) in self.reader.scan_prefix(&prefix)?.into_iter().rev() {
            // `<at: 8 bytes>\0<channel>\0<message>` after the prefix.
            let rest = &k[prefix.len()..];
            if rest.len() < 9 {
                continue;
            }
            let at = u64::from_be_bytes(rest[..8].try_into().unwrap_or_default());
            let mut parts = rest[9..].splitn(2, |b| *b == 0);
            let (Some(channel), Some(message)) = (parts.next(), parts.next()) else {
                continue;
            };
            out.push((
                String::from_utf8_lossy(channel).into_owned(),
                String::from_utf8_lossy(message).into_owned(),
                at,
            ));
        }
        Ok(out.into_iter().skip(offset).take(limit).collect())
    }
}
