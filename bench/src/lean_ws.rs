//! The websocket client side of `bench fanout`, by hand: one plain
//! [`TcpStream`], one reusable read buffer per socket, frames parsed in
//! place. The bench client shares the machine's cores with the server it
//! measures, so every microsecond it spends per message is taken from the
//! server and shows in the latencies; a websocket library (a task-safe
//! stream wrapper, an owned `String` per message, a sink per send) cost
//! about as much per message as the server's own work per delivery.
//!
//! What it does (RFC 6455, client side): the HTTP upgrade with
//! `Sec-WebSocket-Key`, checking the 101, `Upgrade: websocket`,
//! `Connection: Upgrade`, the accept hash and the subprotocol; masked
//! client frames; server frames unmasked, of any length (7, 16 or 64-bit),
//! fragmented or not; a ping is answered with a pong of the same payload, a
//! close with a close echoing its status code (section 5.5.1), which ends
//! the socket. Anything else (a reserved
//! bit, a masked server frame, a binary message, an unknown opcode) is an
//! error, so a server that starts doing it is noticed rather than skipped.

use std::net::SocketAddr;
use std::ops::Range;

use base64::Engine;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Read buffer per socket: a `next` of the bench is ~130 bytes, and a
/// burst of events queued for one socket while it waited for the CPU is
/// still read in one call. 16 KiB x 10,000 sockets is 160 MiB of virtual
/// memory, touched only as far as reads fill it.
const READ_BUFFER: usize = 16 * 1024;

/// Once less than this is free at the buffer's end, the unread rest moves
/// to the front before the next read (rare: the buffer usually empties).
const MIN_READ: usize = 2 * 1024;

/// The longest frame, or message put together from fragments, read:
/// 16 MiB, far above any message of the server's.
const MAX_FRAME: usize = 16 * 1024 * 1024;

/// The GUID of RFC 6455 section 1.3, hashed with the key into the accept.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A client websocket on a plain TCP stream.
pub struct Socket {
    stream: TcpStream,
    /// Read buffer, `buf[start..end]` not yet parsed.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// A fragmented text message being put together (stays empty, with no
    /// allocation, while the server sends whole messages, as it does).
    fragments: Vec<u8>,
    fragmenting: bool,
    /// Outgoing frames are built here (kept, so sending allocates nothing).
    out: Vec<u8>,
    /// xorshift state for the masking keys: RFC 6455 wants a mask per frame
    /// a proxy cannot predict; a cheap generator is enough on loopback.
    mask_state: u32,
    /// The status code of the server's close frame, once it came (1005,
    /// "no status", for a close without one).
    close_code: Option<u16>,
}

/// Where [`Socket::next_text`] found the message.
enum Found {
    Buffer(Range<usize>),
    Fragments,
}

impl Socket {
    /// Connects from `source` to `server` and upgrades `path` with
    /// `protocol` as the one subprotocol; `seed` varies the key and masks.
    pub async fn connect(
        server: SocketAddr,
        source: SocketAddr,
        path: &str,
        protocol: &str,
        seed: u32,
    ) -> Result<Self, String> {
        // One loopback source address has ~28,000 ephemeral ports towards one
        // server port: past that, the caller binds 127.0.0.2, .3, ...
        let socket = TcpSocket::new_v4().map_err(|e| format!("creating a socket: {e}"))?;
        socket.bind(source).map_err(|e| format!("bind {source}: {e}"))?;
        let stream = socket.connect(server).await.map_err(|e| format!("connect {server}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let mut socket = Self {
            stream,
            buf: vec![0; READ_BUFFER],
            start: 0,
            end: 0,
            fragments: Vec::new(),
            fragmenting: false,
            out: Vec::with_capacity(256),
            mask_state: seed.wrapping_mul(0x9e37_79b9) | 1,
            close_code: None,
        };
        let mut key = [0u8; 16];
        for chunk in key.chunks_mut(4) {
            chunk.copy_from_slice(&socket.next_mask());
        }
        let key = base64::engine::general_purpose::STANDARD.encode(key);
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {server}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n"
        );
        socket.stream.write_all(request.as_bytes()).await.map_err(|e| format!("sending the upgrade: {e}"))?;
        // The response head; whatever follows it is the first frames.
        let head_end = loop {
            if let Some(at) = socket.buf[..socket.end].windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if socket.end == socket.buf.len() {
                return Err("an upgrade response head over 16 KiB".to_owned());
            }
            let n = socket
                .stream
                .read(&mut socket.buf[socket.end..])
                .await
                .map_err(|e| format!("reading the upgrade: {e}"))?;
            if n == 0 {
                return Err("closed during the upgrade".to_owned());
            }
            socket.end += n;
        };
        let head = String::from_utf8_lossy(&socket.buf[..head_end]).into_owned();
        socket.start = head_end;
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap_or_default();
        if !status.starts_with("HTTP/1.1 101 ") {
            return Err(format!("upgrade refused: {}", head.trim_end()));
        }
        // Every value of header `name`, after the status line (a header
        // may come more than once).
        let headers = |name: &str| -> Vec<String> {
            head.split("\r\n")
                .skip(1)
                .filter_map(|line| {
                    let (n, v) = line.split_once(':')?;
                    n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                })
                .collect()
        };
        let header = |name: &str| headers(name).into_iter().next();
        // RFC 6455 section 4.1: a 101 without these is not a websocket.
        if !header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
            return Err(format!("no `Upgrade: websocket` in the 101: {}", head.trim_end()));
        }
        // `Connection` is a list of tokens (`keep-alive, Upgrade`), maybe over several lines.
        let connection = headers("connection");
        if !connection.iter().flat_map(|v| v.split(',')).any(|token| token.trim().eq_ignore_ascii_case("upgrade")) {
            return Err(format!("no `Connection: Upgrade` in the 101: {}", head.trim_end()));
        }
        let accept = base64::engine::general_purpose::STANDARD
            .encode(Sha1::new().chain_update(key.as_bytes()).chain_update(WEBSOCKET_GUID).finalize());
        if header("sec-websocket-accept").as_deref() != Some(accept.as_str()) {
            return Err(format!("a wrong or missing Sec-WebSocket-Accept: {}", head.trim_end()));
        }
        if header("sec-websocket-protocol").as_deref() != Some(protocol) {
            return Err(format!("subprotocol {protocol} not accepted: {}", head.trim_end()));
        }
        Ok(socket)
    }

    /// The status code the server closed the socket with, if it sent a
    /// close frame.
    pub fn close_code(&self) -> Option<u16> {
        self.close_code
    }

    fn next_mask(&mut self) -> [u8; 4] {
        let mut x = self.mask_state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.mask_state = x;
        x.to_ne_bytes()
    }

    /// Sends one final, masked frame with `opcode` and `payload`.
    async fn send_frame(&mut self, opcode: u8, payload: &[u8]) -> Result<(), String> {
        let mask = self.next_mask();
        self.out.clear();
        self.out.push(0x80 | opcode);
        match payload.len() {
            n @ 0..=125 => self.out.push(0x80 | n as u8),
            n @ 126..=0xffff => {
                self.out.push(0x80 | 126);
                self.out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                self.out.push(0x80 | 127);
                self.out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        self.out.extend_from_slice(&mask);
        self.out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        self.stream.write_all(&self.out).await.map_err(|e| format!("sending a frame: {e}"))
    }

    /// Sends a text message.
    pub async fn send_text(&mut self, text: &str) -> Result<(), String> {
        self.send_frame(0x1, text.as_bytes()).await
    }

    /// Sends a close frame with status `code` (the client closing first).
    pub async fn close(&mut self, code: u16) -> Result<(), String> {
        self.send_frame(0x8, &code.to_be_bytes()).await
    }

    /// The next text message, or `None` once the server closed the socket
    /// (a close frame, answered here, or the end of the stream). Pings are
    /// answered here too.
    /// The bytes are not checked to be UTF-8: the caller reads ASCII keys
    /// and digits out of them, and anything it cannot read is its error.
    pub async fn next_text(&mut self) -> Result<Option<&[u8]>, String> {
        Ok(match self.next_found().await? {
            Some(Found::Buffer(range)) => Some(&self.buf[range]),
            Some(Found::Fragments) => Some(&self.fragments),
            None => None,
        })
    }

    async fn next_found(&mut self) -> Result<Option<Found>, String> {
        loop {
            let Some((fin, opcode, payload)) = self.parse_frame()? else {
                if !self.fill().await? {
                    return Ok(None);
                }
                continue;
            };
            match opcode {
                0x1 if fin && !self.fragmenting => return Ok(Some(Found::Buffer(payload))),
                0x1 if !self.fragmenting => {
                    self.fragments.clear();
                    self.fragments.extend_from_slice(&self.buf[payload]);
                    self.fragmenting = true;
                }
                0x0 if self.fragmenting => {
                    if self.fragments.len() + payload.len() > MAX_FRAME {
                        return Err(format!("a fragmented message over {MAX_FRAME} bytes"));
                    }
                    self.fragments.extend_from_slice(&self.buf[payload]);
                    if fin {
                        self.fragmenting = false;
                        return Ok(Some(Found::Fragments));
                    }
                }
                0x8 => {
                    // RFC 6455 5.5.1: answer with a close frame, echoing the
                    // status code (the first two bytes; no body, no code).
                    // The reason is not echoed. The server may already have
                    // gone: the socket ends either way.
                    let code = match payload.len() {
                        0 => None,
                        1 => return Err("a close frame with a 1-byte body (no room for a status code)".to_owned()),
                        _ => Some([self.buf[payload.start], self.buf[payload.start + 1]]),
                    };
                    let _ = self.send_frame(0x8, code.as_ref().map_or(&[][..], |c| &c[..])).await;
                    self.close_code = Some(code.map_or(1005, u16::from_be_bytes));
                    return Ok(None);
                }
                0x9 => {
                    // Control payloads are at most 125 bytes (checked in parse_frame).
                    let mut ping = [0u8; 125];
                    let n = payload.len();
                    ping[..n].copy_from_slice(&self.buf[payload]);
                    self.send_frame(0xA, &ping[..n]).await?;
                }
                0xA => {}
                0x2 => return Err("a binary message (graphql-ws is text)".to_owned()),
                _ => return Err(format!("opcode {opcode:#x} (fragmenting: {})", self.fragmenting)),
            }
        }
    }

    /// The frame at `buf[start..end]` if it is all there: FIN, opcode and
    /// the payload's range in `buf`; `start` moves past it.
    fn parse_frame(&mut self) -> Result<Option<(bool, u8, Range<usize>)>, String> {
        let bytes = &self.buf[self.start..self.end];
        let [first, second, ..] = *bytes else { return Ok(None) };
        if first & 0x70 != 0 {
            return Err(format!("reserved bits set ({first:#04x}): an extension was not negotiated"));
        }
        if second & 0x80 != 0 {
            return Err("a masked frame from the server".to_owned());
        }
        let (fin, opcode) = (first & 0x80 != 0, first & 0x0f);
        let (header, length) = match second & 0x7f {
            126 => match bytes.get(2..4) {
                Some(b) => (4, u64::from(u16::from_be_bytes([b[0], b[1]]))),
                None => return Ok(None),
            },
            127 => match bytes.get(2..10) {
                Some(b) => (10, u64::from_be_bytes(b.try_into().unwrap_or_default())),
                None => return Ok(None),
            },
            n => (2, u64::from(n)),
        };
        if opcode >= 0x8 && (!fin || length > 125) {
            return Err(format!("a control frame (opcode {opcode:#x}) fragmented or over 125 bytes"));
        }
        // The server refuses messages over 1 MiB itself (MAX_MESSAGE): a
        // longer frame is a broken stream, not one to allocate for (and
        // `header + length` cannot overflow below the cap).
        let length = usize::try_from(length)
            .ok()
            .filter(|length| *length <= MAX_FRAME)
            .ok_or_else(|| format!("a frame of {length} bytes (over {MAX_FRAME})"))?;
        if bytes.len() < header + length {
            // Not all here yet: make room for the whole frame from the
            // buffer's front (growing it only for a frame bigger than the
            // buffer, which the bench's messages never are).
            if self.start + header + length > self.buf.len() {
                self.buf.copy_within(self.start..self.end, 0);
                (self.start, self.end) = (0, self.end - self.start);
                if header + length > self.buf.len() {
                    self.buf.resize(header + length, 0);
                }
            }
            return Ok(None);
        }
        let payload = self.start + header..self.start + header + length;
        self.start = payload.end;
        Ok(Some((fin, opcode, payload)))
    }

    /// Reads more bytes; false at the end of the stream.
    async fn fill(&mut self) -> Result<bool, String> {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.buf.len() - self.end < MIN_READ {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await.map_err(|e| format!("reading: {e}"))?;
        self.end += n;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A one-connection server on loopback: reads the upgrade request and
    /// answers with the head `answer` makes of the request's accept hash,
    /// then sends `frames`; returns the address and the bytes the client
    /// sends after the upgrade, until it closes or 1 s of silence.
    async fn fake_server(
        answer: fn(&str) -> String,
        frames: Vec<u8>,
    ) -> (SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut request = Vec::new();
            let mut chunk = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut chunk).await.expect("read the request");
                assert!(n > 0, "the client hung up during the upgrade");
                request.extend_from_slice(&chunk[..n]);
            }
            let request = String::from_utf8(request).expect("an ASCII request");
            let key = request
                .lines()
                .find_map(|line| line.strip_prefix("Sec-WebSocket-Key: "))
                .expect("a Sec-WebSocket-Key")
                .trim();
            let accept = base64::engine::general_purpose::STANDARD
                .encode(Sha1::new().chain_update(key.as_bytes()).chain_update(WEBSOCKET_GUID).finalize());
            stream.write_all(answer(&accept).as_bytes()).await.expect("answer");
            stream.write_all(&frames).await.expect("frames");
            let mut sent = Vec::new();
            loop {
                match tokio::time::timeout(std::time::Duration::from_secs(1), stream.read(&mut chunk)).await {
                    Ok(Ok(n)) if n > 0 => sent.extend_from_slice(&chunk[..n]),
                    _ => return sent,
                }
            }
        });
        (address, server)
    }

    fn upgraded(accept: &str) -> String {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\nConnection: keep-alive, upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
        )
    }

    async fn connect(server: SocketAddr) -> Result<Socket, String> {
        let source = SocketAddr::from(([127, 0, 0, 1], 0));
        Socket::connect(server, source, "/graphql/ws", "graphql-transport-ws", 7).await
    }

    /// The frame at the start of `bytes` from a client: (first byte, masked,
    /// payload unmasked).
    fn client_frame(bytes: &[u8]) -> (u8, bool, Vec<u8>) {
        let length = usize::from(bytes[1] & 0x7f);
        assert!(length <= 125, "a short frame: {bytes:?}");
        let mask = &bytes[2..6];
        let payload = bytes[6..6 + length].iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m).collect();
        (bytes[0], bytes[1] & 0x80 != 0, payload)
    }

    #[tokio::test]
    async fn a_close_from_the_server_is_answered_with_a_masked_close_echoing_its_status_code() {
        // A close with status 4400 and a reason.
        let close = vec![0x88, 0x05, 0x11, 0x30, b'b', b'a', b'd'];
        let (address, server) = fake_server(upgraded, close).await;
        let mut socket = connect(address).await.expect("the upgrade");

        let next = socket.next_text().await.expect("no error");

        assert!(next.is_none(), "a close ends the socket");
        assert_eq!(socket.close_code(), Some(4400));
        drop(socket);
        let sent = server.await.expect("server");
        let (first, masked, payload) = client_frame(&sent);
        assert_eq!(first, 0x88, "a final close frame: {sent:?}");
        assert!(masked, "client frames are masked");
        assert_eq!(payload, 4400u16.to_be_bytes(), "the status code, echoed (the reason is not)");
    }

    #[tokio::test]
    async fn a_close_without_a_status_code_is_answered_with_an_empty_close() {
        let (address, server) = fake_server(upgraded, vec![0x88, 0x00]).await;
        let mut socket = connect(address).await.expect("the upgrade");

        assert!(socket.next_text().await.expect("no error").is_none());

        assert_eq!(socket.close_code(), Some(1005), "1005: no status code received");
        drop(socket);
        let sent = server.await.expect("server");
        assert_eq!(client_frame(&sent), (0x88, true, Vec::new()), "{sent:?}");
    }

    #[tokio::test]
    async fn a_101_without_what_a_websocket_upgrade_needs_is_refused() {
        // How the answer is spoilt, and what the refusal names.
        type Spoilt = fn(&str) -> String;
        let cases: [(Spoilt, &str); 3] = [
            (|accept| upgraded(accept).replace("upgrade: WebSocket\r\n", ""), "Upgrade: websocket"),
            (|accept| upgraded(accept).replace("upgrade: WebSocket\r\n", "upgrade: h2c\r\n"), "Upgrade: websocket"),
            (|accept| upgraded(accept).replace("keep-alive, upgrade", "keep-alive"), "Connection: Upgrade"),
        ];
        for (answer, names) in cases {
            let (address, _server) = fake_server(answer, Vec::new()).await;

            let refused = connect(address).await.err().expect("refused");

            assert!(refused.contains(names), "{refused}");
        }
    }

    #[tokio::test]
    async fn a_101_with_upgrade_among_several_connection_headers_is_accepted() {
        let answer: fn(&str) -> String = |accept| {
            upgraded(accept)
                .replace("Connection: keep-alive, upgrade\r\n", "Connection: keep-alive\r\nconnection: Upgrade\r\n")
        };
        let (address, _server) = fake_server(answer, Vec::new()).await;

        connect(address).await.expect("accepted");
    }
}
