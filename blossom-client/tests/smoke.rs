//! The client against the mock region over loopback: the basic round trips.

use blossom_client::{BlossomClient, ChatOptions, ImageOptions, Message, ModelKind};
use blossom_mock::MockServer;
use futures_util::StreamExt;

async fn start() -> (MockServer, BlossomClient) {
    let server = MockServer::new(1);
    let (addr, _handle) = server.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let client = BlossomClient::builder().base_url(format!("http://{addr}")).api_key("sk_test_secret").build().unwrap();
    (server, client)
}

#[tokio::test]
async fn text_chat_image_models_round_trip() {
    let (server, client) = start().await;
    assert_eq!(client.text().generate("hello / world?").await.unwrap(), "echo: hello%20%2F%20world%3F");
    assert_eq!(client.text().chat(&[Message::user("hi")]).await.unwrap(), "Hello from the mock");
    let image = client.image().generate("a fox", &ImageOptions::default()).await.unwrap();
    assert_eq!(image.content_type, "image/png");
    assert_eq!(client.models(ModelKind::Text).await.unwrap().len(), 2);
    let deltas: Vec<String> =
        client.text().chat_stream(&[Message::user("hi")], &ChatOptions::default()).map(|d| d.unwrap()).collect().await;
    assert_eq!(deltas.concat(), "Hello from the mock");
    let stats = client.stats();
    assert_eq!(server.stats().connections, 1, "one connection reused for every call");
    assert_eq!(stats.connections_created, 1);
    assert_eq!(stats.connections_reused, 4);
    assert_eq!(stats.requests_total, 5);
    assert_eq!(stats.requests_succeeded, 5);
    assert_eq!(server.stats().requests, 5);
}
