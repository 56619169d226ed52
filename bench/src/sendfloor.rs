//! `bench sendfloor`: the kernel's cost of one delivery on this machine,
//! with no server.
//!
//! `bench fanout` spends most of the server's CPU in `sendto`, one per
//! delivery (one websocket frame per socket per event). This measures that
//! floor alone: N loopback TCP connections, and per "event" one
//! websocket-frame-sized write to every one of them from one sender thread
//! (then from two, each walking half), at a steady rate, while another
//! process drains them (a tokio reader, as the fan-out's client is). It
//! reports the sender threads' CPU per message (from
//! /proc/thread-self/schedstat: nanoseconds on CPU, not clock ticks), the
//! time to walk all N sockets per event, the reader's CPU per message, and
//! the latency from the event's start to the reader having the frame.
//!
//! The reader is a second process of this binary (`--drain`): the sender's
//! N sockets and the reader's N fit under an open-files limit of 20,000
//! each, as the server's and the fan-out client's do.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::AsyncReadExt;

use crate::fanout::Histogram;
use crate::server::cpu_seconds;

/// Options of `bench sendfloor`.
#[derive(clap::Args)]
pub struct Args {
    /// Loopback connections (the sender holds N sockets, the reader N).
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Bytes per websocket frame, header included (`bench fanout` prints
    /// what its `next` frames weigh).
    #[arg(long, default_value_t = 350)]
    bytes: usize,
    /// Events per second; each event is one frame to every connection.
    #[arg(long, default_value_t = 10)]
    rate: u32,
    /// Length of each phase.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Sender threads per phase, one phase each (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
    /// TCP_NODELAY on the sending sockets (the api server leaves Nagle on).
    #[arg(long)]
    nodelay: bool,
    /// Internal: run as the reader process.
    #[arg(long, hide = true)]
    drain: bool,
}

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(0))
}

/// Nanoseconds the calling thread has run on a CPU (user and system).
fn thread_cpu_nanos() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Where the send time sits in a frame: after the header (2 bytes up to
/// 125 of payload, 4 up to 65,535) and `{"type":"next","id":"1","payload":{"t":"`.
const PREFIX: &str = r#"{"type":"next","id":"1","payload":{"t":""#;

fn header_len(bytes: usize) -> usize {
    if bytes - 2 < 126 { 2 } else { 4 }
}

/// A server-to-client text frame (unmasked) of exactly `bytes` bytes whose
/// payload carries `sent` (µs since the epoch) at a fixed offset.
fn frame(bytes: usize, sent: u64) -> Vec<u8> {
    let header = header_len(bytes);
    let payload_len = bytes - header;
    let mut out = Vec::with_capacity(bytes);
    out.push(0x81);
    if header == 2 {
        out.push(u8::try_from(payload_len).unwrap_or(0));
    } else {
        out.push(126);
        out.extend_from_slice(&u16::try_from(payload_len).unwrap_or(0).to_be_bytes());
    }
    out.extend_from_slice(PREFIX.as_bytes());
    out.extend_from_slice(format!("{sent:020}\",\"pad\":\"").as_bytes());
    out.resize(bytes - 3, b'x');
    out.extend_from_slice(b"\"}}");
    out
}

fn sent_of(frame: &[u8], bytes: usize) -> u64 {
    let at = header_len(bytes) + PREFIX.len();
    std::str::from_utf8(&frame[at..at + 20]).ok().and_then(|t| t.parse().ok()).unwrap_or(0)
}

pub async fn run(args: Args) {
    assert!((64..=65_000).contains(&args.bytes), "--bytes between 64 and 65000");
    if args.drain {
        drain(args.bytes).await;
        return;
    }
    if let Err(err) = rlimit::increase_nofile_limit(u64::MAX) {
        println!("cannot raise this process's open-files limit: {err}");
    }
    tokio::task::spawn_blocking(move || send(&args)).await.expect("the sender");
}

/// One event's walk by one thread: its tick, when the walk began, when it ended.
type Walk = (Instant, Instant, Instant);

/// One phase's figures.
struct Phase {
    threads: usize,
    messages: u64,
    sender_cpu_nanos: u64,
    /// Per event: from its tick to the last write (waiting included), and
    /// from the first thread's start of the walk to the last write.
    walks: Vec<Duration>,
    walk_own: Vec<Duration>,
    wall: f64,
    sender_process_cpu: f64,
    reader_cpu: f64,
    report: String,
}

fn send(args: &Args) {
    let exe = std::env::current_exe().expect("locating this executable");
    let mut reader = Command::new(exe)
        .args(["sendfloor", "--drain", "--bytes", &args.bytes.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the reader process");
    let reader_pid = reader.id().to_string();
    let mut to_reader = reader.stdin.take().expect("the reader's stdin");
    let mut from_reader = BufReader::new(reader.stdout.take().expect("the reader's stdout"));
    let mut line = String::new();
    from_reader.read_line(&mut line).expect("the reader's port");
    let port: u16 = line.trim().parse().unwrap_or_else(|_| panic!("the reader said {line:?}"));

    println!("connecting {} loopback connections ...", args.connections);
    let started = Instant::now();
    let sockets: Vec<TcpStream> = (0..args.connections)
        .map(|i| {
            let socket = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("connection {i}: {e}"));
            socket.set_nodelay(args.nodelay).expect("TCP_NODELAY");
            socket
        })
        .collect();
    println!(
        "connected in {:.1} s; frames of {} bytes, {} events/s",
        started.elapsed().as_secs_f64(),
        args.bytes,
        args.rate
    );
    std::thread::sleep(Duration::from_secs(1));
    let sockets = Arc::new(sockets);

    let mut phases = Vec::new();
    for &threads in &args.threads {
        let threads = threads.clamp(1, 64);
        let events = u64::from(args.rate) * args.seconds;
        let interval = Duration::from_secs_f64(1.0 / f64::from(args.rate));
        let (self_cpu, reader_cpu) = (cpu_seconds("self"), cpu_seconds(&reader_pid));
        // A moment to start every thread before the first tick.
        let first = Instant::now() + Duration::from_millis(100);
        let chunk = sockets.len().div_ceil(threads);
        let phase_start = Instant::now();
        let per_thread: Vec<(u64, Vec<Walk>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let sockets = sockets.clone();
                    let bytes = args.bytes;
                    scope.spawn(move || {
                        let mine = &sockets[(t * chunk).min(sockets.len())..((t + 1) * chunk).min(sockets.len())];
                        let cpu = thread_cpu_nanos();
                        let mut walks = Vec::with_capacity(usize::try_from(events).unwrap_or(0));
                        for e in 0..events {
                            let tick = first + interval * u32::try_from(e).unwrap_or(0);
                            if let Some(wait) = tick.checked_duration_since(Instant::now()) {
                                std::thread::sleep(wait);
                            }
                            let started = Instant::now();
                            let frame = frame(bytes, now_micros());
                            for mut socket in mine {
                                socket.write_all(&frame).expect("writing a frame");
                            }
                            walks.push((tick, started, Instant::now()));
                        }
                        (thread_cpu_nanos() - cpu, walks)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("a sender thread")).collect()
        });
        let wall = phase_start.elapsed().as_secs_f64();
        let messages = events * sockets.len() as u64;
        // The event's walk: from its tick to the last thread's last write.
        let walks: Vec<Duration> = (0..usize::try_from(events).unwrap_or(0))
            .map(|e| {
                let tick = per_thread[0].1[e].0;
                per_thread.iter().map(|(_, w)| w[e].2.saturating_duration_since(tick)).max().unwrap_or_default()
            })
            .collect();
        let walk_own: Vec<Duration> = (0..usize::try_from(events).unwrap_or(0))
            .map(|e| {
                let start = per_thread.iter().map(|(_, w)| w[e].1).min().unwrap_or_else(Instant::now);
                per_thread.iter().map(|(_, w)| w[e].2.saturating_duration_since(start)).max().unwrap_or_default()
            })
            .collect();
        writeln!(to_reader, "report {messages}").expect("asking the reader");
        line.clear();
        from_reader.read_line(&mut line).expect("the reader's report");
        phases.push(Phase {
            threads,
            messages,
            sender_cpu_nanos: per_thread.iter().map(|(cpu, _)| cpu).sum(),
            walks,
            walk_own,
            wall,
            sender_process_cpu: cpu_seconds("self") - self_cpu,
            reader_cpu: cpu_seconds(&reader_pid) - reader_cpu,
            report: line.trim().to_owned(),
        });
    }
    drop(to_reader);
    let _ = reader.wait();

    println!();
    for p in &phases {
        let quantiles = |walks: &[Duration]| {
            let mut walks = walks.to_vec();
            walks.sort();
            let q = |f: f64| {
                walks
                    .get(((walks.len() as f64 * f).ceil() as usize).saturating_sub(1))
                    .map_or(0.0, |d| d.as_secs_f64() * 1e3)
            };
            format!("p50 {:.1} / p99 {:.1} / max {:.1} ms", q(0.5), q(0.99), q(1.0))
        };
        println!("sender threads              {}", p.threads);
        println!("messages                    {} ({} events x {})", p.messages, p.walks.len(), sockets.len());
        println!(
            "sender CPU per message      {:.2} µs (sender threads, schedstat)",
            p.sender_cpu_nanos as f64 / p.messages as f64 / 1e3
        );
        println!(
            "sender process CPU          {:.2} µs per message ({:.2} cores)",
            p.sender_process_cpu / p.messages as f64 * 1e6,
            p.sender_process_cpu / p.wall
        );
        println!(
            "reader process CPU          {:.2} µs per message ({:.2} cores)",
            p.reader_cpu / p.messages as f64 * 1e6,
            p.reader_cpu / p.wall
        );
        println!("walk of all sockets         {} (from its start)", quantiles(&p.walk_own));
        println!("tick to the walk's end      {} (waiting for the sender included)", quantiles(&p.walks));
        println!("reader                      {}", p.report);
        println!();
    }
}

/// The reader process: accepts connections, drains them, and on `report
/// <expected>` (once it has that many frames, or after 10 s) prints what it
/// received and the send-to-read latency since the last report.
async fn drain(bytes: usize) {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding the reader's port");
    println!("{}", listener.local_addr().expect("the reader's address").port());
    let received = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Arc::new(Histogram::new())));
    {
        let (received, latencies) = (received.clone(), latencies.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else { continue };
                let (received, latencies) = (received.clone(), latencies.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8 * 1024];
                    let mut filled = 0;
                    loop {
                        let n = match socket.read(&mut buf[filled..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        filled += n;
                        let now = now_micros();
                        let histogram = latencies.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
                        let mut at = 0;
                        while filled - at >= bytes {
                            histogram.record(now.saturating_sub(sent_of(&buf[at..at + bytes], bytes)));
                            received.fetch_add(1, Ordering::Relaxed);
                            at += bytes;
                        }
                        buf.copy_within(at..filled, 0);
                        filled -= at;
                    }
                });
            }
        });
    }
    // Commands from the sender on stdin, read by a thread (tokio's stdin
    // needs a feature the workspace does not enable).
    let (tx, mut commands) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut counted = 0;
    while let Some(command) = commands.recv().await {
        let Some(expected) = command.strip_prefix("report ").and_then(|n| n.parse::<u64>().ok()) else { continue };
        let deadline = Instant::now() + Duration::from_secs(10);
        while received.load(Ordering::Relaxed) - counted < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let got = received.load(Ordering::Relaxed) - counted;
        counted += got;
        let histogram = std::mem::replace(
            &mut *latencies.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
            Arc::new(Histogram::new()),
        );
        println!(
            "received {got} of {expected}; event start to frame read p50 {:.1} / p99 {:.1} / max {:.1} ms",
            histogram.quantile_ms(0.5),
            histogram.quantile_ms(0.99),
            histogram.quantile_ms(1.0)
        );
    }
}
