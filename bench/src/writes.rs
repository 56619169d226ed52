//! `bench writes`: what capturing changes costs the writers of a published
//! table. N connections straight to the embedded PostgreSQL (not through
//! the API) run single-row statements on `place` as fast as they can:
//! each writer updates rows of its own (no row-lock waits between writers)
//! and inserts new ones, alternately, every statement its own transaction.
//!
//! ```text
//! cargo build --release -p api -p bench
//! target/release/bench writes --writers 16 --seconds 5 --rounds 3
//! target/release/bench writes --synchronous-commit off   # without the WAL flush wait
//! ```
//!
//! Capture modes, measured in one run on one database, interleaved
//! (off, trigger, logical, off, ...) so that drift on a shared machine hits
//! them alike; the table reports the median round of each:
//! - `off`: the capture triggers of `place` disabled (the ceiling);
//! - `trigger`: the generated per-table functions (migration 000012) in the
//!   trigger mode: each writing transaction stamps its commit order under a
//!   lock and notifies (the fallback capture);
//! - `logical`: the same functions in the logical mode (migration 000014):
//!   writers only append to the log, and the server's sequencer stamps from
//!   a logical replication slot.
//!
//! The server's sequencer runs during the logical phases only: for the
//! others the bench ends its session and holds its lock (so decoding costs
//! the off and trigger phases nothing), and before a logical phase it lets
//! go and waits until the sequencer has caught up with the WAL. After each
//! logical phase it reports how long the sequencer took to stamp what the
//! writers had committed ("drain").
//!
//! Each mode runs twice per round: one writer (the latency a write gains)
//! and `--writers` at once (throughput, and how the commit stamp's lock and
//! the NOTIFY queue serialize writers). The server runs as usual meanwhile,
//! so its listener reads every captured change.

use std::time::{Duration, Instant};

use sea_orm::sqlx::{self, Connection, PgConnection};

use crate::server::{Server, api_binary, cpu_seconds};

/// The capture triggers of `place` (migration 000003).
const TRIGGERS: [&str; 3] = ["place_capture_insert", "place_capture_update", "place_capture_delete"];

/// The sequencer's session advisory lock (api/src/realtime/sequencer.rs),
/// as pg_locks shows a bigint key: high and low 32 bits.
const SEQUENCER_LOCK: i64 = 7_262_018_544;

/// Rows each writer updates in turn.
const ROWS_PER_WRITER: usize = 100;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Off,
    Trigger,
    Logical,
}

impl Mode {
    const ALL: [Self; 3] = [Self::Off, Self::Trigger, Self::Logical];

    fn name(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Trigger => "trigger (fallback)",
            Self::Logical => "logical (000014)",
        }
    }

    /// Enables or disables the capture triggers of `place`, sets the
    /// database's capture mode, and runs or stops the sequencer.
    async fn apply(self, admin: &mut PgConnection) {
        if self != Self::Logical {
            pause_sequencer(admin).await;
        }
        let mut sql = String::new();
        for name in TRIGGERS {
            sql.push_str(&format!(
                "ALTER TABLE place {} TRIGGER {name};",
                if self == Self::Off { "DISABLE" } else { "ENABLE" }
            ));
        }
        sql.push_str(match self {
            Self::Logical => "SELECT app_capture_set_mode('logical');",
            _ => "SELECT app_capture_set_mode('trigger');",
        });
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut *admin)
            .await
            .unwrap_or_else(|e| panic!("switching capture to {self:?}: {e}"));
        if self == Self::Logical {
            resume_sequencer(admin).await;
        }
    }
}

/// Ends the server's sequencer session and holds its lock, so nothing
/// decodes WAL (the server's candidate waits for the lock).
async fn pause_sequencer(admin: &mut PgConnection) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let held: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()
                            AND classid = $1 AND objid = $2)",
        )
        .bind(SEQUENCER_LOCK >> 32)
        .bind(SEQUENCER_LOCK & 0xffff_ffff)
        .fetch_one(&mut *admin)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        if held {
            return;
        }
        sqlx::query(
            "SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
             WHERE d.datname = current_database() AND l.locktype = 'advisory' AND l.granted
               AND l.classid = $1 AND l.objid = $2",
        )
        .bind(SEQUENCER_LOCK >> 32)
        .bind(SEQUENCER_LOCK & 0xffff_ffff)
        .execute(&mut *admin)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let _: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(SEQUENCER_LOCK)
            .fetch_one(&mut *admin)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(Instant::now() < deadline, "cannot take the sequencer's lock");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Lets the server's sequencer lead again and waits until it has stamped
/// everything committed so far. Returns how long that took.
async fn resume_sequencer(admin: &mut PgConnection) -> Duration {
    let _: bool = sqlx::query_scalar("SELECT pg_advisory_unlock($1)")
        .bind(SEQUENCER_LOCK)
        .fetch_one(&mut *admin)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sequenced(admin).await
}

/// Waits until the sequencer's slot has passed the WAL flushed now (every
/// commit before it stamped). Returns how long that took.
async fn sequenced(admin: &mut PgConnection) -> Duration {
    let started = Instant::now();
    let target: String = sqlx::query_scalar("SELECT pg_current_wal_flush_lsn()::text")
        .fetch_one(&mut *admin)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    loop {
        let past: bool = sqlx::query_scalar(
            "SELECT coalesce(bool_or(confirmed_flush_lsn >= $1::pg_lsn), false) FROM pg_replication_slots
             WHERE database = current_database()",
        )
        .bind(&target)
        .fetch_one(&mut *admin)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        if past {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the sequencer did not catch up within 120 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// One phase's figures.
#[derive(Clone, Copy, Default)]
struct Figures {
    writes_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// PostgreSQL's CPU (every process of the cluster) per write.
    pg_cpu_us: f64,
}

/// The embedded cluster's superuser URL and postmaster pid, from DATA_DIR.
fn embedded(server: &Server) -> (String, String) {
    let password =
        std::fs::read_to_string(server.data_dir.join("pg.password")).expect("the embedded database's password");
    let pid_file = std::fs::read_to_string(server.data_dir.join("pg/postmaster.pid"))
        .expect("the embedded database's postmaster.pid");
    let mut lines = pid_file.lines();
    let pid = lines.next().unwrap_or_default().trim().to_owned();
    let port = lines.nth(2).unwrap_or_default().trim().to_owned();
    (format!("postgres://postgres:{}@127.0.0.1:{port}/app", password.trim()), pid)
}

/// CPU seconds of the postmaster and all its children (the backends):
/// those still running, and those that exited (autovacuum workers, closed
/// connections), which the kernel adds to the postmaster's cutime/cstime.
fn cluster_cpu_seconds(postmaster: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{postmaster}/stat")).unwrap_or_default();
    let fields: Vec<f64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().map(|f| f.parse().unwrap_or(0.0)).collect())
        .unwrap_or_default();
    // After the command name: utime, stime, cutime, cstime are the 12th to 15th fields.
    let mut total = fields.get(11..15).map_or(0.0, |t| t.iter().sum::<f64>()) / 100.0;
    let Ok(entries) = std::fs::read_dir("/proc") else { return total };
    for entry in entries.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The parent pid is the second field after the command name.
        let parent = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1).map(str::to_owned));
        if parent.as_deref() == Some(postmaster) {
            total += cpu_seconds(&pid);
        }
    }
    total
}

fn quantile_ms(sorted_micros: &[u32], p: f64) -> f64 {
    if sorted_micros.is_empty() {
        return 0.0;
    }
    let index = ((sorted_micros.len() as f64 * p).ceil() as usize).clamp(1, sorted_micros.len()) - 1;
    f64::from(sorted_micros[index]) / 1000.0
}

/// One writer: alternately updates one of its rows and inserts a new row,
/// each statement its own transaction, until `until`. Returns each
/// statement's latency in microseconds, and the connection (closed only
/// after the phase's CPU is read: a backend that exits takes its CPU time
/// out of the cluster's sum).
async fn writer(mut conn: PgConnection, writer: usize, phase: usize, until: Instant) -> (Vec<u32>, PgConnection) {
    let mut latencies = Vec::with_capacity(100_000);
    let mut n: u64 = 0;
    while Instant::now() < until {
        let started = Instant::now();
        let result = if n.is_multiple_of(2) {
            let row = format!("wb-{writer}-{}", (n / 2) as usize % ROWS_PER_WRITER);
            sqlx::query("UPDATE place SET rating = $1 WHERE id = $2")
                .bind(((n % 50) as f64) / 10.0)
                .bind(row)
                .execute(&mut conn)
                .await
        } else {
            sqlx::query("INSERT INTO place (id, name, lat, lng, category) VALUES ($1, 'bench', 38.7, -9.1, 'bench')")
                .bind(format!("wi-{phase}-{writer}-{n}"))
                .execute(&mut conn)
                .await
        };
        result.unwrap_or_else(|e| panic!("writer {writer}: {e}"));
        latencies.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
        n += 1;
    }
    (latencies, conn)
}

/// Settings of one run.
#[derive(Clone)]
struct Run {
    url: String,
    postmaster: String,
    seconds: u64,
    synchronous_commit: bool,
}

async fn phase(run: &Run, writers: usize, phase: usize) -> Figures {
    let mut connections = Vec::with_capacity(writers);
    for w in 0..writers {
        let mut conn = PgConnection::connect(&run.url).await.unwrap_or_else(|e| panic!("writer {w}: {e}"));
        if !run.synchronous_commit {
            sqlx::raw_sql("SET synchronous_commit = off")
                .execute(&mut conn)
                .await
                .expect("turning synchronous_commit off");
        }
        connections.push(conn);
    }
    let cpu_before = cluster_cpu_seconds(&run.postmaster);
    let started = Instant::now();
    let until = started + Duration::from_secs(run.seconds);
    let tasks: Vec<_> =
        connections.into_iter().enumerate().map(|(w, conn)| tokio::spawn(writer(conn, w, phase, until))).collect();
    let mut latencies = Vec::new();
    let mut connections = Vec::with_capacity(writers);
    for task in tasks {
        let (mine, conn) = task.await.expect("joining the task");
        latencies.extend(mine);
        connections.push(conn);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cluster_cpu_seconds(&run.postmaster) - cpu_before;
    for conn in connections {
        let _ = conn.close().await;
    }
    latencies.sort_unstable();
    let writes = latencies.len().max(1) as f64;
    Figures {
        writes_per_sec: writes / elapsed,
        p50_ms: quantile_ms(&latencies, 0.50),
        p99_ms: quantile_ms(&latencies, 0.99),
        pg_cpu_us: cpu * 1e6 / writes,
    }
}

/// The round whose throughput is the median of the mode's rounds.
fn median(mut rounds: Vec<Figures>) -> Figures {
    rounds.sort_by(|a, b| a.writes_per_sec.total_cmp(&b.writes_per_sec));
    rounds.get(rounds.len() / 2).copied().unwrap_or_default()
}

pub async fn run(writers: usize, seconds: u64, rounds: usize, synchronous_commit: bool) {
    let data_dir = std::path::PathBuf::from(format!("/tmp/bench-writes-{}", std::process::id()));
    let server = Server::start(&api_binary(None), data_dir, true, &[]).await;
    let (url, postmaster) = embedded(&server);
    let run = Run { url: url.clone(), postmaster, seconds, synchronous_commit };
    let mut admin = PgConnection::connect(&url).await.expect("connecting to the database");
    // Rows for the updates: ROWS_PER_WRITER per writer, none shared.
    let setup = format!(
        "INSERT INTO place (id, name, lat, lng, category)
         SELECT 'wb-' || w || '-' || r, 'bench', 38.7, -9.1, 'bench'
         FROM generate_series(0, {}) w, generate_series(0, {}) r",
        writers.max(1) - 1,
        ROWS_PER_WRITER - 1
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(setup)).execute(&mut admin).await.expect("running the setup SQL");
    let settings: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'wal_level') ORDER BY name",
    )
    .fetch_all(&mut admin)
    .await
    .expect("reading pg_settings");
    println!(
        "embedded PostgreSQL: {}; writers' synchronous_commit={}",
        settings.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join(", "),
        if synchronous_commit { "on" } else { "off" }
    );

    // The server runs in the logical mode (the embedded database allows
    // it): wait for its sequencer to lead before switching anything.
    let capture: String = {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let mode: String = sqlx::query_scalar("SELECT mode FROM change_capture")
                .fetch_one(&mut admin)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            if mode == "logical" || Instant::now() > deadline {
                break mode;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    assert_eq!(
        capture,
        "logical",
        "the server's sequencer did not take the database to the logical mode (see {}/api.log)",
        server.data_dir.display()
    );
    let mut drains = Vec::new();

    let mut results: Vec<(Mode, Vec<Figures>, Vec<Figures>)> =
        Mode::ALL.iter().map(|&mode| (mode, Vec::new(), Vec::new())).collect();
    let mut phase_number = 0;
    for round in 1..=rounds {
        for (mode, single, many) in &mut results {
            mode.apply(&mut admin).await;
            phase_number += 1;
            single.push(phase(&run, 1, phase_number).await);
            phase_number += 1;
            let figures = phase(&run, writers, phase_number).await;
            if *mode == Mode::Logical {
                drains.push(sequenced(&mut admin).await);
            }
            println!(
                "round {round} {:<24} 1 writer {:>7.0}/s   {writers} writers {:>7.0}/s p99 {:>6.2} ms",
                mode.name(),
                single.last().map_or(0.0, |f| f.writes_per_sec),
                figures.writes_per_sec,
                figures.p99_ms
            );
            many.push(figures);
        }
    }
    Mode::Logical.apply(&mut admin).await;

    println!();
    println!("median of {rounds} rounds, {seconds} s each; single-row UPDATE and INSERT on place, alternately");
    println!(
        "| capture | 1 writer: writes/s | p50 ms | p99 ms | PG CPU µs/write | {writers} writers: writes/s | p50 ms | p99 ms | PG CPU µs/write | vs off |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let ceiling = results.first().map_or(1.0, |(_, _, many)| median(many.clone()).writes_per_sec);
    for (mode, single, many) in results {
        let (one, all) = (median(single), median(many));
        println!(
            "| {} | {:.0} | {:.3} | {:.3} | {:.0} | {:.0} | {:.2} | {:.2} | {:.0} | {:.0} % |",
            mode.name(),
            one.writes_per_sec,
            one.p50_ms,
            one.p99_ms,
            one.pg_cpu_us,
            all.writes_per_sec,
            all.p50_ms,
            all.p99_ms,
            all.pg_cpu_us,
            100.0 * all.writes_per_sec / ceiling
        );
    }
    drains.sort();
    println!();
    println!(
        "logical: time from the writers' last commit until the sequencer had stamped everything (median of {}): {:.0} ms",
        drains.len(),
        drains.get(drains.len() / 2).copied().unwrap_or_default().as_secs_f64() * 1000.0
    );
    let _ = admin.close().await;
    server.stop().await;
}
