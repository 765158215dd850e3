//! Webhooks: their management (app admins and server keys), the wrapping of stream writes
//! whose events a webhook wants, and the dispatcher that delivers pending events from the
//! shards this node leads (see [`crate::hooks`] for the delivery contract).

use super::*;
use crate::directory::webhooks::HookCommand;
use crate::hooks::{self, Attempt, Outgoing};
use crate::model::{HookDelivery, Webhook};
use crate::stream::hooks::Pending;

/// Webhooks an app may have.
pub const MAX_WEBHOOKS_PER_APP: usize = 20;

/// A new webhook.
#[derive(Clone, Debug, Default)]
pub struct NewWebhook {
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    pub secret: Option<String>,
    pub enabled: Option<bool>,
}

/// Changes to a webhook; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct WebhookPatch {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

/// The `webhook:` stream holding a webhook's delivery log.
fn log_stream(app: &str, hook: &str) -> String {
    colon_joined(&["webhook", app, hook])
}

fn check_events(events: &[String]) -> Result<Vec<String>, ChatError> {
    if events.is_empty() {
        return Err(ChatError::bad("events must name at least one event"));
    }
    let mut out: Vec<String> = Vec::new();
    for e in events {
        let c = hooks::canonical(e).ok_or_else(|| {
            ChatError::bad(format!(
                "unknown event {e}; events are {} (message.created is message.new)",
                hooks::CATALOGUE[..hooks::CATALOGUE.len() - 1].join(", ")
            ))
        })?;
        if !out.iter().any(|o| o == c) {
            out.push(c.to_string());
        }
    }
    Ok(out)
}

fn check_url(url: &str) -> Result<(), ChatError> {
    hooks::check_url(url)
        .map(|_| ())
        .map_err(|e| ChatError::bad(e.to_string()))
}

/// `{event, created_at, app_id, data}`, the body of every delivery.
fn body(event: &str, app: &str, data: Value) -> Vec<u8> {
    json!({
        "event": event,
        "created_at": time::iso(time::now_ms()),
        "app_id": app,
        "data": data,
    })
    .to_string()
    .into_bytes()
}

/// A delivery of `body` (event `event`) to `hook`.
fn outgoing(
    hook: &Webhook,
    delivery_id: String,
    event: impl Into<String>,
    body: Vec<u8>,
) -> Outgoing {
    Outgoing {
        url: hook.url.clone(),
        secret: hook.secret.clone(),
        delivery_id,
        event: event.into(),
        body,
    }
}

/// The payload of a stored event's envelope.
fn payload_of(e: &Event) -> Value {
    let mut envelope: Value = serde_json::from_str(&render::event(e)).unwrap_or(Value::Null);
    envelope
        .get_mut("payload")
        .map(Value::take)
        .unwrap_or(Value::Null)
}

impl Chat {
    fn hook_owner(&self, caller: &Caller, id: &str) -> Result<Webhook, ChatError> {
        self.require_app_admin(caller)?;
        self.inner
            .directory
            .webhook(&caller.app, id)?
            .map(Arc::unwrap_or_clone)
            .ok_or_else(|| ChatError::not_found("webhook"))
    }

    /// Saves a webhook; every node knows it when this returns, so no event written afterwards
    /// on another node misses being recorded for it.
    async fn put_webhook(&self, hook: Webhook) -> Result<Webhook, ChatError> {
        match self
            .dir_everywhere(DirCommand::Webhook(HookCommand::Put {
                hook: Box::new(hook),
            }))
            .await?
        {
            DirReply::Webhook(h) => Ok(*h),
            other => Err(unexpected(other)),
        }
    }

    /// Creates a webhook (app admins and server keys); the secret is supplied (16 to 255
    /// characters) or made here, and shown in this answer and on regeneration only.
    pub async fn create_webhook(
        &self,
        caller: &Caller,
        new: NewWebhook,
    ) -> Result<Webhook, ChatError> {
        self.require_app_admin(caller)?;
        check_url(&new.url)?;
        let events = check_events(&new.events)?;
        if let Some(d) = &new.description {
            validate::text_len("description", d, 0, 500)?;
        }
        let secret = match new.secret {
            Some(s) => {
                validate::text_len("secret", &s, 16, 255)?;
                s
            }
            None => hooks::sign::new_secret(),
        };
        if self.inner.directory.webhooks(&caller.app)?.len() >= MAX_WEBHOOKS_PER_APP {
            return Err(ChatError::LimitExceeded(format!(
                "an app has at most {MAX_WEBHOOKS_PER_APP} webhooks"
            )));
        }
        let now = time::now_ms();
        self.put_webhook(Webhook {
            id: new_id(),
            app_id: caller.app.clone(),
            url: new.url,
            events,
            description: new.description,
            secret,
            enabled: new.enabled.unwrap_or(true),
            failure_count: 0,
            last_failure_at: None,
            disabled_reason: None,
            created_by: caller.user.clone(),
            created_at: now,
            updated_at: now,
        })
        .await
    }

    /// The app's webhooks, oldest first (app admins and server keys).
    pub fn webhooks(&self, caller: &Caller) -> Result<Vec<Webhook>, ChatError> {
        self.require_app_admin(caller)?;
        let mut list = Arc::unwrap_or_clone(self.inner.directory.webhooks(&caller.app)?);
        list.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(list)
    }

    pub fn webhook(&self, caller: &Caller, id: &str) -> Result<Webhook, ChatError> {
        self.hook_owner(caller, id)
    }

    /// Changes a webhook; turning it on again clears its failures.
    pub async fn update_webhook(
        &self,
        caller: &Caller,
        id: &str,
        patch: WebhookPatch,
    ) -> Result<Webhook, ChatError> {
        let mut hook = self.hook_owner(caller, id)?;
        if let Some(url) = patch.url {
            check_url(&url)?;
            hook.url = url;
        }
        if let Some(events) = patch.events {
            hook.events = check_events(&events)?;
        }
        if let Some(d) = patch.description {
            validate::text_len("description", &d, 0, 500)?;
            hook.description = Some(d);
        }
        if let Some(on) = patch.enabled {
            if on && !hook.enabled {
                hook.failure_count = 0;
                hook.disabled_reason = None;
            }
            hook.enabled = on;
        }
        hook.updated_at = time::now_ms();
        self.put_webhook(hook).await
    }

    pub async fn delete_webhook(&self, caller: &Caller, id: &str) -> Result<(), ChatError> {
        self.hook_owner(caller, id)?;
        match self
            .dir(DirCommand::Webhook(HookCommand::Delete {
                app_id: caller.app.clone(),
                id: id.to_string(),
            }))
            .await?
        {
            DirReply::Done => {}
            other => return Err(unexpected(other)),
        }
        if let Err(e) = self
            .write_stream(&log_stream(&caller.app, id), StreamOp::Drop)
            .await
        {
            tracing::warn!(error = %e, "webhook delivery log not removed");
        }
        Ok(())
    }

    /// A new secret for a webhook (the old one stops signing at once).
    pub async fn regenerate_webhook_secret(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<Webhook, ChatError> {
        let mut hook = self.hook_owner(caller, id)?;
        hook.secret = hooks::sign::new_secret();
        hook.updated_at = time::now_ms();
        self.put_webhook(hook).await
    }

    /// Sends a `webhook.test` event once, now (no retries), and logs it.
    pub async fn test_webhook(&self, caller: &Caller, id: &str) -> Result<Attempt, ChatError> {
        let hook = self.hook_owner(caller, id)?;
        let out = outgoing(
            &hook,
            new_id(),
            "webhook.test",
            body(
                "webhook.test",
                &caller.app,
                json!({"webhookId": hook.id, "message": "a test delivery"}),
            ),
        );
        let config = hooks::HookConfig {
            retries: 0,
            ..self.inner.hooks.config.clone()
        };
        let attempt = hooks::deliver(&self.inner.hooks.client, &config, &out).await;
        self.log_delivery(&hook, &out, &attempt).await;
        Ok(attempt)
    }

    /// A page of a webhook's delivery log, newest first.
    pub async fn webhook_deliveries(
        &self,
        caller: &Caller,
        id: &str,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<HookDelivery>, ChatError> {
        self.hook_owner(caller, id)?;
        match self
            .query(
                &log_stream(&caller.app, id),
                StreamQuery::Deliveries { limit, offset },
            )
            .await?
        {
            QueryAnswer::Deliveries(list) => Ok(list),
            _ => Err(ChatError::Internal("unexpected answer".into())),
        }
    }

    // ---- recording events for delivery

    /// Whether `app` has an enabled webhook, as this node's directory knows.
    pub fn has_webhooks(&self, app: &str) -> bool {
        !self.wanted_events(app).is_empty()
    }

    /// The event names `app`'s enabled webhooks want (empty: none; one cached read).
    fn wanted_events(&self, app: &str) -> Vec<String> {
        let Ok(list) = self.inner.directory.webhooks(app) else {
            return Vec::new();
        };
        let mut out: Vec<String> = Vec::new();
        for h in list.iter().filter(|h| h.enabled) {
            for e in &h.events {
                if !out.contains(e) {
                    out.push(e.clone());
                }
            }
        }
        out
    }

    /// `app`'s enabled webhooks that want `event` (one cached read).
    fn hooks_for(&self, app: &str, event: &str) -> Vec<Webhook> {
        self.inner
            .directory
            .webhooks(app)
            .map(|list| {
                list.iter()
                    .filter(|h| h.enabled && h.events.iter().any(|e| e == event))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `op` on `stream`, wrapped so that its events a webhook of the stream's app wants are
    /// recorded for delivery in the same command (when any is).
    pub(super) fn with_hooks(&self, stream: &str, op: StreamOp) -> StreamOp {
        let Some((_, app, _)) = split_stream(stream) else {
            return op;
        };
        let events = self.wanted_events(app);
        if events.is_empty() {
            return op;
        }
        StreamOp::Hooked {
            op: Box::new(op),
            events,
        }
    }

    /// Delivers an event that is not written to a stream (typing, presence, reports) to the
    /// app's webhooks that want it, once, from here: retried, not durable. At most
    /// [`MAX_DIRECT_DELIVERIES`] run at once; beyond that the event is dropped (and logged).
    pub(super) fn hook_now(&self, app: &str, event: &'static str, data: impl FnOnce() -> Value) {
        let targets = self.hooks_for(app, event);
        if targets.is_empty() {
            return;
        }
        let payload = body(event, app, data());
        for hook in targets {
            let Ok(permit) = self.inner.hooks.direct.clone().try_acquire_owned() else {
                tracing::warn!(
                    app,
                    event,
                    "too many webhook deliveries in flight: event dropped"
                );
                return;
            };
            let out = outgoing(&hook, new_id(), event, payload.clone());
            let chat = self.clone();
            tokio::spawn(async move {
                let stop = chat.inner.hooks.stop.clone();
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => {}
                    _ = async {
                        let runtime = &chat.inner.hooks;
                        let attempt = hooks::deliver(&runtime.client, &runtime.config, &out).await;
                        chat.settle(&hook, &out, &attempt).await;
                    } => {}
                }
                drop(permit);
            });
        }
    }

    // ---- delivering

    /// Records a delivery's outcome: the log, and the webhook's failure count when it moves.
    async fn settle(&self, hook: &Webhook, out: &Outgoing, attempt: &Attempt) {
        self.log_delivery(hook, out, attempt).await;
        if attempt.success && hook.failure_count == 0 {
            return;
        }
        let outcome = DirCommand::Webhook(HookCommand::Outcome {
            app_id: hook.app_id.clone(),
            id: hook.id.clone(),
            success: attempt.success,
            at: time::now_ms(),
            disable_after: self.inner.hooks.config.disable_after,
        });
        if let Err(e) = self.dir(outcome).await {
            tracing::warn!(webhook = %hook.id, error = %e, "webhook outcome not recorded");
        }
    }

    async fn log_delivery(&self, hook: &Webhook, out: &Outgoing, attempt: &Attempt) {
        self.inner.stats.webhook(attempt.success);
        let record = HookDelivery {
            id: out.delivery_id.clone(),
            webhook_id: hook.id.clone(),
            event: out.event.clone(),
            success: attempt.success,
            status_code: attempt.status,
            error: attempt.error.clone(),
            retry_count: attempt.retries,
            attempted_at: time::now_ms(),
        };
        let op = StreamOp::LogDelivery {
            record: Box::new(record),
            keep: self.inner.hooks.config.log_keep,
        };
        if let Err(e) = self
            .write_stream(&log_stream(&hook.app_id, &hook.id), op)
            .await
        {
            tracing::warn!(webhook = %hook.id, error = %e, "webhook delivery not logged");
        }
    }

    /// Delivers one shard's pending events (a batch), then removes them from its outbox.
    async fn deliver_pending(&self, pending: Vec<Pending>) {
        let mut jobs = Vec::new();
        for p in &pending {
            let Some((_, app, _)) = split_stream(&p.stream) else {
                continue;
            };
            let Some(name) = hooks::event_name(&p.event.event) else {
                continue;
            };
            let targets = self.hooks_for(app, name);
            if targets.is_empty() {
                continue;
            }
            let payload = body(name, app, payload_of(&p.event.event));
            for hook in targets {
                let out = outgoing(
                    &hook,
                    hooks::sign::delivery_id(&hook.id, &p.stream, p.event.offset),
                    name.to_string(),
                    payload.clone(),
                );
                jobs.push((hook, out));
            }
        }
        let config = &self.inner.hooks.config;
        let client = &self.inner.hooks.client;
        let stop = &self.inner.hooks.stop;
        let runs = futures::stream::iter(jobs.into_iter().map(|(hook, out)| async move {
            // A node that stops abandons its deliveries: the shard's next leader makes them.
            tokio::select! {
                biased;
                _ = stop.cancelled() => {}
                _ = async {
                    let attempt = hooks::deliver(client, config, &out).await;
                    self.settle(&hook, &out, &attempt).await;
                } => {}
            }
        }));
        use futures::StreamExt;
        runs.buffer_unordered(DELIVERY_CONCURRENCY)
            .collect::<Vec<()>>()
            .await;
        if stop.is_cancelled() {
            return;
        }
        let mut by_stream: HashMap<&str, Vec<u64>> = HashMap::new();
        for p in &pending {
            by_stream.entry(&p.stream).or_default().push(p.event.offset);
        }
        for (stream, offsets) in by_stream {
            if let Err(e) = self
                .write_stream(stream, StreamOp::HooksDone { offsets })
                .await
            {
                // Left pending: delivered again later (receivers deduplicate by delivery id).
                tracing::warn!(stream, error = %e, "delivered webhook events not cleared");
            }
        }
    }

    /// Starts the loop that delivers the pending events of the shards this node leads.
    pub(super) fn spawn_hook_dispatcher(&self) {
        let weak = Arc::downgrade(&self.inner);
        let wake = self.inner.hooks.wake.clone();
        let stop = self.inner.hooks.stop.clone();
        let every = self.inner.hooks.config.poll_every;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::timeout(every, wake.notified()) => {}
                }
                let Some(inner) = weak.upgrade() else { return };
                let chat = Chat { inner };
                let groups: Vec<GroupId> = chat
                    .inner
                    .cluster
                    .watch_leadership()
                    .borrow()
                    .iter()
                    .copied()
                    .filter(|g| *g != META_GROUP)
                    .collect();
                for group in groups {
                    let Some(reader) = chat.inner.cluster.local_reader(group) else {
                        continue;
                    };
                    match crate::stream::hooks::pending(&reader) {
                        Ok(p) if p.is_empty() => {}
                        Ok(p) => chat.deliver_pending(p).await,
                        Err(e) => tracing::error!(group, error = %e, "webhook outbox unreadable"),
                    }
                }
            }
        });
    }
}

/// Deliveries a dispatcher runs at once.
const DELIVERY_CONCURRENCY: usize = 32;
/// Deliveries of events that are not stored (typing, presence, reports) in flight per node.
pub(super) const MAX_DIRECT_DELIVERIES: usize = 256;

/// The webhook machinery a node holds.
pub(super) struct HookRuntime {
    pub(super) config: hooks::HookConfig,
    pub(super) client: hooks::HookClient,
    /// Rung after a write that recorded pending deliveries.
    pub(super) wake: Arc<tokio::sync::Notify>,
    pub(super) direct: Arc<tokio::sync::Semaphore>,
    /// Cancelled when the node stops: deliveries in flight are abandoned.
    pub(super) stop: tokio_util::sync::CancellationToken,
    /// The cluster's VAPID keys, once read or made (Web Push shares this runtime's client).
    pub(super) vapid: tokio::sync::OnceCell<Arc<crate::push::Vapid>>,
}

impl HookRuntime {
    pub(super) fn new(config: hooks::HookConfig) -> Result<HookRuntime, String> {
        Ok(HookRuntime {
            client: hooks::HookClient::new(&config)?,
            config,
            wake: Arc::new(tokio::sync::Notify::new()),
            direct: Arc::new(tokio::sync::Semaphore::new(MAX_DIRECT_DELIVERIES)),
            stop: tokio_util::sync::CancellationToken::new(),
            vapid: tokio::sync::OnceCell::new(),
        })
    }
}
