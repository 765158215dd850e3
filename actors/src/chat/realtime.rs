//! What realtime sessions ask of the chat layer: positions, history, presence, access.

use super::*;

impl Chat {
    /// Where a stream stands and, when `since` is given, the events after it.
    pub async fn recover(
        &self,
        stream: &str,
        since: Option<(String, u64)>,
        limit: usize,
    ) -> Result<Position, ChatError> {
        let interest = self.inner.fanout.interest_gen(stream);
        position(
            self.query(
                stream,
                StreamQuery::Recover {
                    since,
                    limit,
                    interest,
                },
            )
            .await?,
        )
    }

    /// Retained history of a stream.
    pub async fn history(
        &self,
        stream: &str,
        since: Option<(String, u64)>,
        limit: usize,
        reverse: bool,
    ) -> Result<Position, ChatError> {
        position(
            self.query(
                stream,
                StreamQuery::History {
                    since,
                    limit,
                    reverse,
                },
            )
            .await?,
        )
    }

    /// Who is subscribed to `stream`, on every node (the other nodes are asked at once; one
    /// that does not answer is left out).
    pub async fn presence(&self, stream: &str) -> Vec<ClientInfo> {
        let mut out = self.inner.fanout.presence(stream);
        let asks = self.other_nodes().into_iter().map(|node| async move {
            let raw = self
                .inner
                .cluster
                .request_upper(node, TOPIC_PRESENCE, stream.as_bytes().to_vec())
                .await
                .ok()?;
            match codec::decode::<Vec<(String, String)>>(&raw) {
                Ok(list) => Some(list),
                Err(e) => {
                    tracing::warn!(node, error = %e, "undecodable presence answer");
                    None
                }
            }
        });
        for list in futures::future::join_all(asks).await.into_iter().flatten() {
            out.extend(
                list.into_iter()
                    .map(|(client, user)| ClientInfo { client, user }),
            );
        }
        out
    }

    /// Whether `user` may subscribe to the realtime channel `stream` of `app`.
    pub async fn may_subscribe(
        &self,
        app: &str,
        user: &str,
        stream: &str,
    ) -> Result<(), ChatError> {
        let (ns, stream_app, id) =
            split_stream(stream).ok_or_else(|| ChatError::bad("malformed channel name"))?;
        if stream_app != app {
            return Err(ChatError::forbidden("channel of another app"));
        }
        match ns {
            "chat" => {
                let ch = self
                    .channel(app, id)?
                    .ok_or_else(|| ChatError::not_found("channel"))?;
                if self.membership(app, id, user).await?.is_some()
                    || self.open_to(app, &ch, Some(user)).await?
                {
                    Ok(())
                } else {
                    Err(ChatError::forbidden("not a member of this channel"))
                }
            }
            "workspace" => {
                self.workspace_record(app, id)?;
                match self.workspace_membership(app, id, user).await? {
                    Some(_) => Ok(()),
                    None => Err(ChatError::forbidden("not a member of this workspace")),
                }
            }
            "user" if id == user => Ok(()),
            "user" => Err(ChatError::forbidden("another user's channel")),
            "app" => match self.user(app, user)? {
                Some(u) if u.is_admin() => Ok(()),
                _ => Err(ChatError::forbidden("app admins only")),
            },
            _ => Err(ChatError::NotFound(format!("namespace {ns}"))),
        }
    }
}
