//! Tests of the stream state machine, driven directly on an in-memory key-value view.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;

use super::*;
use crate::model::UserSummary;

type Mem = BTreeMap<Vec<u8>, Vec<u8>>;

const STREAM: &str = "chat:app:c1";

fn ctx(index: u64) -> ApplyContext {
    ApplyContext {
        group: 1,
        index,
        term: 1,
        position: 0,
    }
}

fn message(id: &str, user: &str, cmid: Option<String>, parent: Option<String>) -> Message {
    Message {
        id: id.to_string(),
        channel_id: "c1".into(),
        user_id: user.to_string(),
        seq: 0,
        text: Some(format!("text of {id}")),
        attachments: Json::array(),
        parent_id: parent,
        reply_to_id: None,
        client_msg_id: cmid,
        created_at: 1_700_000_000_000,
        edited_at: None,
        deleted_at: None,
        reply_count: 0,
        mentions: Vec::new(),
        user: UserSummary {
            id: user.to_string(),
            name: user.to_uppercase(),
            ..UserSummary::default()
        },
    }
}

fn command(retain: u64, op: StreamOp) -> Vec<u8> {
    codec::encode(&StreamCommand {
        stream: STREAM.into(),
        retain,
        op,
    })
    .unwrap()
}

/// A send by `u1`, as a reply to `parent` when given.
fn send(id: &str, parent: Option<&str>) -> Vec<u8> {
    command(
        100,
        StreamOp::Send {
            message: Box::new(message(id, "u1", None, parent.map(str::to_string))),
        },
    )
}

/// Every event record stored in the stream's chunks, in offset order.
fn stored_events(kv: &Mem) -> Vec<StoredEventRecord> {
    let mut out = Vec::new();
    for (k, v) in Kv::scan_prefix(kv, &keys::prefix(&[b"s", STREAM.as_bytes(), b"evc"])).unwrap() {
        for item in chunk::items(&k, &v).unwrap() {
            let (offset, record) = item.unwrap();
            let e: StoredEventRecord = decode_at(&k, record).unwrap();
            assert_eq!(e.offset, offset);
            out.push(e);
        }
    }
    out
}

/// The stored message with this seq.
fn message_at(kv: &Mem, seq: u64) -> Option<Message> {
    let key = StreamKeys(STREAM).message_chunk(chunk_of(seq));
    let value = Kv::get(kv, &key).unwrap()?;
    item_of(&key, &value, seq).unwrap()
}

fn head(kv: &Mem) -> StreamHead {
    get::<StreamHead>(kv, &StreamKeys(STREAM).head())
        .unwrap()
        .unwrap_or_else(|| empty_head(STREAM))
}

/// What a test asks of the stream.
#[derive(Clone, Debug)]
enum Op {
    Send {
        user: u8,
        cmid: Option<u8>,
        reply: Option<usize>,
    },
    Edit(usize, u8),
    Delete(usize),
    Purge(usize),
    Read(u8),
    Member(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..3, proptest::option::of(0u8..4), proptest::option::of(0usize..8))
            .prop_map(|(user, cmid, reply)| Op::Send { user, cmid, reply }),
        1 => (0usize..8, 0u8..3).prop_map(|(i, t)| Op::Edit(i, t)),
        1 => (0usize..8).prop_map(Op::Delete),
        1 => (0usize..8).prop_map(Op::Purge),
        1 => (0u8..3).prop_map(Op::Read),
        1 => (0u8..3).prop_map(Op::Member),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Offsets have no gaps and the retained window is exactly the newest events; a client
    /// message id makes one message however often it is sent; applying any command a second
    /// time changes nothing and emits nothing.
    #[test]
    fn offsets_idempotency_and_reapply(ops in proptest::collection::vec(op(), 1..60), retain in 1u64..12) {
        let mut kv = Mem::new();
        let mut ids: Vec<String> = Vec::new();
        let mut by_cmid: HashMap<(String, u8), String> = HashMap::new();
        let mut last_offset = 0u64;
        for (i, op) in ops.iter().enumerate() {
            let index = i as u64 + 1;
            let pick = |n: usize| ids.get(n % ids.len().max(1)).cloned();
            let stream_op = match op {
                Op::Send { user, cmid, reply } => {
                    let parent = reply.and_then(pick);
                    let mut m = message(
                        &format!("m{i}"),
                        &format!("u{user}"),
                        cmid.map(|c| format!("cm{c}")),
                        parent,
                    );
                    // Each send is proposed at its own time (a client's retry too).
                    m.created_at += index;
                    StreamOp::Send { message: Box::new(m) }
                }
                Op::Edit(n, t) => match pick(*n) {
                    Some(id) => StreamOp::Edit { message_id: id, text: format!("edit {t}"), now: index },
                    None => continue,
                },
                Op::Delete(n) => match pick(*n) {
                    Some(id) => StreamOp::Delete { message_id: id, now: index },
                    None => continue,
                },
                Op::Purge(n) => match pick(*n) {
                    Some(id) => StreamOp::Purge { message_id: id },
                    None => continue,
                },
                Op::Read(u) => StreamOp::Read { user_id: format!("u{u}") },
                Op::Member(u) => StreamOp::Append {
                    id: format!("ap{index}"),
                    event: Event::MemberJoined { channel_id: "c1".into(), user_id: format!("u{u}") },
                },
            };
            let raw = command(retain, stream_op);
            let reply = apply_encoded(&ctx(index), &mut kv, &raw).unwrap();

            // Offsets: the events of this command continue the stream without a gap.
            if let Some((events, _)) = reply.events() {
                for e in events {
                    prop_assert_eq!(e.offset, last_offset + 1);
                    last_offset = e.offset;
                }
            }
            let h = head(&kv);
            prop_assert_eq!(h.offset, last_offset);
            prop_assert_eq!(h.first_retained, last_offset.saturating_sub(retain) + 1);
            // The retained events are stored; of the trimmed ones, only those sharing a chunk
            // with the oldest retained event are (the chunk goes with its last event).
            let (retained, trimmed): (Vec<u64>, Vec<u64>) = stored_events(&kv)
                .iter()
                .map(|e| e.offset)
                .partition(|o| *o >= h.first_retained);
            let expected: Vec<u64> = (h.first_retained..=h.offset).collect();
            prop_assert_eq!(retained, expected);
            for o in trimmed {
                prop_assert_eq!(chunk_of(o), chunk_of(h.first_retained));
            }

            // Idempotency of client message ids.
            if let (Op::Send { user, cmid: Some(c), .. }, StreamReply::Message { duplicate, events, .. }, Some(message)) = (op, &reply, reply.message()) {
                match by_cmid.get(&(format!("u{user}"), *c)) {
                    Some(first) if ids.contains(first) => {
                        prop_assert!(*duplicate);
                        prop_assert!(events.is_empty());
                        prop_assert_eq!(&message.id, first);
                    }
                    _ => {
                        by_cmid.insert((format!("u{user}"), *c), message.id.clone());
                    }
                }
            }
            if let (Op::Send { .. }, StreamReply::Message { duplicate: false, .. }, Some(message)) = (op, &reply, reply.message()) {
                if !ids.contains(&message.id) {
                    ids.push(message.id.clone());
                }
            }
            if let (Op::Purge(_), StreamReply::Message { .. }, Some(message)) = (op, &reply, reply.message()) {
                ids.retain(|id| id != &message.id);
            }

            // Re-applying the same command (the cluster delivers at least once) changes
            // nothing.
            let before = kv.clone();
            let again = apply_encoded(&ctx(index + 1_000_000), &mut kv, &raw).unwrap();
            prop_assert_eq!(&kv, &before);
            if let Some((events, _)) = again.events() {
                prop_assert!(events.is_empty(), "re-apply emitted {:?}", events);
            }
        }
    }
}

/// An append applied again is a no-op while it is among the stream's last `APPEND_IDS`
/// appends, and the ids remembered stay bounded.
#[test]
fn appends_are_remembered_in_a_bounded_ring() {
    let mut kv = Mem::new();
    let append = |id: &str| {
        command(
            100,
            StreamOp::Append {
                id: id.into(),
                event: Event::MemberJoined {
                    channel_id: "c1".into(),
                    user_id: id.into(),
                },
            },
        )
    };
    let first = apply_encoded(&ctx(1), &mut kv, &append("a0")).unwrap();
    assert_eq!(first.events().map(|(e, _)| e.len()), Some(1));
    let again = apply_encoded(&ctx(2), &mut kv, &append("a0")).unwrap();
    assert_eq!(again.events().map(|(e, _)| e.len()), Some(0));
    for i in 1..=crate::stream::APPEND_IDS {
        apply_encoded(&ctx(2 + i), &mut kv, &append(&format!("a{i}"))).unwrap();
    }
    let ids = Kv::scan_prefix(&kv, &keys::prefix(&[b"s", STREAM.as_bytes(), b"apid"])).unwrap();
    assert_eq!(ids.len() as u64, crate::stream::APPEND_IDS);
    // "a0" fell out of the ring: applied again now, it appends again.
    let late = apply_encoded(&ctx(1_000), &mut kv, &append("a0")).unwrap();
    assert_eq!(late.events().map(|(e, _)| e.len()), Some(1));
    assert_eq!(head(&kv).offset, crate::stream::APPEND_IDS + 2);
}

/// A stored record that does not decode stops the apply with an error naming its key; it is
/// never taken for an absent message.
#[test]
fn corrupted_record_is_an_error_not_absent() {
    let mut kv = Mem::new();
    apply_encoded(&ctx(1), &mut kv, &send("m1", None)).unwrap();
    let key = StreamKeys(STREAM).message_chunk(0);
    // A chunk whose framing is sound but whose record is not.
    kv.insert(
        key.clone(),
        chunk::with_item(&key, None, 1, b"\x02garbage").unwrap(),
    );
    let edit = command(
        100,
        StreamOp::Edit {
            message_id: "m1".into(),
            text: "new".into(),
            now: 2,
        },
    );
    let err = apply_encoded(&ctx(2), &mut kv, &edit).unwrap_err();
    match err {
        StoreError::Corrupt { key: k, .. } => assert_eq!(k, key.escape_ascii().to_string()),
        other => panic!("unexpected {other:?}"),
    }
    // A record of the JSON era, or a damaged chunk, is refused the same way.
    for damaged in [&br#"{"id":"m1"}"#[..], b"\x02garbage", b""] {
        kv.insert(key.clone(), damaged.to_vec());
        assert!(matches!(
            apply_encoded(&ctx(3), &mut kv, &edit),
            Err(StoreError::Corrupt { .. })
        ));
    }
}

/// A command that does not decode is refused and changes nothing.
#[test]
fn undecodable_command_is_refused() {
    let mut kv = Mem::new();
    let reply = apply_encoded(&ctx(1), &mut kv, br#"{"stream":"x"}"#).unwrap();
    assert!(matches!(reply, StreamReply::Refused(_)));
    assert!(kv.is_empty());
}

/// Thread replies count on their parent and are announced twice (message and thread event).
#[test]
fn thread_reply_updates_parent_and_appends_two_events() {
    let mut kv = Mem::new();
    apply_encoded(&ctx(1), &mut kv, &send("p", None)).unwrap();
    let reply = apply_encoded(&ctx(2), &mut kv, &send("r", Some("p"))).unwrap();
    let (events, _) = reply.events().unwrap();
    assert_eq!(events.len(), 2);
    assert!(matches!(events[0].event, Event::MessageNew(_)));
    assert!(matches!(events[1].event, Event::ThreadReply(_)));
    let parent = message_at(&kv, 1).unwrap();
    assert_eq!(parent.reply_count, 1);
    let rendered = crate::render::event(&events[1].event);
    let v: serde_json::Value = serde_json::from_str(&rendered).unwrap();
    assert_eq!(v["type"], "thread.reply");
    assert_eq!(v["payload"]["threadId"], "p");
    assert_eq!(v["payload"]["message"]["seq"], 2);
}

/// A refresh spend applied twice (the cluster delivers at least once) is still one spend; a
/// second spend of the same token by another request is a replay that revokes the session,
/// and the session then refuses everything.
#[test]
fn refresh_spends_are_idempotent_and_replays_revoke() {
    let mut kv = Mem::new();
    let spend = |jti: &str, nonce: u64| {
        codec::encode(&StreamCommand {
            stream: "user:app:u1".into(),
            retain: 100,
            op: StreamOp::SpendRefresh {
                sid: "s1".into(),
                jti: jti.into(),
                nonce,
            },
        })
        .unwrap()
    };
    let outcome = |reply: StreamReply| match reply {
        StreamReply::Refresh(o) => o,
        other => panic!("unexpected {other:?}"),
    };
    let first = spend("j1", 7);
    assert_eq!(
        outcome(apply_encoded(&ctx(1), &mut kv, &first).unwrap()),
        RefreshOutcome::Spent
    );
    let before = kv.clone();
    assert_eq!(
        outcome(apply_encoded(&ctx(2), &mut kv, &first).unwrap()),
        RefreshOutcome::Spent
    );
    assert_eq!(kv, before, "a re-applied spend changes nothing");
    assert_eq!(
        outcome(apply_encoded(&ctx(3), &mut kv, &spend("j2", 8)).unwrap()),
        RefreshOutcome::Spent
    );
    assert_eq!(
        outcome(apply_encoded(&ctx(4), &mut kv, &spend("j1", 9)).unwrap()),
        RefreshOutcome::Replayed
    );
    assert_eq!(
        outcome(apply_encoded(&ctx(5), &mut kv, &spend("j3", 10)).unwrap()),
        RefreshOutcome::Revoked
    );
    // The spends never touched the stream's events.
    assert_eq!(head(&kv).offset, 0);
}

/// A spend is remembered for its token's whole life, however many spends follow (the first
/// layout forgot all but the last 256), and forgotten once the token has expired.
#[test]
fn spent_refresh_tokens_are_remembered_until_they_expire() {
    let mut kv = Mem::new();
    let spend = |jti: String, nonce: u64, expires_at: u64, now: u64| {
        codec::encode(&StreamCommand {
            stream: "user:app:u1".into(),
            retain: 100,
            op: StreamOp::SpendRefreshUntil {
                sid: "s1".into(),
                jti,
                nonce,
                expires_at,
                now,
            },
        })
        .unwrap()
    };
    let outcome = |reply: StreamReply| match reply {
        StreamReply::Refresh(o) => o,
        other => panic!("unexpected {other:?}"),
    };
    // 600 refreshes within a day, each token living a day.
    for i in 0..600u64 {
        let o = apply_encoded(
            &ctx(i + 1),
            &mut kv,
            &spend(format!("j{i}"), i, 86_400 + i, i),
        );
        assert_eq!(outcome(o.unwrap()), RefreshOutcome::Spent, "spend {i}");
    }
    let sk = StreamKeys("user:app:u1");
    let remembered = |kv: &Mem| {
        get::<SpentTokensUntil>(kv, &sk.login_session_until("s1"))
            .unwrap()
            .unwrap()
            .spent
            .len()
    };
    assert_eq!(remembered(&kv), 600);
    // Two days on, a spend forgets the expired ones.
    let o = apply_encoded(
        &ctx(700),
        &mut kv,
        &spend("late".into(), 9, 3 * 86_400, 2 * 86_400),
    );
    assert_eq!(outcome(o.unwrap()), RefreshOutcome::Spent);
    assert_eq!(remembered(&kv), 1);
    // Spends an older build stored (the first layout) carry over: replaying one is caught.
    let mut old = Mem::new();
    let legacy = SpentTokens {
        spent: vec![("before".into(), 1)],
        revoked: false,
    };
    put(&mut old, &sk.login_session("s1"), &legacy).unwrap();
    let o = apply_encoded(&ctx(2), &mut old, &spend("before".into(), 2, 86_400, 5));
    assert_eq!(outcome(o.unwrap()), RefreshOutcome::Replayed);
    // A replay of a live token, long after, is still caught and revokes the session.
    let o = apply_encoded(
        &ctx(701),
        &mut kv,
        &spend("late".into(), 10, 3 * 86_400, 2 * 86_400),
    );
    assert_eq!(outcome(o.unwrap()), RefreshOutcome::Replayed);
}

/// Retention of login sessions: once every spend a session remembers has expired, a spend in
/// another session of the user forgets it; a revoked session, or one with a live spend, stays.
#[test]
fn ended_login_sessions_are_forgotten() {
    let mut kv = Mem::new();
    let spend = |sid: &str, jti: &str, nonce: u64, expires_at: u64, now: u64| {
        codec::encode(&StreamCommand {
            stream: "user:app:u1".into(),
            retain: 100,
            op: StreamOp::SpendRefreshUntil {
                sid: sid.into(),
                jti: jti.into(),
                nonce,
                expires_at,
                now,
            },
        })
        .unwrap()
    };
    let sk = StreamKeys("user:app:u1");
    let exists = |kv: &Mem, sid: &str| {
        get::<SpentTokensUntil>(kv, &sk.login_session_until(sid))
            .unwrap()
            .is_some()
    };
    // Three sessions on day 0 (tokens living a day).
    for (i, sid) in ["ended", "revoked", "live"].into_iter().enumerate() {
        apply_encoded(&ctx(i as u64 + 1), &mut kv, &spend(sid, sid, 1, 86_400, 10)).unwrap();
    }
    // A replay revokes the second one.
    let replay = apply_encoded(
        &ctx(4),
        &mut kv,
        &spend("revoked", "revoked", 2, 86_400, 20),
    );
    assert!(matches!(
        replay.unwrap(),
        StreamReply::Refresh(RefreshOutcome::Replayed)
    ));
    // Within the day, nothing is forgotten.
    apply_encoded(&ctx(5), &mut kv, &spend("live", "live1", 1, 86_500, 100)).unwrap();
    assert!(exists(&kv, "ended") && exists(&kv, "revoked"));
    // Day 2: a spend of the live session forgets the ended one only.
    apply_encoded(
        &ctx(6),
        &mut kv,
        &spend("live", "live2", 1, 4 * 86_400, 2 * 86_400),
    )
    .unwrap();
    assert!(!exists(&kv, "ended"));
    assert!(exists(&kv, "revoked"));
    assert!(exists(&kv, "live"));
    // Day 10 and no refresh since: the background sweep finds the live session ended (its
    // spends expired on day 4) and its command forgets it, the revoked one staying.
    const KEEP: u64 = 30 * 86_400;
    let reader = StreamReader { reader: kv.clone() };
    let ended = |reader: &StreamReader<Mem>, now| reader.ended_sessions("user:app:u1", now, KEEP);
    assert_eq!(ended(&reader, 3 * 86_400).unwrap(), 0);
    assert_eq!(ended(&reader, 10 * 86_400).unwrap(), 1);
    let sweep = |now| {
        codec::encode(&StreamCommand {
            stream: "user:app:u1".into(),
            retain: 100,
            op: StreamOp::ForgetEndedSessions {
                now,
                keep_revoked: KEEP,
            },
        })
        .unwrap()
    };
    assert!(matches!(
        apply_encoded(&ctx(7), &mut kv, &sweep(10 * 86_400)).unwrap(),
        StreamReply::Done
    ));
    assert!(!exists(&kv, "live"));
    assert!(exists(&kv, "revoked"));
    let reader = StreamReader { reader: kv.clone() };
    assert_eq!(ended(&reader, 10 * 86_400).unwrap(), 0);
    // The revoked session goes once no token of it can live any more (its spent token
    // expired on day 1, tokens live at most KEEP).
    assert_eq!(ended(&reader, 31 * 86_400 - 1).unwrap(), 0);
    apply_encoded(&ctx(8), &mut kv, &sweep(31 * 86_400)).unwrap();
    assert!(!exists(&kv, "revoked"));
}

/// The thread index lists a parent's replies without the rest of the channel, and a purged
/// reply leaves it.
#[test]
fn thread_index_follows_replies_and_purges() {
    let mut kv = Mem::new();
    apply_encoded(&ctx(1), &mut kv, &send("p", None)).unwrap();
    apply_encoded(&ctx(2), &mut kv, &send("other", None)).unwrap();
    apply_encoded(&ctx(3), &mut kv, &send("r1", Some("p"))).unwrap();
    apply_encoded(&ctx(4), &mut kv, &send("r2", Some("p"))).unwrap();
    let sk = StreamKeys(STREAM);
    let thread: Vec<u64> = Kv::scan_prefix(&kv, &sk.thread(1))
        .unwrap()
        .iter()
        .filter_map(|(k, _)| keys::trailing_u64(k))
        .collect();
    assert_eq!(thread, vec![3, 4]);
    let purge = command(
        100,
        StreamOp::Purge {
            message_id: "r1".into(),
        },
    );
    apply_encoded(&ctx(5), &mut kv, &purge).unwrap();
    assert_eq!(Kv::scan_prefix(&kv, &sk.thread(1)).unwrap().len(), 1);
}

/// A stream stores a new message's event as a reference to the message record: reading it
/// renders the message as it is (edited), and as `message.deleted` once it was purged.
#[test]
fn message_events_are_stored_once_and_read_as_the_message_is() {
    let mut kv = Mem::new();
    apply_encoded(&ctx(1), &mut kv, &send("m1", None)).unwrap();
    apply_encoded(&ctx(2), &mut kv, &send("m2", None)).unwrap();
    let edit = StreamOp::Edit {
        message_id: "m1".into(),
        text: "edited".into(),
        now: 5,
    };
    apply_encoded(&ctx(3), &mut kv, &command(100, edit)).unwrap();
    let purge = StreamOp::Purge {
        message_id: "m2".into(),
    };
    apply_encoded(&ctx(4), &mut kv, &command(100, purge)).unwrap();
    let sk = StreamKeys(STREAM);
    let records = stored_events(&kv);
    assert!(matches!(
        records[0].event,
        EventRecord::MessageNew { seq: 1, .. }
    ));
    let events = resolve_events(&sk, records, |seq| Ok(message_at(&kv, seq))).unwrap();
    let kinds: Vec<String> = events
        .iter()
        .map(|e| match &e.event {
            Event::MessageNew(m) => format!("new {} {}", m.id, m.text.as_deref().unwrap_or("")),
            Event::MessageUpdated(m) => format!("updated {}", m.id),
            Event::MessageDeleted {
                message_id, hard, ..
            } => {
                format!("deleted {message_id} {hard}")
            }
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            "new m1 edited",
            "deleted m2 true",
            "updated m1",
            "deleted m2 true",
        ]
    );
}

/// Reads of pages, events and unread counts span chunks exactly as reads of a plain list
/// would: a stream of 70 messages (thread replies and purged messages among them) and a
/// recovery window of 20 events, read with page sizes around the chunk size.
#[test]
fn reads_across_chunks_match_a_plain_list() {
    let mut kv = Mem::new();
    // (seq, id, author, thread reply, purged)
    let mut model: Vec<(u64, String, String, bool, bool)> = Vec::new();
    let mut index = 0;
    let mut run = |kv: &mut Mem, op: StreamOp| {
        index += 1;
        apply_encoded(&ctx(index), kv, &command(20, op)).unwrap()
    };
    for i in 1..=70u64 {
        let id = format!("m{i}");
        let author = if i % 3 == 0 { "u2" } else { "u1" };
        let parent = (i % 5 == 0).then(|| "m1".to_string());
        let m = message(&id, author, None, parent.clone());
        run(
            &mut kv,
            StreamOp::Send {
                message: Box::new(m),
            },
        );
        model.push((i, id, author.to_string(), parent.is_some(), false));
    }
    for i in (7..=70u64).step_by(7) {
        if model[i as usize - 1].3 {
            continue;
        }
        let reply = run(
            &mut kv,
            StreamOp::Purge {
                message_id: format!("m{i}"),
            },
        );
        assert!(matches!(reply, StreamReply::Message { .. }));
        model[i as usize - 1].4 = true;
    }
    let reader = StreamReader { reader: kv.clone() };
    let top: Vec<u64> = model.iter().filter(|m| !m.3 && !m.4).map(|m| m.0).collect();
    let seqs = |(page, _): &(Vec<Message>, bool)| page.iter().map(|m| m.seq).collect::<Vec<_>>();

    for limit in [1usize, 3, 15, 16, 17, 40, 100] {
        let latest = reader.messages(STREAM, MessagePage::Latest, limit).unwrap();
        let expect = &top[top.len().saturating_sub(limit)..];
        assert_eq!(seqs(&latest), expect, "latest {limit}");
        assert_eq!(latest.1, top.len() > limit);
        for seq in [1u64, 2, 16, 17, 33, 50, 70, 71] {
            let before = reader
                .messages(STREAM, MessagePage::Before(seq), limit)
                .unwrap();
            let older: Vec<u64> = top.iter().copied().filter(|s| *s < seq).collect();
            assert_eq!(seqs(&before), &older[older.len().saturating_sub(limit)..]);
            assert_eq!(before.1, older.len() > limit, "before {seq} {limit}");
            let after = reader
                .messages(STREAM, MessagePage::After(seq), limit)
                .unwrap();
            let newer: Vec<u64> = top.iter().copied().filter(|s| *s > seq).collect();
            assert_eq!(seqs(&after), &newer[..newer.len().min(limit)]);
            assert_eq!(after.1, newer.len() > limit, "after {seq} {limit}");
        }
    }

    // Events: only the window (the last 20 offsets), whatever the chunks still hold.
    let h = head(&kv);
    assert_eq!(h.first_retained, h.offset - 19);
    for (from, to, limit) in [
        (0, u64::MAX, 100),
        (0, h.offset, 5),
        (h.offset - 3, h.offset + 9, 100),
        (h.first_retained + 1, h.first_retained + 16, 100),
        (1, 10, 100),
    ] {
        let got: Vec<u64> = reader
            .events(STREAM, from, to, limit)
            .unwrap()
            .iter()
            .map(|e| e.offset)
            .collect();
        let expect: Vec<u64> = (from.max(h.first_retained)..=to.min(h.offset))
            .take(limit)
            .collect();
        assert_eq!(got, expect, "events {from}..={to} limit {limit}");
    }
    for limit in [1usize, 16, 20, 50] {
        let got: Vec<u64> = reader
            .latest_events(STREAM, limit)
            .unwrap()
            .iter()
            .map(|e| e.offset)
            .collect();
        let expect: Vec<u64> = (h.first_retained..=h.offset).collect();
        assert_eq!(got, &expect[expect.len().saturating_sub(limit)..]);
    }

    // Unread counts among the newest `window` messages, by others, after a read position.
    for window in [5usize, 16, 30, 100] {
        let counted: Vec<&(u64, String, String, bool, bool)> = model
            .iter()
            .filter(|m| !m.4)
            .rev()
            .take(window)
            .filter(|m| !m.3)
            .collect();
        let users = [
            ("u1".to_string(), 10u64),
            ("u2".to_string(), 40),
            ("u3".to_string(), 0),
        ];
        let got = reader.unreads(STREAM, &users, window).unwrap();
        let expect: Vec<u64> = users
            .iter()
            .map(|(u, after)| counted.iter().filter(|m| m.0 > *after && &m.2 != u).count() as u64)
            .collect();
        assert_eq!(got, expect, "window {window}");
    }

    let replies: Vec<u64> = reader
        .replies(STREAM, "m1", 100)
        .unwrap()
        .iter()
        .map(|m| m.seq)
        .collect();
    let expect: Vec<u64> = model.iter().filter(|m| m.3).map(|m| m.0).collect();
    assert_eq!(replies, expect);
    assert_eq!(reader.message(STREAM, "m14").unwrap(), None);
    assert_eq!(
        reader.message(STREAM, "m15").unwrap().map(|m| m.seq),
        Some(15)
    );
}

/// A client message id names its message: the id is derived from the stream, the user and the
/// client id (a version-8 UUID, never a random one's), a client's retry (proposed later) is
/// answered as a duplicate with the first message, the same command applied again is not a
/// duplicate, and no key but the id index remembers the client id.
#[test]
fn a_client_message_id_names_its_message() {
    let id = client_message_id(STREAM, "u1", "cm1");
    assert_eq!(id, client_message_id(STREAM, "u1", "cm1"));
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 8);
    for other in [
        client_message_id("chat:app:c2", "u1", "cm1"),
        client_message_id(STREAM, "u2", "cm1"),
        client_message_id(STREAM, "u1", "cm2"),
        // Parts are length-prefixed: moving a character between them is another id.
        client_message_id(STREAM, "u1c", "m1"),
    ] {
        assert_ne!(id, other);
    }

    let mut kv = Mem::new();
    let send_at = |at: u64| {
        let mut m = message("proposer-id", "u1", Some("cm1".into()), None);
        m.created_at = at;
        command(
            100,
            StreamOp::Send {
                message: Box::new(m),
            },
        )
    };
    let first = apply_encoded(&ctx(1), &mut kv, &send_at(10)).unwrap();
    let stored = first.message().map(|m| m.id.clone());
    let StreamReply::Message {
        duplicate: false,
        events,
        ..
    } = first
    else {
        panic!("{first:?}")
    };
    assert_eq!(stored, Some(id.clone()));
    assert_eq!(events.len(), 1);
    let keys_after_first = kv.len();
    for (index, at, duplicate) in [(2, 10, false), (3, 99, true)] {
        let reply = apply_encoded(&ctx(index), &mut kv, &send_at(at)).unwrap();
        let message = reply.message().cloned();
        match reply {
            StreamReply::Message {
                duplicate: d,
                events,
                ..
            } => {
                let message = message.unwrap();
                assert_eq!(message.id, id);
                assert_eq!(message.seq, 1);
                assert_eq!(d, duplicate, "created at {at}");
                assert!(events.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(kv.len(), keys_after_first);
    // Purged, the id is free again: the next send with the client id is a new message.
    apply_encoded(
        &ctx(4),
        &mut kv,
        &command(
            100,
            StreamOp::Purge {
                message_id: id.clone(),
            },
        ),
    )
    .unwrap();
    match apply_encoded(&ctx(5), &mut kv, &send_at(200)).unwrap() {
        reply @ StreamReply::Message {
            duplicate: false, ..
        } => {
            let message = reply.into_message().unwrap();
            assert_eq!((message.id.as_str(), message.seq), (id.as_str(), 2));
        }
        other => panic!("{other:?}"),
    }
}

/// A send with client message id `cm{n}` by `u1`, proposed at `at`.
fn send_cmid(n: u64, at: u64) -> Vec<u8> {
    let mut m = message(
        &format!("proposer-{n}-{at}"),
        "u1",
        Some(format!("cm{n}")),
        None,
    );
    m.created_at = at;
    command(
        100,
        StreamOp::Send {
            message: Box::new(m),
        },
    )
}

/// The seq and duplicate flag of a send's reply.
fn sent(reply: StreamReply) -> (u64, bool) {
    let duplicate = matches!(
        reply,
        StreamReply::Message {
            duplicate: true,
            ..
        }
    );
    let message = reply.into_message().expect("a message reply");
    (message.seq, duplicate)
}

/// Client message ids stay deduplicated however many runs of the id index the stream has
/// merged since (`crate::id_index`), edits and purges find old messages, a purged id sends
/// anew, and a replica's reader finds what the applies stored.
#[test]
fn client_message_ids_stay_deduplicated_across_index_merges() {
    use crate::id_index::{FANOUT, TAIL};
    let mut kv = Mem::new();
    let n = (TAIL * FANOUT * 2 + TAIL / 2) as u64;
    for i in 1..=n {
        assert_eq!(
            sent(apply_encoded(&ctx(i), &mut kv, &send_cmid(i, i)).unwrap()),
            (i, false)
        );
    }
    let mut index = n;
    let mut run = |kv: &mut Mem, raw: Vec<u8>| {
        index += 1;
        apply_encoded(&ctx(index), kv, &raw).unwrap()
    };
    // Retries later (another proposal time) of ids in merged runs, a level-0 run and the tail.
    for i in [
        1,
        2,
        TAIL as u64,
        (TAIL * FANOUT) as u64 + 1,
        n - TAIL as u64,
        n - 1,
        n,
    ] {
        assert_eq!(
            sent(run(&mut kv, send_cmid(i, 10 * n + i))),
            (i, true),
            "cm{i}"
        );
    }
    assert_eq!(head(&kv).seq, n);
    let old = client_message_id(STREAM, "u1", "cm3");
    let edit = command(
        100,
        StreamOp::Edit {
            message_id: old.clone(),
            text: "edited".into(),
            now: 5,
        },
    );
    assert!(matches!(
        run(&mut kv, edit),
        StreamReply::Message {
            duplicate: false,
            ..
        }
    ));
    assert_eq!(message_at(&kv, 3).unwrap().text.as_deref(), Some("edited"));
    let purge = command(
        100,
        StreamOp::Purge {
            message_id: old.clone(),
        },
    );
    assert!(matches!(run(&mut kv, purge), StreamReply::Message { .. }));
    // Purged, the client id makes a new message; a retry of that one is a duplicate of it.
    assert_eq!(sent(run(&mut kv, send_cmid(3, 20 * n))), (n + 1, false));
    assert_eq!(sent(run(&mut kv, send_cmid(3, 21 * n))), (n + 1, true));

    let reader = StreamReader { reader: kv.clone() };
    assert_eq!(
        reader.message(STREAM, &old).unwrap().map(|m| m.seq),
        Some(n + 1)
    );
    for i in [1, 500, n] {
        let id = client_message_id(STREAM, "u1", &format!("cm{i}"));
        assert_eq!(reader.message(STREAM, &id).unwrap().map(|m| m.seq), Some(i));
    }
    assert!(reader.message(STREAM, "no-such-id").unwrap().is_none());
}

/// A stream written by format 7 (one index key per message) keeps working: its messages are
/// found, deduplicated, edited and purged, and new ones go to the packed index.
#[test]
fn messages_indexed_by_format_7_are_still_found() {
    let mut kv = Mem::new();
    for i in 1..=3u64 {
        apply_encoded(&ctx(i), &mut kv, &send_cmid(i, i)).unwrap();
    }
    // What format 7 stored instead of the packed index.
    let sk = StreamKeys(STREAM);
    kv.remove(&sk.id_tail());
    for i in 1..=3u64 {
        let id = client_message_id(STREAM, "u1", &format!("cm{i}"));
        kv.insert(sk.message_id(&id), i.to_be_bytes().to_vec());
    }
    assert_eq!(
        sent(apply_encoded(&ctx(10), &mut kv, &send_cmid(2, 99)).unwrap()),
        (2, true)
    );
    assert_eq!(
        sent(apply_encoded(&ctx(11), &mut kv, &send_cmid(4, 99)).unwrap()),
        (4, false)
    );
    let reader = StreamReader { reader: kv.clone() };
    let id1 = client_message_id(STREAM, "u1", "cm1");
    assert_eq!(
        reader.message(STREAM, &id1).unwrap().map(|m| m.seq),
        Some(1)
    );
    let purge = command(
        100,
        StreamOp::Purge {
            message_id: id1.clone(),
        },
    );
    apply_encoded(&ctx(12), &mut kv, &purge).unwrap();
    assert!(
        !kv.contains_key(&sk.message_id(&id1)),
        "its own key goes with it"
    );
    assert_eq!(
        sent(apply_encoded(&ctx(13), &mut kv, &send_cmid(1, 100)).unwrap()),
        (5, false)
    );
}

/// Reactions, pins, polls and votes: each applied twice (the cluster delivers at least once)
/// changes the stream once, the counts follow the per-user facts, readers see their own
/// reactions and votes, and a purge leaves nothing of them behind.
#[test]
fn annotations_apply_once_and_go_with_their_message() {
    use crate::model::{Poll, PollOption, Reactor};
    let mut kv = Mem::new();
    apply_encoded(&ctx(1), &mut kv, &send("m1", None)).unwrap();
    apply_encoded(&ctx(2), &mut kv, &send("m2", None)).unwrap();
    let react = |user: &str, emoji: &str, add: bool| {
        command(
            100,
            StreamOp::React {
                message_id: "m1".into(),
                emoji: emoji.into(),
                user: Reactor {
                    id: user.into(),
                    name: user.to_uppercase(),
                    image: None,
                },
                add,
                now: 10,
                max_per_user: 2,
            },
        )
    };
    let mut index = 2;
    let mut twice = |kv: &mut Mem, raw: &[u8]| {
        index += 1;
        let first = apply_encoded(&ctx(index), kv, raw).unwrap();
        let after = kv.clone();
        index += 1;
        let second = apply_encoded(&ctx(index), kv, raw).unwrap();
        assert_eq!(*kv, after, "applied again, nothing changes");
        assert!(
            second.events().is_none_or(|(e, _)| e.is_empty()),
            "{second:?}"
        );
        first
    };
    for (user, emoji) in [("u2", "+1"), ("u3", "+1"), ("u2", "tada")] {
        let r = twice(&mut kv, &react(user, emoji, true));
        assert_eq!(r.events().unwrap().0.len(), 1);
    }
    assert!(matches!(
        apply_encoded(&ctx(50), &mut kv, &react("u2", "fire", true)).unwrap(),
        StreamReply::Refused(_)
    ));
    twice(&mut kv, &react("u2", "+1", false));
    let pin = command(
        100,
        StreamOp::Pin {
            message_id: "m1".into(),
            by: Some("u1".into()),
            now: 11,
            max: 1,
        },
    );
    twice(&mut kv, &pin);
    let pin_other = command(
        100,
        StreamOp::Pin {
            message_id: "m2".into(),
            by: Some("u1".into()),
            now: 11,
            max: 1,
        },
    );
    assert!(matches!(
        apply_encoded(&ctx(51), &mut kv, &pin_other).unwrap(),
        StreamReply::Refused(_)
    ));
    let poll = Poll {
        id: "p1".into(),
        message_id: "m1".into(),
        question: "q".into(),
        options: ["a", "b"]
            .iter()
            .map(|o| PollOption {
                id: o.to_string(),
                text: o.to_string(),
                votes: 0,
            })
            .collect(),
        anonymous: false,
        multi: false,
        total_votes: 0,
        ends_at: Some(1_000),
        created_by: "u1".into(),
        created_at: 5,
    };
    twice(
        &mut kv,
        &command(
            100,
            StreamOp::CreatePoll {
                poll: Box::new(poll),
            },
        ),
    );
    let vote = |user: &str, options: Option<Vec<&str>>, now: u64| {
        command(
            100,
            StreamOp::Vote {
                poll_id: "p1".into(),
                user: user.into(),
                options: options.map(|o| o.into_iter().map(str::to_string).collect()),
                now,
            },
        )
    };
    let voted = |r: StreamReply| match r {
        StreamReply::Voted { total_votes, .. } => total_votes,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(voted(twice(&mut kv, &vote("u2", Some(vec!["a"]), 20))), 1);
    assert_eq!(voted(twice(&mut kv, &vote("u3", Some(vec!["a"]), 21))), 2);
    assert_eq!(voted(twice(&mut kv, &vote("u3", Some(vec!["b"]), 22))), 2);
    assert!(matches!(
        apply_encoded(&ctx(52), &mut kv, &vote("u2", Some(vec!["a", "b"]), 23)).unwrap(),
        StreamReply::Refused(_)
    ));
    assert!(matches!(
        apply_encoded(&ctx(53), &mut kv, &vote("u4", Some(vec!["a"]), 1_000)).unwrap(),
        StreamReply::Refused(_)
    ));
    // A vote is still removed after the end.
    assert_eq!(voted(twice(&mut kv, &vote("u2", None, 2_000))), 1);

    let reader = StreamReader { reader: kv.clone() };
    let m1 = reader.message(STREAM, "m1").unwrap().unwrap();
    let notes = reader.message_notes(STREAM, &m1, Some("u3")).unwrap();
    let a = &notes.annotations;
    assert_eq!(a.reaction_count(), 2);
    assert_eq!(
        a.reactions
            .iter()
            .map(|r| (r.emoji.as_str(), r.count))
            .collect::<Vec<_>>(),
        vec![("+1", 1), ("tada", 1)]
    );
    assert_eq!(a.reactions[0].users[0].id, "u3");
    assert_eq!(notes.own_reactions, vec!["+1".to_string()]);
    assert_eq!(notes.own_votes, vec!["b".to_string()]);
    assert_eq!(a.pin.as_ref().map(|p| p.by.as_str()), Some("u1"));
    let poll = a.poll.as_ref().unwrap();
    assert_eq!(
        (
            poll.total_votes,
            poll.options[0].votes,
            poll.options[1].votes
        ),
        (1, 0, 1)
    );
    assert_eq!(reader.pinned(STREAM).unwrap().len(), 1);
    assert_eq!(reader.poll(STREAM, "p1").unwrap().unwrap().votes.len(), 1);
    // The page read finds m1's notes and none for m2.
    let (page, _) = reader.messages(STREAM, MessagePage::Latest, 10).unwrap();
    let page_notes = reader.notes(STREAM, &page, Some("u2")).unwrap();
    assert_eq!(page_notes.len(), 1);
    assert_eq!(page_notes[0].seq, m1.seq);
    assert_eq!(page_notes[0].own_reactions, vec!["tada".to_string()]);

    let purge = command(
        100,
        StreamOp::Purge {
            message_id: "m1".into(),
        },
    );
    apply_encoded(&ctx(60), &mut kv, &purge).unwrap();
    let sk = StreamKeys(STREAM);
    for prefix in [sk.reactions(1), sk.votes(1), sk.all_pinned()] {
        assert!(Kv::scan_prefix(&kv, &prefix).unwrap().is_empty());
    }
    assert!(Kv::get(&kv, &sk.annotations(1)).unwrap().is_none());
    assert!(Kv::get(&kv, &sk.poll("p1")).unwrap().is_none());
}

/// Commands are kept in the Raft logs and events in the streams by their variant's index:
/// a variant added anywhere but last would make older entries decode as another one.
#[test]
fn stored_variant_indexes_never_move() {
    let index = |raw: Vec<u8>| raw[1];
    assert_eq!(index(codec::encode(&StreamOp::Drop).unwrap()), 8);
    let left = Event::MemberLeft {
        channel_id: String::new(),
        user_id: String::new(),
    };
    assert_eq!(index(codec::encode(&left).unwrap()), 9);
    let dir = crate::directory::DirCommand::RemoveMember {
        app_id: String::new(),
        channel_id: String::new(),
        user_id: String::new(),
    };
    assert_eq!(index(codec::encode(&dir).unwrap()), 15);
    // Issue 11's commands came last, in this order.
    let release = crate::directory::DirCommand::Lifecycle(
        crate::directory::lifecycle::LifeCommand::DropExport {
            app_id: String::new(),
            id: String::new(),
        },
    );
    assert_eq!(index(codec::encode(&release).unwrap()), 24);
    let logged = StreamOp::HooksDone { offsets: vec![] };
    assert_eq!(index(codec::encode(&logged).unwrap()), 24);
    let dropped = StreamOp::DropUpload { id: String::new() };
    assert_eq!(index(codec::encode(&dropped).unwrap()), 27);
}
