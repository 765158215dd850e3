//! The REST client against a real node: typed answers for tokens, channels, members and
//! messages, and every error answer as `RestError::Api` with the server's code.

mod support;

use chatsdk_client::{NewChannel, RestClient, RestError};
use support::Server;

fn api_code(result: Result<impl std::fmt::Debug, RestError>) -> (u16, String) {
    match result {
        Err(RestError::Api { status, code, .. }) => (status, code),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_calls_round_trip() {
    let server = Server::start().await;
    let (alice, tokens) = server.user("alice").await;
    assert!(!tokens.ws_token.is_empty() && !tokens.refresh_token.is_empty());
    assert!(tokens.expires_in > 0);
    assert_eq!(tokens.user["id"], "alice");
    server.user("bob").await;
    server.user("carol").await;

    let channel = alice
        .create_channel(&NewChannel::new("group", "team", &["bob"]))
        .await
        .unwrap();
    assert_eq!(channel.kind, "group");
    assert_eq!(channel.name.as_deref(), Some("team"));
    assert_eq!(channel.member_count, 2);
    assert_eq!(channel.role.as_deref(), Some("owner"));

    let added = alice.add_members(&channel.id, &["carol"]).await.unwrap();
    assert!(added.success);
    assert_eq!(added.added_count, 1);

    let first = alice
        .send_message(&channel.id, "one", Some("c-1"))
        .await
        .unwrap();
    assert_eq!(first.text.as_deref(), Some("one"));
    assert_eq!(first.user_id, "alice");
    assert!(!first.duplicate);
    let replay = alice
        .send_message(&channel.id, "one", Some("c-1"))
        .await
        .unwrap();
    assert!(replay.duplicate);
    assert_eq!(replay.id, first.id);
    let second = alice.send_message(&channel.id, "two", None).await.unwrap();
    assert_eq!(second.seq, first.seq + 1);

    let page = alice
        .list_messages(&channel.id, Some(first.seq), Some(50))
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 1);
    assert_eq!(page.messages[0].text.as_deref(), Some("two"));
    assert_eq!(page.max_seq, second.seq);
    assert!(!page.has_more);

    let refreshed = alice.refresh(&tokens.refresh_token).await.unwrap();
    assert!(!refreshed.token.is_empty() && refreshed.token != tokens.token);
    // A refresh token works once.
    let (status, code) = api_code(alice.refresh(&tokens.refresh_token).await);
    assert_eq!((status, code.as_str()), (401, "UNAUTHORIZED"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_answers_are_typed() {
    let server = Server::start().await;
    let anonymous = RestClient::new(server.base_url()).unwrap();
    assert_eq!(
        api_code(anonymous.create_token("dave", None).await),
        (401, "UNAUTHORIZED".to_string())
    );
    let wrong_key = RestClient::new(server.base_url())
        .unwrap()
        .with_api_key("chatsdk_not_a_key");
    assert_eq!(api_code(wrong_key.create_token("dave", None).await).0, 401);

    let (alice, _) = server.user("alice").await;
    let missing = "00000000-0000-0000-0000-00000000beef";
    match alice.send_message(missing, "hi", None).await {
        Err(RestError::Api {
            status,
            code,
            message,
            request_id,
        }) => {
            assert_eq!((status, code.as_str()), (404, "NOT_FOUND"));
            assert!(!message.is_empty());
            assert!(request_id.is_some(), "every error carries a request id");
        }
        other => panic!("{other:?}"),
    }
    let (_, channel) = server.channel(&alice, &[]).await;
    let id = channel.rsplit(':').next().unwrap();
    assert_eq!(
        api_code(alice.send_message(id, "", None).await),
        (400, "BAD_REQUEST".to_string())
    );

    // Nothing listening: a transport error, not an API error.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let dead = RestClient::new(format!("http://{addr}")).unwrap();
    assert!(matches!(
        dead.create_token("x", None).await,
        Err(RestError::Transport(_))
    ));
    server.stop().await;
}
