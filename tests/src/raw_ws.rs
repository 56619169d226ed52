//! Raw websocket frames, for clients that must not answer pings as every
//! websocket library does on its own.

/// Sends a websocket upgrade on `stream` by hand and returns the response
/// head (so the socket stays a plain one that answers nothing by itself).
pub async fn raw_upgrade(stream: &mut tokio::net::TcpStream, subprotocol: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!(
        "GET /graphql/ws HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: {subprotocol}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("the upgrade is sent");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut byte)).await;
        assert_eq!(read.expect("an answer within 10 s").expect("the upgrade's answer"), 1, "closed mid-head");
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A client's text frame: final, masked (with a zero key, so the payload
/// reads as is), shorter than 126 bytes.
pub fn client_text_frame(text: &str) -> Vec<u8> {
    let length = u8::try_from(text.len()).ok().filter(|&n| n < 126).expect("a short message");
    let mut frame = vec![0x81, 0x80 | length, 0, 0, 0, 0];
    frame.extend_from_slice(text.as_bytes());
    frame
}

/// The server's frames in `bytes` (unmasked, unfragmented): each opcode
/// with its text, or for a close its code.
pub fn server_frames(mut bytes: &[u8]) -> Vec<(u8, String)> {
    let mut frames = Vec::new();
    while bytes.len() >= 2 {
        let opcode = bytes[0] & 0x0f;
        let (length, start) = match bytes[1] & 0x7f {
            126 if bytes.len() >= 4 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            126 | 127 => break,
            n => (usize::from(n), 2),
        };
        let Some(payload) = bytes.get(start..start + length) else { break };
        let text = if opcode == 0x8 && payload.len() >= 2 {
            u16::from_be_bytes([payload[0], payload[1]]).to_string()
        } else {
            String::from_utf8_lossy(payload).into_owned()
        };
        frames.push((opcode, text));
        bytes = &bytes[start + length..];
    }
    frames
}

/// A websocket opened by hand on `http_address` (see [`raw_upgrade`]).
pub async fn raw_websocket(http_address: &str, subprotocol: &str) -> tokio::net::TcpStream {
    let mut stream =
        tokio::net::TcpStream::connect(http_address.trim_start_matches("http://")).await.expect("connected");
    let head = raw_upgrade(&mut stream, subprotocol).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stream
}

/// A client's masked control frame (zero key) with a short payload.
pub fn client_control_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let length = u8::try_from(payload.len()).ok().filter(|&n| n < 126).expect("a short payload");
    let mut frame = vec![0x80 | opcode, 0x80 | length, 0, 0, 0, 0];
    frame.extend_from_slice(payload);
    frame
}

/// The server's frames read from `stream` until `done` says so or the
/// server closes the socket; panics if neither happens `within`.
pub async fn raw_frames_until(
    stream: &mut tokio::net::TcpStream,
    within: std::time::Duration,
    done: impl Fn(&[(u8, String)]) -> bool,
) -> Vec<(u8, String)> {
    use tokio::io::AsyncReadExt;
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let frames = server_frames(&received);
        if done(&frames) {
            return frames;
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => panic!("not there within {within:?}: {frames:?}"),
            Ok(Ok(0) | Err(_)) => return frames,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}
