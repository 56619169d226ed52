//! The logical capture's sequencer: gives committed transactions their
//! place in the change feed's order without a lock in the writers.
//!
//! In logical mode (migration 000014) the capture triggers only append to
//! `change_log`. One server at a time is the sequencer: it holds a session
//! advisory lock on its own connection (as the `app_sequencer` login, which
//! has REPLICATION), reads the log's inserts from a logical replication slot
//! (`pgoutput` over the publication `app_change_log`, which PostgreSQL
//! decodes in commit order), stamps every transaction it read in one
//! statement (`change_commit`: seq in commit order), sends one payload-less
//! NOTIFY, and then advances the slot. Every server's listener, its own
//! included, reads the stamped log as in the trigger mode.
//!
//! Why it keeps the feed's guarantees:
//! - Order: the slot yields transactions in commit order, and one sequencer
//!   stamps them in that order in one transaction, so a reader that sees
//!   seq N sees every smaller seq too.
//! - Nothing stamped before it can be read: a decoded commit may not be
//!   visible to other sessions yet (the commit record is written before the
//!   transaction leaves the proc array); the stamp stops at the first
//!   transaction that is not visible in its own snapshot, and the rest waits
//!   for the next round. Otherwise a listener could pass seq N before the
//!   rows of N were visible, and skip them.
//! - Exactly once: the slot is advanced only after the stamps commit; a
//!   transaction read twice (after a crash, or by the next sequencer) is
//!   already stamped and skipped (`ON CONFLICT .. WHERE seq IS NULL`: a
//!   transaction that registered under the trigger mode and committed
//!   after the switch has an unstamped row, and gets its stamp here).
//! - One sequencer: stamping runs on the connection that holds the lock, so
//!   a sequencer whose connection died cannot stamp any more; the slot also
//!   serves one session at a time.
//! - Takeover: the other servers wait for the lock on connections of their
//!   own; when the sequencer's session ends, one of them continues from the
//!   slot's confirmed position.
//! - A lost slot (dropped, or invalidated past `max_slot_wal_keep_size`):
//!   the next sequencer creates a new one, which waits for the transactions
//!   running then, and stamps every committed transaction of the log still
//!   unstamped, in transaction-id order (`app_capture_restamp`), with an
//!   error in the log: nothing is lost, but the order among the transactions
//!   committed while there was no slot is approximate.
//!
//! Polling `pg_logical_slot_peek_binary_changes` over an ordinary
//! connection, not the streaming replication protocol: no other crate, and
//! the same connection holds the lock and stamps. Each round first asks for
//! the WAL flush position (one cheap query) and decodes only when it moved;
//! it polls every [`POLL_MIN`] while there is work, backing off to
//! [`POLL_MAX`] when idle. A GraphQL mutation committed through this
//! server wakes it at once ([`SequencerState::written`]): its event need
//! not wait for a backed-off poll (up to POLL_MAX; writes through other
//! servers or plain SQL still do). Rounds stay at least POLL_MIN apart.
//! Decoding reads flushed WAL only: with
//! `synchronous_commit = off` a commit waits for the WAL writer
//! (`wal_writer_delay`, 200 ms by default) before it can be sequenced.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sea_orm::sqlx::{self, Connection, PgConnection, Row};
use tokio::task::JoinHandle;

/// The session advisory lock of the sequencer (per database, as every
/// advisory lock).
const SEQUENCER_LOCK: i64 = 7_262_018_544;
/// Transactions' changes decoded per round (whole transactions: PostgreSQL
/// checks the limit after each commit).
const CHANGES_PER_ROUND: i32 = 20_000;
/// Poll interval bounds: the shortest after a round that found work, the
/// longest when idle (the worst added latency of an event after idling).
pub const POLL_MIN: Duration = Duration::from_millis(2);
pub const POLL_MAX: Duration = Duration::from_millis(20);
/// Reconnection backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// The slot of a database (slot names are cluster-wide; several databases
/// of one cluster each have their own).
pub fn slot_name(database_oid: i64) -> String {
    format!("app_changes_{database_oid}")
}

/// What the server's sequencer is doing, for `/readyz` and metrics.
#[derive(Debug, Default)]
pub struct SequencerState {
    /// This server holds the lock and stamps the feed.
    leader: AtomicBool,
    /// Transactions this server has stamped from the slot.
    stamped: AtomicU64,
    /// Told when this server committed a write (see the module doc).
    wake: tokio::sync::Notify,
}

impl SequencerState {
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }

    pub fn stamped(&self) -> u64 {
        self.stamped.load(Ordering::Relaxed)
    }

    /// A write of this server's committed: the leader polls now (at once
    /// if it is waiting, else right after the round it is in, which may
    /// have looked before the commit). A server that does not lead has no
    /// poll to cut short.
    pub fn written(&self) {
        if self.is_leader() {
            self.wake.notify_one();
        }
    }
}

/// Whether the database allows logical capture through `url`: wal_level,
/// REPLICATION, free slots and the publication. `Err` says what is missing.
pub async fn check(url: &str) -> Result<(), String> {
    let mut conn = PgConnection::connect(url).await.map_err(|e| format!("cannot connect as the sequencer: {e}"))?;
    let row = sqlx::query(
        "SELECT current_setting('wal_level') AS wal_level,
                (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user) AS replication,
                current_setting('max_replication_slots')::int AS slots,
                EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1) AS publication,
                pg_has_role(current_user, $2, 'USAGE') AS realtime",
    )
    .bind(migration::CHANGE_LOG_PUBLICATION)
    .bind(migration::REALTIME_ROLE)
    .fetch_one(&mut conn)
    .await
    .map_err(|e| e.to_string())?;
    let _ = conn.close().await;
    let wal_level: String = row.try_get("wal_level").map_err(|e| e.to_string())?;
    let mut missing = Vec::new();
    if wal_level != "logical" {
        missing.push(format!("wal_level is {wal_level}, not logical"));
    }
    if !row.try_get::<Option<bool>, _>("replication").map_err(|e| e.to_string())?.unwrap_or(false) {
        missing.push("the sequencer login has no REPLICATION".to_owned());
    }
    if row.try_get::<i32, _>("slots").map_err(|e| e.to_string())? == 0 {
        missing.push("max_replication_slots is 0".to_owned());
    }
    if !row.try_get::<bool, _>("publication").map_err(|e| e.to_string())? {
        missing.push("no publication app_change_log (migration 000014)".to_owned());
    }
    if !row.try_get::<bool, _>("realtime").map_err(|e| e.to_string())? {
        missing.push(format!("the sequencer login is not a member of {}", migration::REALTIME_ROLE));
    }
    if missing.is_empty() { Ok(()) } else { Err(missing.join("; ")) }
}

/// Runs a sequencer candidate until the returned task is aborted: it waits
/// for the lock, then sequences until its connection fails, then tries again.
pub fn spawn(url: secrecy::SecretString, state: Arc<SequencerState>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = BACKOFF_MIN;
        loop {
            let result = lead(secrecy::ExposeSecret::expose_secret(&url), &state, &mut backoff).await;
            if state.leader.swap(false, Ordering::Relaxed) {
                tracing::warn!("change-feed sequencer stepped down");
            }
            if let Err(err) = result {
                tracing::warn!(error = %err, retry_in = ?backoff, "change-feed sequencer lost the database; reconnecting");
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    })
}

/// One connection's worth of sequencing: wait for the lock, make sure of
/// the slot, then stamp round after round. Returns on a database error.
async fn lead(url: &str, state: &SequencerState, backoff: &mut Duration) -> Result<(), String> {
    let mut conn = PgConnection::connect(url).await.map_err(|e| e.to_string())?;
    sqlx::raw_sql("SET application_name = 'api change-feed sequencer'; SET statement_timeout = 0")
        .execute(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    // Waits while another server leads; its session's end releases it.
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(SEQUENCER_LOCK)
        .execute(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    let oid: i64 = sqlx::query_scalar("SELECT oid::bigint FROM pg_database WHERE datname = current_database()")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    let slot = slot_name(oid);
    ensure_slot(&mut conn, &slot).await?;
    state.leader.store(true, Ordering::Relaxed);
    *backoff = BACKOFF_MIN;
    tracing::info!(slot, "change-feed sequencer leading (logical capture)");
    let mut idle = POLL_MIN;
    let mut decoded_to = None;
    loop {
        let started = tokio::time::Instant::now();
        match round(&mut conn, &slot, &mut decoded_to).await {
            Ok(Round { stamped, waiting }) => {
                state.stamped.fetch_add(stamped, Ordering::Relaxed);
                if stamped > 0 || waiting {
                    idle = POLL_MIN;
                } else {
                    idle = (idle * 2).min(POLL_MAX);
                }
                tokio::select! {
                    () = tokio::time::sleep(idle) => {}
                    () = state.wake.notified() => {}
                }
                // A wake cuts a backed-off wait short, but rounds stay at
                // least POLL_MIN apart: under a stream of writes (each
                // leaving a wake) they would otherwise run back to back,
                // each decoding and stamping fewer transactions, and a
                // commit not yet visible would be decoded again at once.
                tokio::time::sleep_until(started + POLL_MIN).await;
            }
            Err(Lost(why)) if slot_unusable(&why) => {
                tracing::error!(slot, error = %why, "the change-feed slot is unusable; replacing it and stamping the log's unstamped transactions");
                // Gone already, or unusable: either way a new one.
                let _ = sqlx::query(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
                )
                .bind(&slot)
                .execute(&mut conn)
                .await;
                ensure_slot(&mut conn, &slot).await?;
                decoded_to = None;
                tokio::time::sleep(BACKOFF_MIN).await;
            }
            Err(Lost(why)) => return Err(why),
        }
    }
}

/// The error of a slot that cannot deliver any more: dropped, invalidated
/// (past `max_slot_wal_keep_size`), or stuck on WAL written while its
/// publication did not exist (`api restore` drops and recreates it; the
/// slot would fail on that WAL forever).
fn slot_unusable(message: &str) -> bool {
    (message.contains("replication slot") && message.contains("does not exist"))
        || (message.contains("publication") && message.contains("does not exist"))
        || message.contains("can no longer get changes")
        || message.contains("has been invalidated")
}

/// Creates the slot if it is missing (dropping it first if PostgreSQL
/// invalidated it), stamps what the log holds unstamped, and switches the
/// database to logical capture. In that order: transactions that commit
/// once the slot exists are decoded; those before are in the log and
/// stamped here; the writers take the logical body only once both hold.
async fn ensure_slot(conn: &mut PgConnection, slot: &str) -> Result<(), String> {
    let status: Option<Option<String>> =
        sqlx::query_scalar("SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1")
            .bind(slot)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| e.to_string())?;
    let create = match status {
        None => true,
        Some(Some(status)) if status == "lost" => {
            tracing::error!(
                slot,
                "the change-feed slot fell behind more than max_slot_wal_keep_size and was invalidated; recreating it"
            );
            sqlx::query("SELECT pg_drop_replication_slot($1)")
                .bind(slot)
                .execute(&mut *conn)
                .await
                .map_err(|e| e.to_string())?;
            true
        }
        Some(_) => false,
    };
    if create {
        // Waits for the transactions running now to end (a consistent
        // starting point); every later commit is decoded.
        sqlx::query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')")
            .bind(slot)
            .execute(&mut *conn)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(slot, "created the change-feed slot");
    }
    // An existing slot holds every transaction not stamped yet, in commit
    // order (a takeover continues from it). A new one holds only those that
    // commit from now on: the rest are in the log, unstamped.
    let restamped: i64 = if create {
        sqlx::query_scalar("SELECT app_capture_restamp()").fetch_one(&mut *conn).await.map_err(|e| e.to_string())?
    } else {
        0
    };
    if restamped > 0 {
        tracing::error!(
            restamped,
            "stamped transactions the slot had not delivered (it was dropped or invalidated, or the database was in logical mode without a slot): none lost, but their order among themselves is transaction-id order, not commit order"
        );
    }
    let previous: String = sqlx::query_scalar("SELECT app_capture_set_mode('logical')")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| e.to_string())?;
    if previous != "logical" {
        tracing::info!(previous, "the database's capture switched to logical");
    }
    Ok(())
}

/// A database error of a round.
struct Lost(String);

/// What one round did.
struct Round {
    stamped: u64,
    /// A decoded commit was not visible yet: come back at once.
    waiting: bool,
}

/// One decoded transaction that inserted into the log.
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    txid: i64,
    /// Commit time, microseconds since 2000-01-01 (PostgreSQL's epoch).
    commit_us: i64,
    /// Where the slot may be advanced once this one is stamped.
    end_lsn: String,
}

async fn round(conn: &mut PgConnection, slot: &str, decoded_to: &mut Option<String>) -> Result<Round, Lost> {
    let lost = |e: sqlx::Error| Lost(e.to_string());
    // Decoding reads flushed WAL only. Nothing flushed since the last round:
    // nothing to decode (one cheap query instead of a decoding pass, which
    // costs about 1 ms even with nothing to find).
    let flushed: String =
        sqlx::query_scalar("SELECT pg_current_wal_flush_lsn()::text").fetch_one(&mut *conn).await.map_err(lost)?;
    if decoded_to.as_deref() == Some(flushed.as_str()) {
        return Ok(Round { stamped: 0, waiting: false });
    }
    let rows: Vec<(String, Vec<u8>)> = sqlx::query_as(
        "SELECT lsn::text, data FROM pg_logical_slot_peek_binary_changes($1, $2::pg_lsn, $3,
             'proto_version', '1', 'publication_names', $4)",
    )
    .bind(slot)
    .bind(&flushed)
    .bind(CHANGES_PER_ROUND)
    .bind(migration::CHANGE_LOG_PUBLICATION)
    .fetch_all(&mut *conn)
    .await
    .map_err(lost)?;
    let (transactions, last_commit) = decode(&rows).map_err(Lost)?;
    // Everything up to `flushed` was read unless the change limit cut the
    // round short (it is checked after whole transactions).
    let complete = rows.len() < usize::try_from(CHANGES_PER_ROUND).unwrap_or(usize::MAX);
    let mut advance_to = if complete { Some(flushed.clone()) } else { last_commit };
    let mut stamped = 0;
    let mut waiting = false;
    if !transactions.is_empty() {
        let txids: Vec<i64> = transactions.iter().map(|t| t.txid).collect();
        let times: Vec<i64> = transactions.iter().map(|t| t.commit_us).collect();
        let row = sqlx::query(STAMP)
            .bind(&txids)
            .bind(&times)
            .bind(migration::CHANGES_CHANNEL)
            .fetch_one(&mut *conn)
            .await
            .map_err(lost)?;
        let cut: i64 = row.try_get("cut").map_err(lost)?;
        stamped = u64::try_from(row.try_get::<i64, _>("stamped").map_err(lost)?).unwrap_or(0);
        // `cut` is the 1-based position of the first transaction not yet
        // visible: stamped are those before it, and the slot moves past
        // those only.
        if let Ok(visible) = usize::try_from(cut - 1)
            && visible < transactions.len()
        {
            waiting = true;
            advance_to = visible.checked_sub(1).map(|i| transactions[i].end_lsn.clone());
        }
    }
    if let Some(lsn) = advance_to {
        // Moves the slot's confirmed position (and lets PostgreSQL recycle
        // the WAL before it), also past WAL with nothing published, so the
        // next round does not decode it again.
        sqlx::query("SELECT pg_replication_slot_advance($1, $2::pg_lsn)")
            .bind(slot)
            .bind(&lsn)
            .execute(&mut *conn)
            .await
            .map_err(lost)?;
        *decoded_to = (complete && !waiting).then_some(flushed);
    }
    Ok(Round { stamped, waiting })
}

/// Stamps a round's transactions in the order given, up to the first one
/// not yet visible, and wakes every listener once, in one statement (one
/// transaction). Returns that first invisible position (`cut`, 1-based;
/// past the end when all are visible) and how many were stamped.
const STAMP: &str = "WITH batch AS (
         SELECT b.txid, b.us, b.n FROM unnest($1::bigint[], $2::bigint[]) WITH ORDINALITY AS b(txid, us, n)
     ), cut AS (
         SELECT coalesce(min(n), 9223372036854775807) AS n FROM batch
         WHERE NOT pg_visible_in_snapshot(txid::text::xid8, pg_current_snapshot())
     ), stamped AS (
         INSERT INTO change_commit (txid, seq, committed_at)
         SELECT b.txid, nextval('change_commit_seq'), timestamptz '2000-01-01 00:00:00+00' + b.us * interval '1 microsecond'
         FROM batch b WHERE b.n < (SELECT n FROM cut) ORDER BY b.n
         ON CONFLICT (txid) DO UPDATE SET seq = EXCLUDED.seq, committed_at = EXCLUDED.committed_at
             WHERE change_commit.seq IS NULL
         RETURNING 1
     ), counted AS (
         SELECT count(*) AS stamped FROM stamped
     ), woken AS (
         SELECT pg_notify($3, '') FROM counted WHERE stamped > 0
     )
     SELECT (SELECT n FROM cut) AS cut, (SELECT stamped FROM counted) AS stamped, (SELECT count(*) FROM woken) AS woken";

/// The transactions in `pgoutput` messages (protocol 1) that inserted into
/// the change log, in commit order, and the end of the last commit read.
/// Only Begin, Relation, Insert and Commit matter; the publication sends
/// nothing but the log's inserts.
fn decode(rows: &[(String, Vec<u8>)]) -> Result<(Vec<Decoded>, Option<String>), String> {
    let mut transactions = Vec::new();
    let mut txid_column: Option<usize> = None;
    let mut current: Option<i64> = None;
    // The transaction's 32-bit xid, from its Begin message.
    let mut xid: u32 = 0;
    let mut last_commit = None;
    for (lsn, data) in rows {
        let mut m = Message::new(data);
        match m.byte()? {
            b'B' => {
                current = None;
                m.int64()?;
                m.int64()?;
                xid = u32::from_be_bytes(m.take(4)?.try_into().map_err(|_| "xid")?);
            }
            b'R' => {
                m.int32()?;
                m.cstr()?;
                m.cstr()?;
                m.byte()?;
                let columns = m.int16()?;
                for i in 0..usize::try_from(columns).unwrap_or(0) {
                    m.byte()?;
                    if m.cstr()? == b"txid" {
                        txid_column = Some(i);
                    }
                    m.int32()?;
                    m.int32()?;
                }
            }
            b'I' => {
                if current.is_some() {
                    continue;
                }
                let column = txid_column.ok_or("an insert before its relation message")?;
                m.int32()?;
                if m.byte()? != b'N' {
                    return Err("an insert without a new tuple".into());
                }
                let columns = m.int16()?;
                for i in 0..usize::try_from(columns).unwrap_or(0) {
                    match m.byte()? {
                        b't' | b'b' => {
                            let len = usize::try_from(m.int32()?).map_err(|_| "a negative length")?;
                            let value = m.take(len)?;
                            if i == column {
                                let text = std::str::from_utf8(value).map_err(|e| e.to_string())?;
                                let txid: i64 = text.parse().map_err(|e| format!("txid {text:?}: {e}"))?;
                                // A row the capture wrote carries its own
                                // transaction's id. One that does not was
                                // copied in (`api restore` loads the log
                                // with its commit stamps): not a new commit.
                                if (txid & 0xffff_ffff) == i64::from(xid) {
                                    current = Some(txid);
                                }
                                break;
                            }
                        }
                        _ => {}
                    }
                }
            }
            b'C' => {
                m.byte()?;
                m.int64()?;
                m.int64()?;
                let commit_us = m.int64()?;
                if let Some(txid) = current.take() {
                    transactions.push(Decoded { txid, commit_us, end_lsn: lsn.clone() });
                }
                last_commit = Some(lsn.clone());
            }
            _ => {}
        }
    }
    Ok((transactions, last_commit))
}

/// A cursor over one binary message.
struct Message<'a> {
    data: &'a [u8],
}

impl<'a> Message<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.data.len() < n {
            return Err("a truncated pgoutput message".into());
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn int16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().map_err(|_| "int16")?))
    }

    fn int32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().map_err(|_| "int32")?))
    }

    fn int64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().map_err(|_| "int64")?))
    }

    fn cstr(&mut self) -> Result<&'a [u8], String> {
        let end = self.data.iter().position(|&b| b == 0).ok_or("an unterminated string")?;
        let s = self.take(end)?;
        self.take(1)?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relation() -> Vec<u8> {
        let mut r = b"R\0\0\0\x01public\0change_log\0d\0\x02".to_vec();
        for name in ["id", "txid"] {
            r.push(1);
            r.extend_from_slice(name.as_bytes());
            r.extend_from_slice(&[0, 0, 0, 0, 20, 255, 255, 255, 255]);
        }
        r
    }

    fn insert(id: &str, txid: &str) -> Vec<u8> {
        let mut m = b"I\0\0\0\x01N\0\x02".to_vec();
        for value in [id, txid] {
            m.push(b't');
            m.extend_from_slice(&i32::try_from(value.len()).unwrap_or(0).to_be_bytes());
            m.extend_from_slice(value.as_bytes());
        }
        m
    }

    fn begin(xid: u32) -> Vec<u8> {
        let mut m = vec![b'B'];
        m.extend_from_slice(&[0; 16]);
        m.extend_from_slice(&xid.to_be_bytes());
        m
    }

    fn commit(us: i64) -> Vec<u8> {
        let mut m = vec![b'C', 0];
        m.extend_from_slice(&[0; 16]);
        m.extend_from_slice(&us.to_be_bytes());
        m
    }

    #[test]
    fn decoding_yields_each_transaction_once_in_commit_order_with_its_end() {
        let rows = vec![
            ("0/10".to_owned(), begin(11)),
            ("0/10".to_owned(), relation()),
            ("0/10".to_owned(), insert("1", "4294967307")),
            ("0/10".to_owned(), insert("2", "4294967307")),
            ("0/20".to_owned(), commit(7)),
            ("0/30".to_owned(), begin(9)),
            ("0/30".to_owned(), insert("3", "9")),
            ("0/40".to_owned(), commit(8)),
        ];
        let (txs, last) = decode(&rows).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            txs,
            vec![
                Decoded { txid: 4_294_967_307, commit_us: 7, end_lsn: "0/20".into() },
                Decoded { txid: 9, commit_us: 8, end_lsn: "0/40".into() },
            ]
        );
        assert_eq!(last.as_deref(), Some("0/40"));
    }

    #[test]
    fn rows_copied_in_by_another_transaction_are_not_new_commits() {
        let rows = vec![
            ("0/10".to_owned(), begin(500)),
            ("0/10".to_owned(), relation()),
            ("0/10".to_owned(), insert("1", "42")),
            ("0/20".to_owned(), commit(7)),
        ];
        let (txs, last) = decode(&rows).unwrap_or_else(|e| panic!("{e}"));
        assert!(txs.is_empty(), "{txs:?}");
        assert_eq!(last.as_deref(), Some("0/20"), "still read past");
    }

    #[test]
    fn a_truncated_message_is_an_error_not_a_panic() {
        let rows = vec![("0/10".to_owned(), relation()), ("0/10".to_owned(), b"I\0\0".to_vec())];
        assert!(decode(&rows).is_err());
    }
}
