//! A GraphQL websocket client (graphql-transport-ws and the legacy
//! graphql-ws), on tokio-tungstenite, and the change-feed cursors a
//! subscription starts from.

use serde_json::{Value, json};

use crate::accounts::TestUser;
use crate::app::TestApp;

impl TestApp {
    /// The change feed's position now: subscribe with it as `after` and no
    /// event written from here on can be missed, however late the
    /// subscription starts (graphql-ws does not acknowledge subscriptions).
    pub async fn change_cursor(&self) -> String {
        self.data(None, "{ changeCursor }", json!({})).await["changeCursor"].as_str().unwrap_or_default().to_owned()
    }

    /// The change feed's position now, as a cursor signed for `user`
    /// (cursors are bound to the viewer they were issued to).
    pub async fn change_cursor_for(&self, user: &TestUser) -> String {
        let data = self.data(Some(&user.token), "{ changeCursor }", json!({})).await;
        data["changeCursor"].as_str().unwrap_or_default().to_owned()
    }

    /// A websocket to `/graphql/ws` speaking `subprotocol`.
    pub async fn websocket(&self, subprotocol: &str) -> WsClient {
        WsClient::connect(&self.address, subprotocol).await
    }

    /// A graphql-transport-ws connection, initialised with `token`.
    pub async fn subscriber(&self, token: Option<&str>) -> WsClient {
        let mut ws = self.websocket("graphql-transport-ws").await;
        let ack = ws.init(token).await;
        assert_eq!(ack["type"], "connection_ack", "{ack}");
        ws
    }
}

/// A minimal GraphQL websocket client for tests, on tokio-tungstenite.
pub struct WsClient {
    socket: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

/// What the server sent: a JSON message, or the close frame's code.
#[derive(Debug, PartialEq)]
pub enum Received {
    Message(Value),
    Closed(Option<u16>),
}

impl WsClient {
    pub async fn connect(http_address: &str, subprotocol: &str) -> Self {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("{}/graphql/ws", http_address.replacen("http", "ws", 1));
        let mut request = url.into_client_request().expect("building the websocket request");
        request.headers_mut().insert("sec-websocket-protocol", subprotocol.parse().expect("a valid header value"));
        let (socket, response) = tokio_tungstenite::connect_async(request).await.expect("opening the websocket");
        assert_eq!(
            response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()),
            Some(subprotocol),
            "the server speaks the requested subprotocol"
        );
        Self { socket }
    }

    pub async fn send(&mut self, message: Value) {
        use futures_util::SinkExt;
        self.send_text(&message.to_string()).await;
        let _ = &mut self.socket.flush().await;
    }

    pub async fn send_text(&mut self, text: &str) {
        use futures_util::SinkExt;
        self.socket
            .send(tokio_tungstenite::tungstenite::Message::Text(text.to_owned().into()))
            .await
            .expect("sending a websocket frame");
    }

    /// Sends `connection_init` with the token and returns the answer.
    pub async fn init(&mut self, token: Option<&str>) -> Value {
        let payload = token.map_or(json!({}), |t| json!({ "Authorization": format!("Bearer {t}") }));
        self.send(json!({ "type": "connection_init", "payload": payload })).await;
        match self.receive().await {
            Received::Message(message) => message,
            Received::Closed(code) => panic!("closed with {code:?} instead of acknowledging"),
        }
    }

    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({ "type": "subscribe", "id": id, "payload": { "query": query, "variables": variables } }))
            .await;
    }

    /// The next message (answering and skipping server pings) or the close,
    /// within 20 seconds in all: pings do not extend the wait.
    pub async fn receive(&mut self) -> Received {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let next = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .expect("no message from the server within 20 s");
            match next {
                Some(Ok(Message::Text(text))) => {
                    let message: Value = serde_json::from_str(text.as_str()).unwrap_or_else(|e| panic!("{e}: {text}"));
                    if message["type"] == "ping" {
                        self.send(json!({ "type": "pong" })).await;
                        continue;
                    }
                    if message["type"] == "ka" {
                        continue;
                    }
                    return Received::Message(message);
                }
                Some(Ok(Message::Close(frame))) => return Received::Closed(frame.map(|f| u16::from(f.code))),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Received::Closed(None),
            }
        }
    }

    /// The next text frame as it is, pings included.
    pub async fn raw_text(&mut self) -> String {
        use futures_util::StreamExt;
        loop {
            let next = tokio::time::timeout(std::time::Duration::from_secs(20), self.socket.next())
                .await
                .expect("no message from the server within 20 s");
            match next {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => return text.as_str().to_owned(),
                Some(Ok(_)) => {}
                other => panic!("socket ended: {other:?}"),
            }
        }
    }

    /// The next text frame, or `None` once the server closes (20 s at most).
    pub async fn raw_text_or_close(&mut self) -> Option<String> {
        use futures_util::StreamExt;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let next = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .expect("the server neither wrote nor closed within 20 s");
            match next {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => return Some(text.as_str().to_owned()),
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_)) | Err(_)) | None => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    /// The next message, failing the test on a close.
    pub async fn message(&mut self) -> Value {
        match self.receive().await {
            Received::Message(message) => message,
            Received::Closed(code) => panic!("closed with {code:?} while waiting for a message"),
        }
    }

    /// The payload `data` of the next `next` message of subscription `id`.
    pub async fn next_data(&mut self, id: &str) -> Value {
        let message = self.message().await;
        assert_eq!(message["id"], id, "{message}");
        assert_eq!(message["type"], "next", "{message}");
        assert!(message["payload"].get("errors").is_none(), "{message}");
        message["payload"]["data"].clone()
    }

    /// The close code the server ends the connection with.
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            if let Received::Closed(code) = self.receive().await {
                return code;
            }
        }
    }
}

impl WsClient {
    /// Sends `text` while reading what the server answers, and returns the
    /// close code it ends the connection with: for a message the server
    /// refuses before reading it whole, when sending would never finish.
    pub async fn send_text_until_closed(&mut self, text: &str) -> Option<u16> {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let (mut sink, mut stream) = (&mut self.socket).split();
        let send = async {
            let _ = sink.send(Message::Text(text.to_owned().into())).await;
            std::future::pending::<()>().await;
        };
        let close = async {
            loop {
                match stream.next().await {
                    Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return None,
                }
            }
        };
        let closed = async {
            tokio::select! {
                code = close => code,
                () = send => None,
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(20), closed)
            .await
            .expect("the server did not close within 20 s")
    }
}
