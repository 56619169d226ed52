//! The websocket under `http::ws`, without axum's `WebSocketUpgrade` and
//! without tungstenite's write path (issue 13): the upgrade is checked and
//! answered here, the connection's `TcpStream` is taken back from hyper,
//! and its two halves go separate ways.
//!
//! - Writing: server frames are encoded here ([`Frame`]: unmasked, FIN, one
//!   frame per message) and written by `ws_outbox` on the stream's write
//!   half, by whichever task produced them (header and payload as two
//!   slices, or one small copied buffer). The profile of a
//!   fan-out had tungstenite's sink, the `BiLock` of the split `WebSocket`
//!   and tokio-tungstenite's waker proxies in every delivery.
//! - Reading stays tungstenite's (`WebSocketStream` over [`ReadHalf`]):
//!   frame parsing, the message size limit, and its own replies (a Pong
//!   for each Ping, the Close reply), which it writes to the [`ReadHalf`]:
//!   those bytes are whole frames, and join the outbox's queue in order.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Bytes;
use axum::extract::ws::Message;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::OwnedReadHalf;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::serve::Watched;
use super::ws_outbox::Outbox;

/// One server frame, ready to write: its header, and the payload as it was
/// handed over (not copied).
pub struct Frame {
    head: [u8; 10],
    head_len: u8,
    pub payload: Bytes,
    /// A close frame: once it is written, the socket is done.
    pub close: bool,
}

pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// The largest payload of a control frame (RFC 6455 5.5).
const MAX_CONTROL: usize = 125;

/// The header of an unmasked, final frame of `len` bytes: the header's
/// bytes and how many of them are used (2, 4 or 10).
pub fn header(opcode: u8, len: usize) -> ([u8; 10], usize) {
    let mut head = [0u8; 10];
    head[0] = 0x80 | opcode;
    if let Some(short) = u8::try_from(len).ok().filter(|&n| n < 126) {
        head[1] = short;
        (head, 2)
    } else if let Ok(medium) = u16::try_from(len) {
        head[1] = 126;
        head[2..4].copy_from_slice(&medium.to_be_bytes());
        (head, 4)
    } else {
        head[1] = 127;
        // usize is at most 64 bits on every target Rust supports.
        head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (head, 10)
    }
}

impl Frame {
    pub fn new(opcode: u8, payload: Bytes) -> Self {
        let (head, head_len) = header(opcode, payload.len());
        Self { head, head_len: head_len as u8, payload, close: opcode == OP_CLOSE }
    }

    /// Bytes already framed (tungstenite's replies): written as they are.
    /// tungstenite writes each frame whole (its write buffer is 0, see
    /// `ws::serve`), so the first byte is the frame's: its Close reply ends
    /// the socket as ours does, and nothing queued behind it goes out.
    pub fn raw(bytes: Bytes) -> Self {
        let close = bytes.first().is_some_and(|first| first & 0x0f == OP_CLOSE);
        Self { head: [0; 10], head_len: 0, payload: bytes, close }
    }

    pub fn head(&self) -> &[u8] {
        &self.head[..usize::from(self.head_len)]
    }

    /// Header and payload together.
    pub fn len(&self) -> usize {
        usize::from(self.head_len) + self.payload.len()
    }
}

impl From<Message> for Frame {
    fn from(message: Message) -> Self {
        match message {
            Message::Text(text) => Frame::new(OP_TEXT, Bytes::from(text)),
            Message::Binary(bytes) => Frame::new(OP_BINARY, bytes),
            Message::Ping(bytes) => Frame::new(OP_PING, control(bytes)),
            Message::Pong(bytes) => Frame::new(OP_PONG, control(bytes)),
            Message::Close(None) => Frame::new(OP_CLOSE, Bytes::new()),
            Message::Close(Some(close)) => {
                // A control frame holds 125 bytes: the code and at most 123
                // of the reason, cut at a character boundary.
                let reason = close.reason.as_str();
                let mut end = reason.len().min(MAX_CONTROL - 2);
                while !reason.is_char_boundary(end) {
                    end -= 1;
                }
                let mut payload = Vec::with_capacity(2 + end);
                payload.extend_from_slice(&close.code.to_be_bytes());
                payload.extend_from_slice(&reason.as_bytes()[..end]);
                Frame::new(OP_CLOSE, payload.into())
            }
        }
    }
}

/// A Ping or Pong payload past the control frame limit is cut (ours are empty).
fn control(bytes: Bytes) -> Bytes {
    if bytes.len() > MAX_CONTROL { bytes.slice(..MAX_CONTROL) } else { bytes }
}

/// An upgrade refused: its status and why (as axum's `WebSocketUpgrade` answers).
pub type Refusal = (StatusCode, &'static str);

/// Checks an upgrade request as axum's `WebSocketUpgrade` does, in the same
/// order with the same answers; returns its `Sec-WebSocket-Key`.
pub fn check_upgrade(method: &Method, headers: &HeaderMap) -> Result<HeaderValue, Refusal> {
    let refuse = |status: StatusCode, body: &'static str| Err((status, body));
    if method != Method::GET {
        return refuse(StatusCode::METHOD_NOT_ALLOWED, "Request method must be `GET`");
    }
    let connection_upgrade = headers
        .get(header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("upgrade"));
    if !connection_upgrade {
        return refuse(StatusCode::BAD_REQUEST, "Connection header did not include 'upgrade'");
    }
    let is = |name: header::HeaderName, value: &str| {
        headers.get(name).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(value.as_bytes()))
    };
    if !is(header::UPGRADE, "websocket") {
        return refuse(StatusCode::BAD_REQUEST, "`Upgrade` header did not include 'websocket'");
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return refuse(StatusCode::BAD_REQUEST, "`Sec-WebSocket-Key` header missing");
    };
    if !is(header::SEC_WEBSOCKET_VERSION, "13") {
        return refuse(StatusCode::BAD_REQUEST, "`Sec-WebSocket-Version` header did not include '13'");
    }
    Ok(key.clone())
}

/// The 101 answer to an upgrade with `key`, naming the chosen subprotocol.
pub fn switching_protocols(key: &HeaderValue, protocol: Option<&'static str>) -> Response {
    let accept = derive_accept_key(key.as_bytes());
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    if let Some(protocol) = protocol {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocol));
    }
    response
}

/// The upgraded connection, taken apart: the read half for tungstenite,
/// the outbox holding the write half (and the connection's slot), and the
/// bytes the client sent right behind its upgrade request, read first.
pub struct Opened {
    pub read: OwnedReadHalf,
    pub out: Arc<Outbox>,
    pub read_buf: Vec<u8>,
}

/// Takes the `TcpStream` back from hyper. Only connections served by
/// `http::serve` can be (it serves them as `TokioIo<Watched>`); any other
/// wiring gets a close frame (1011) on the upgraded IO and an error in the
/// log rather than a websocket that silently works another way.
/// `writes` counts the socket's writes (`api_ws_writes`).
pub async fn open(upgraded: hyper::upgrade::Upgraded, writes: Counter) -> Option<Opened> {
    match upgraded.downcast::<TokioIo<Watched>>() {
        Ok(parts) => {
            let (stream, slot) = parts.io.into_inner().into_parts();
            let (read, write) = stream.into_split();
            Some(Opened { read, out: Arc::new(Outbox::new(write, slot, writes)), read_buf: parts.read_buf.to_vec() })
        }
        Err(upgraded) => {
            use tokio::io::AsyncWriteExt;
            tracing::error!("a websocket upgrade not served by http::serve: closing it (1011)");
            let frame = Frame::from(Message::Close(Some(axum::extract::ws::CloseFrame {
                code: 1011,
                reason: "Server misconfigured".into(),
            })));
            let mut io = TokioIo::new(upgraded);
            let _ = io.write_all(frame.head()).await;
            let _ = io.write_all(&frame.payload).await;
            let _ = io.shutdown().await;
            None
        }
    }
}

/// What tungstenite reads from and writes its own replies to: reads go to
/// the socket, writes (whole frames: a Pong, a Close reply) to the outbox.
pub struct ReadHalf {
    pub read: OwnedReadHalf,
    pub out: Arc<Outbox>,
}

impl AsyncRead for ReadHalf {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl AsyncWrite for ReadHalf {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        // Always all of it: tungstenite writes its buffer of whole frames,
        // so a reply never splits across queue entries.
        self.out.push_reply(Bytes::copy_from_slice(buf));
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::{Bytes, Frame, OP_CLOSE, OP_TEXT, header};

    #[test]
    fn a_raw_close_reply_ends_the_socket_as_ours_does_and_other_raw_frames_do_not() {
        let close = Bytes::from_static(&[0x88, 0x02, 0x03, 0xe8]);
        let pong = Bytes::from_static(&[0x8a, 0x00]);
        assert!(Frame::raw(close).close);
        assert!(!Frame::raw(pong).close);
        assert!(!Frame::raw(Bytes::new()).close);
    }

    /// The length of a frame header's payload, read back as a client would.
    fn read_len(head: &[u8]) -> usize {
        match head[1] & 0x7f {
            126 => usize::from(u16::from_be_bytes([head[2], head[3]])),
            127 => usize::try_from(u64::from_be_bytes(head[2..10].try_into().expect("8 bytes"))).expect("fits"),
            n => usize::from(n),
        }
    }

    #[test]
    fn frame_headers_use_the_shortest_length_encoding_at_each_boundary() {
        for (len, size) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10), (1 << 33, 10)] {
            let (head, used) = header(OP_TEXT, len);
            assert_eq!(used, size, "header size for {len}");
            assert_eq!(head[0], 0x81, "FIN and the text opcode");
            assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
            assert_eq!(read_len(&head[..used]), len);
        }
    }

    #[test]
    fn a_close_frame_carries_its_code_and_a_reason_cut_to_fit_a_control_frame() {
        use axum::extract::ws::{CloseFrame, Message};
        let frame =
            super::Frame::from(Message::Close(Some(CloseFrame { code: 1012, reason: "é".repeat(100).into() })));
        assert!(frame.close);
        assert_eq!(frame.head()[0], 0x80 | OP_CLOSE);
        assert!(frame.payload.len() <= 125, "{}", frame.payload.len());
        assert_eq!(&frame.payload[..2], &1012u16.to_be_bytes());
        assert!(std::str::from_utf8(&frame.payload[2..]).is_ok(), "cut at a character boundary");
        assert_eq!(read_len(frame.head()), frame.payload.len());
    }
}
