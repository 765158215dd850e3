//! Reactions, pins, polls and saved messages: what members add to a channel's messages after
//! they are sent, applied in the channel's stream (a saved message, in the saver's).
//!
//! A message's [`Annotations`] are one record beside it (`ann/<seq>`), so rendering a page reads
//! one range of them and a reaction rewrites a small record, not the message's chunk. The
//! per-user facts behind the counts are keys of their own: a reaction (`rx/<seq>/<user>/<emoji>`),
//! a vote (`vote/<seq>/<user>`), a pin in the pinned index (`pin/<seq>`). Every change appends
//! its event to the stream, so recovery after a reconnect replays it like a message; a command
//! applied a second time finds its change made and appends nothing.

use chatsdk_cluster::StoreError;
use serde::{Deserialize, Serialize};

use super::{StreamReply, Tx};
use crate::keys::{get_record as get, put_record as put};
use crate::kv::Kv;
use crate::model::{
    Annotations, Event, Message, Pin, Poll, ReactionCount, Reactor, REACTORS_SHOWN,
};

/// Distinct emoji one message may carry.
pub const MAX_EMOJI_PER_MESSAGE: usize = 50;

/// A stored reaction: when, and by whom (to name the first reactors again after one leaves).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct ReactionRecord {
    pub(crate) at: u64,
    pub(crate) user: Reactor,
}

/// A stored vote: the options chosen, and when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct VoteRecord {
    pub(crate) options: Vec<String>,
    pub(crate) at: u64,
}

impl<K: Kv> Tx<'_, K> {
    fn annotations_of(&self, seq: u64) -> Result<Annotations, StoreError> {
        Ok(get::<Annotations>(self.kv, &self.sk.annotations(seq))?.unwrap_or_default())
    }

    fn put_annotations(&mut self, seq: u64, ann: &Annotations) -> Result<(), StoreError> {
        let key = self.sk.annotations(seq);
        if ann.is_empty() {
            self.kv.delete(&key);
            Ok(())
        } else {
            put(self.kv, &key, ann)
        }
    }

    fn appended(&mut self) -> StreamReply {
        StreamReply::Appended {
            events: std::mem::take(&mut self.events),
            epoch: self.head.epoch.clone(),
        }
    }

    /// A live (not deleted) message, or the reply that says why there is none.
    fn live_message(&self, id: &str) -> Result<Result<Message, StreamReply>, StoreError> {
        Ok(match self.find_message(id)? {
            Some(m) if m.deleted_at.is_some() => {
                Err(StreamReply::Refused("message is deleted".into()))
            }
            Some(m) => Ok(m),
            None => Err(StreamReply::NotFound("message".into())),
        })
    }

    /// Adds (`add`) or removes `user`'s reaction `emoji`.
    pub(super) fn react(
        &mut self,
        id: &str,
        emoji: String,
        user: Reactor,
        add: bool,
        now: u64,
        max_per_user: u32,
    ) -> Result<StreamReply, StoreError> {
        let m = match self.live_message(id)? {
            Ok(m) => m,
            Err(reply) => return Ok(reply),
        };
        let key = self.sk.reaction(m.seq, &user.id, &emoji);
        if self.kv.get(&key)?.is_some() == add {
            return Ok(self.appended());
        }
        let mut ann = self.annotations_of(m.seq)?;
        let at = ann.reactions.iter().position(|r| r.emoji == emoji);
        let count = if add {
            let mine = self
                .kv
                .scan_prefix(&self.sk.user_reactions(m.seq, &user.id))?
                .len();
            if mine >= max_per_user as usize {
                return Ok(StreamReply::Refused(format!(
                    "at most {max_per_user} reactions per user on one message"
                )));
            }
            if at.is_none() && ann.reactions.len() >= MAX_EMOJI_PER_MESSAGE {
                return Ok(StreamReply::Refused(format!(
                    "a message carries at most {MAX_EMOJI_PER_MESSAGE} different reactions"
                )));
            }
            put(
                self.kv,
                &key,
                &ReactionRecord {
                    at: now,
                    user: user.clone(),
                },
            )?;
            let r = match at {
                Some(i) => &mut ann.reactions[i],
                None => {
                    ann.reactions.push(ReactionCount {
                        emoji: emoji.clone(),
                        count: 0,
                        users: Vec::new(),
                    });
                    ann.reactions.last_mut().expect("just pushed")
                }
            };
            r.count += 1;
            if r.users.len() < REACTORS_SHOWN {
                r.users.push(user.clone());
            }
            r.count
        } else {
            self.kv.delete(&key);
            let Some(i) = at else {
                // A reaction key without its count: the count is what clients see; keep it.
                return Ok(self.appended());
            };
            let r = &mut ann.reactions[i];
            r.count = r.count.saturating_sub(1);
            r.users.retain(|u| u.id != user.id);
            let count = r.count;
            if count == 0 {
                ann.reactions.remove(i);
            } else if (r.users.len() as u64) < count.min(REACTORS_SHOWN as u64) {
                r.users = self.first_reactors(m.seq, &emoji)?;
            }
            count
        };
        self.put_annotations(m.seq, &ann)?;
        self.append(Event::Reaction {
            channel_id: m.channel_id.clone(),
            message_id: m.id.clone(),
            emoji,
            user,
            added: add,
            count,
        })?;
        Ok(self.appended())
    }

    /// The earliest reactors with `emoji` still reacting, at most [`REACTORS_SHOWN`].
    fn first_reactors(&self, seq: u64, emoji: &str) -> Result<Vec<Reactor>, StoreError> {
        let mut found: Vec<ReactionRecord> = Vec::new();
        for (k, v) in self.kv.scan_prefix(&self.sk.reactions(seq))? {
            if crate::keys::last_component(&k) == emoji.as_bytes() {
                found.push(crate::keys::decode_at(&k, &v)?);
            }
        }
        found.sort_by_key(|r| r.at);
        Ok(found
            .into_iter()
            .take(REACTORS_SHOWN)
            .map(|r| r.user)
            .collect())
    }

    /// Pins (`by` set) or unpins a message; a channel has at most `max` pinned messages.
    pub(super) fn pin(
        &mut self,
        id: &str,
        by: Option<String>,
        now: u64,
        max: u32,
    ) -> Result<StreamReply, StoreError> {
        let m = match self.find_message(id)? {
            Some(m) if m.deleted_at.is_some() && by.is_some() => {
                return Ok(StreamReply::Refused("message is deleted".into()))
            }
            Some(m) => m,
            None => return Ok(StreamReply::NotFound("message".into())),
        };
        let mut ann = self.annotations_of(m.seq)?;
        match (by, ann.pin.is_some()) {
            (Some(_), true) | (None, false) => return Ok(self.appended()),
            (Some(by), false) => {
                let pinned = self.kv.scan_prefix(&self.sk.all_pinned())?.len();
                if pinned >= max as usize {
                    return Ok(StreamReply::Refused(format!(
                        "a channel has at most {max} pinned messages"
                    )));
                }
                self.kv.put(&self.sk.pinned(m.seq), b"");
                ann.pin = Some(Pin { by, at: now });
            }
            (None, true) => {
                self.kv.delete(&self.sk.pinned(m.seq));
                ann.pin = None;
            }
        }
        self.put_annotations(m.seq, &ann)?;
        self.append(Event::Pinned {
            channel_id: m.channel_id.clone(),
            message_id: m.id.clone(),
            pin: ann.pin.clone(),
        })?;
        Ok(self.appended())
    }

    /// Attaches `poll` to its message, replacing (with its votes) a poll the message had.
    pub(super) fn create_poll(&mut self, poll: Box<Poll>) -> Result<StreamReply, StoreError> {
        let m = match self.live_message(&poll.message_id)? {
            Ok(m) => m,
            Err(reply) => return Ok(reply),
        };
        let mut ann = self.annotations_of(m.seq)?;
        if ann.poll.as_ref().is_some_and(|p| p.id == poll.id) {
            return Ok(self.appended());
        }
        if let Some(old) = ann.poll.take() {
            self.kv.delete(&self.sk.poll(&old.id));
            for (k, _) in self.kv.scan_prefix(&self.sk.votes(m.seq))? {
                self.kv.delete(&k);
            }
        }
        self.kv.put(&self.sk.poll(&poll.id), &m.seq.to_be_bytes());
        ann.poll = Some(poll.clone());
        self.put_annotations(m.seq, &ann)?;
        self.append(Event::PollCreated {
            channel_id: m.channel_id.clone(),
            poll,
        })?;
        Ok(self.appended())
    }

    /// Sets (`options`) or removes `user`'s vote in poll `poll_id`. A vote replaces the user's
    /// earlier one; an ended poll refuses votes (a vote may still be removed).
    pub(super) fn vote(
        &mut self,
        poll_id: &str,
        user: String,
        options: Option<Vec<String>>,
        now: u64,
    ) -> Result<StreamReply, StoreError> {
        let Some(seq) = self.kv.get(&self.sk.poll(poll_id))? else {
            return Ok(StreamReply::NotFound("poll".into()));
        };
        let seq = super::index_seq(&self.sk.poll(poll_id), &seq)?;
        let mut ann = self.annotations_of(seq)?;
        let Some(mut poll) = ann.poll.take().filter(|p| p.id == poll_id) else {
            return Ok(StreamReply::NotFound("poll".into()));
        };
        let key = self.sk.vote(seq, &user);
        let before = get::<VoteRecord>(self.kv, &key)?;
        if let Some(chosen) = &options {
            if poll.closed(now) {
                return Ok(StreamReply::Refused("the poll has ended".into()));
            }
            if chosen.is_empty() {
                return Ok(StreamReply::Refused("optionIds must name an option".into()));
            }
            if !poll.multi && chosen.len() > 1 {
                return Ok(StreamReply::Refused(
                    "this poll allows one option per vote".into(),
                ));
            }
            if let Some(bad) = chosen
                .iter()
                .find(|c| !poll.options.iter().any(|o| &o.id == *c))
            {
                return Ok(StreamReply::Refused(format!("unknown option {bad}")));
            }
        }
        let unchanged = match (&before, &options) {
            (Some(b), Some(o)) => &b.options == o,
            (None, None) => true,
            _ => false,
        };
        if unchanged {
            let total = poll.total_votes;
            ann.poll = Some(poll);
            return Ok(self.voted(total));
        }
        if let Some(b) = &before {
            for o in poll
                .options
                .iter_mut()
                .filter(|o| b.options.contains(&o.id))
            {
                o.votes = o.votes.saturating_sub(1);
            }
        }
        match &options {
            Some(chosen) => {
                for o in poll.options.iter_mut().filter(|o| chosen.contains(&o.id)) {
                    o.votes += 1;
                }
                if before.is_none() {
                    poll.total_votes += 1;
                }
                put(
                    self.kv,
                    &key,
                    &VoteRecord {
                        options: chosen.clone(),
                        at: now,
                    },
                )?;
            }
            None => {
                poll.total_votes = poll.total_votes.saturating_sub(1);
                self.kv.delete(&key);
            }
        }
        let event = Event::PollVote {
            channel_id: self.sk.0.rsplit(':').next().unwrap_or_default().to_string(),
            poll_id: poll.id.clone(),
            user,
            options,
            anonymous: poll.anonymous,
            total_votes: poll.total_votes,
            counts: poll
                .options
                .iter()
                .map(|o| (o.id.clone(), o.votes))
                .collect(),
        };
        let total = poll.total_votes;
        ann.poll = Some(poll);
        self.put_annotations(seq, &ann)?;
        self.append(event)?;
        Ok(self.voted(total))
    }

    fn voted(&mut self, total_votes: u64) -> StreamReply {
        StreamReply::Voted {
            total_votes,
            events: std::mem::take(&mut self.events),
            epoch: self.head.epoch.clone(),
        }
    }

    /// Removes everything annotating the message with seq `seq` (it is being purged).
    pub(super) fn drop_annotations(&mut self, seq: u64) -> Result<(), StoreError> {
        if let Some(ann) = get::<Annotations>(self.kv, &self.sk.annotations(seq))? {
            if let Some(poll) = &ann.poll {
                self.kv.delete(&self.sk.poll(&poll.id));
            }
            self.kv.delete(&self.sk.annotations(seq));
        }
        self.kv.delete(&self.sk.pinned(seq));
        for prefix in [self.sk.reactions(seq), self.sk.votes(seq)] {
            for (k, _) in self.kv.scan_prefix(&prefix)? {
                self.kv.delete(&k);
            }
        }
        Ok(())
    }

    /// Saves a message for the stream's user (`at` set) or forgets it (user streams).
    pub(super) fn save(
        &mut self,
        channel: &str,
        message: &str,
        at: Option<u64>,
    ) -> Result<StreamReply, StoreError> {
        let key = self.sk.saved(channel, message);
        let before = get::<u64>(self.kv, &key)?;
        match (at, before) {
            (Some(at), None) => {
                put(self.kv, &key, &at)?;
                self.kv.put(&self.sk.saved_at(at, channel, message), b"");
            }
            (None, Some(was)) => {
                self.kv.delete(&key);
                self.kv.delete(&self.sk.saved_at(was, channel, message));
            }
            _ => {}
        }
        Ok(StreamReply::Done)
    }
}
