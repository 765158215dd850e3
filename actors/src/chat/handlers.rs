//! Handlers of the cluster messages the chat layer exchanges between nodes.

use super::*;

pub(super) struct DeliverHandler(pub(super) Arc<Fanout>);

impl UpperHandler for DeliverHandler {
    fn handle(&self, _from: NodeId, body: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        let result = match decode_batch(&body) {
            Some(batch) => {
                for d in batch {
                    self.0.deliver(&d.channel, d.offset, &d.frame);
                }
                Ok(Vec::new())
            }
            None => Err("malformed delivery batch".to_string()),
        };
        Box::pin(async move { result })
    }
}

pub(super) struct ChannelHandler(pub(super) std::sync::Weak<Inner>);

impl UpperHandler for ChannelHandler {
    fn handle(&self, _from: NodeId, body: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        let inner = self.0.upgrade();
        Box::pin(async move {
            let inner = inner.ok_or("chat layer stopped")?;
            let (stream, request): (String, ChannelRequest) =
                codec::decode(&body).map_err(|e| format!("malformed channel request: {e}"))?;
            let group = group_of(&stream, inner.shards());
            let answer = inner
                .env
                .registry
                .call(&inner.env, &stream, group, request)
                .await;
            codec::encode(&answer).map_err(|e| e.to_string())
        })
    }
}

pub(super) struct PresenceHandler(pub(super) Arc<Fanout>);

impl UpperHandler for PresenceHandler {
    fn handle(&self, _from: NodeId, body: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        let channel = String::from_utf8_lossy(&body).into_owned();
        let list: Vec<(String, String)> = self
            .0
            .presence(&channel)
            .into_iter()
            .map(|c| (c.client, c.user))
            .collect();
        let out = codec::encode(&list).map_err(|e| e.to_string());
        Box::pin(async move { out })
    }
}

pub(super) struct DisconnectHandler(pub(super) Arc<Fanout>);

impl UpperHandler for DisconnectHandler {
    fn handle(&self, _from: NodeId, body: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        self.0.disconnect_user(
            &String::from_utf8_lossy(&body),
            CloseReason::FORCE_DISCONNECT,
        );
        Box::pin(async { Ok(Vec::new()) })
    }
}

pub(super) struct UnsubscribeHandler(pub(super) Arc<Fanout>);

impl UpperHandler for UnsubscribeHandler {
    fn handle(&self, _from: NodeId, body: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        let result = match codec::decode::<(String, String)>(&body) {
            Ok((principal, stream)) => {
                let frame = bytes::Bytes::from(chatsdk_proto::realtime::push_unsubscribe(
                    &stream,
                    2000,
                    "unsubscribed",
                ));
                self.0.unsubscribe_user(&principal, &stream, &frame);
                Ok(Vec::new())
            }
            Err(e) => Err(format!("malformed unsubscribe: {e}")),
        };
        Box::pin(async move { result })
    }
}
