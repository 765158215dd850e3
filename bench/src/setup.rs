//! Prepares our server for a run through its public REST API (with the client SDK): users and
//! their realtime tokens, channels and their members. Peers need no setup: a room exists once
//! someone subscribes.

use anyhow::Context;
use chatsdk_client::rest::{NewChannel, RestClient};
use futures::{stream, StreamExt, TryStreamExt};

use crate::gen::ConnSpec;
use crate::ournode::NodeInfo;

/// Requests in flight while setting up.
const SETUP_CONCURRENCY: usize = 32;
/// Members added per request.
const MEMBERS_PER_CALL: usize = 500;

/// One prepared channel: who subscribes and who publishes.
#[derive(Clone, Debug)]
pub struct Room {
    pub id: String,
    /// The realtime channel name, `chat:<app>:<id>`.
    pub channel: String,
    pub subscribers: Vec<ConnSpec>,
    pub publishers: Vec<ConnSpec>,
    /// User ids of the publishers (same order).
    pub publisher_ids: Vec<String>,
    /// REST access tokens of the publishers (same order).
    pub publisher_tokens: Vec<String>,
    /// REST access tokens of the subscribers (same order).
    pub subscriber_tokens: Vec<String>,
}

/// Mints tokens for users `<prefix>-0..n` (creating them).
pub async fn users(
    node: &NodeInfo,
    prefix: &str,
    n: usize,
) -> anyhow::Result<Vec<(String, String, String)>> {
    let rest = RestClient::new(format!("http://{}", node.http))?.with_api_key(&node.api_key);
    stream::iter(0..n)
        .map(|i| {
            let rest = rest.clone();
            let id = format!("{prefix}-{i}");
            async move {
                let t = rest
                    .create_token(&id, Some(&id))
                    .await
                    .with_context(|| format!("token for {id}"))?;
                Ok::<_, anyhow::Error>((id, t.token, t.ws_token))
            }
        })
        .buffered(SETUP_CONCURRENCY)
        .try_collect()
        .await
}

/// Creates `rooms` channels with `members` subscribing members and `publishers` publishing
/// members each (all distinct users).
pub async fn rooms(
    node: &NodeInfo,
    tag: &str,
    rooms: usize,
    members: usize,
    publishers: usize,
) -> anyhow::Result<Vec<Room>> {
    let per_room = members + publishers;
    let all = users(node, tag, rooms * per_room).await?;
    let base = format!("http://{}", node.http);
    let mut out = Vec::new();
    for r in 0..rooms {
        let people = &all[r * per_room..(r + 1) * per_room];
        // The first publisher (or member) creates the channel and adds everyone.
        let (owner_id, owner_token, _) = &people[per_room - 1];
        let owner = RestClient::new(base.clone())?.with_token(owner_token);
        let ch = owner
            .create_channel(&NewChannel::new("team", &format!("{tag}-{r}"), &[]))
            .await
            .context("creating a channel")?;
        let others: Vec<&str> = people
            .iter()
            .map(|p| p.0.as_str())
            .filter(|id| id != owner_id)
            .collect();
        for chunk in others.chunks(MEMBERS_PER_CALL) {
            owner
                .add_members(&ch.id, chunk)
                .await
                .context("adding members")?;
        }
        let channel = format!("chat:{}:{}", node.app_id, ch.id);
        let spec = |p: &(String, String, String)| ConnSpec {
            token: Some(p.2.clone()),
            room: channel.clone(),
            room_id: ch.id.clone(),
        };
        out.push(Room {
            id: ch.id.clone(),
            channel: channel.clone(),
            subscribers: people[..members].iter().map(spec).collect(),
            publishers: people[members..].iter().map(spec).collect(),
            publisher_ids: people[members..].iter().map(|p| p.0.clone()).collect(),
            publisher_tokens: people[members..].iter().map(|p| p.1.clone()).collect(),
            subscriber_tokens: people[..members].iter().map(|p| p.1.clone()).collect(),
        });
    }
    Ok(out)
}

/// Rooms for a peer: names only.
pub fn peer_rooms(rooms: usize, members: usize, publishers: usize) -> Vec<Room> {
    (0..rooms)
        .map(|r| {
            let name = format!("room.{r}");
            let spec = || ConnSpec {
                token: None,
                room: name.clone(),
                room_id: name.clone(),
            };
            Room {
                id: name.clone(),
                channel: name.clone(),
                subscribers: (0..members).map(|_| spec()).collect(),
                publishers: (0..publishers).map(|_| spec()).collect(),
                publisher_ids: Vec::new(),
                publisher_tokens: Vec::new(),
                subscriber_tokens: Vec::new(),
            }
        })
        .collect()
}
