//! Reading and pruning the change log, as the `app_realtime` role.

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement};
use uuid::Uuid;

use super::{Cursor, FeedIdentity};
use crate::db::{Pool, Tx};
use crate::error::{ApiError, ApiResult};

/// The log is readable only by the realtime role, which the request login
/// may switch to. No JIT: every read here is a few index probes, but a log
/// with many commits makes the planner's estimates (commits × rows each)
/// large enough to compile the query, which costs far more than running it.
/// On the request pool (a subscriber's replay) the statements are bounded
/// like a request's, so replays cannot hold its connections for long; the
/// feed's own pool has no timeout (0) and keeps the server's setting.
async fn begin_as_realtime(db: &Pool) -> ApiResult<Tx> {
    let timeout = match db.statement_timeout_ms() {
        0 => String::new(),
        ms => format!("; SET LOCAL statement_timeout = {ms}"),
    };
    Ok(db.begin_with(&format!("SET LOCAL ROLE {}; SET LOCAL jit = off{timeout}", migration::REALTIME_ROLE)).await?)
}

/// One committed change of one row.
#[derive(Debug)]
pub struct ChangeEvent {
    pub cursor: Cursor,
    pub table: String,
    pub op: Operation,
    pub key: String,
    /// The row's owner, the key of the row policies; `None` for public rows.
    pub owner: Option<Uuid>,
    pub new_row: Option<serde_json::Value>,
    pub old_row: Option<serde_json::Value>,
    /// When the writing transaction committed, on this process's clock
    /// (from the age the database gave it when read, so the database's
    /// and this host's clocks need not agree).
    pub committed_at: std::time::Instant,
    /// The row decoded into its storage model, once for all subscribers.
    pub(super) decoded: std::sync::OnceLock<Box<dyn std::any::Any + Send + Sync>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Insert,
    Update,
    Delete,
}

impl ChangeEvent {
    /// The row as it is after the change, or as it was before a delete.
    pub fn row(&self) -> Option<&serde_json::Value> {
        self.new_row.as_ref().or(self.old_row.as_ref())
    }
}

#[derive(FromQueryResult)]
struct LogRow {
    seq: i64,
    id: i64,
    table_name: String,
    op: String,
    row_key: String,
    owner_id: Option<Uuid>,
    new_row: Option<serde_json::Value>,
    old_row: Option<serde_json::Value>,
    committed_ms_ago: i64,
}

impl From<LogRow> for ChangeEvent {
    fn from(r: LogRow) -> Self {
        let op = match r.op.as_str() {
            "I" => Operation::Insert,
            "U" => Operation::Update,
            _ => Operation::Delete,
        };
        Self {
            cursor: Cursor { seq: r.seq, id: r.id },
            table: r.table_name,
            op,
            key: r.row_key,
            owner: r.owner_id,
            new_row: r.new_row,
            old_row: r.old_row,
            committed_at: Instant::now()
                .checked_sub(Duration::from_millis(u64::try_from(r.committed_ms_ago).unwrap_or(0)))
                .unwrap_or_else(Instant::now),
            decoded: std::sync::OnceLock::new(),
        }
    }
}

/// Committed events after `after`, in commit order. `tables` narrows the
/// read (empty: all tables). Commit sequence numbers are taken at commit
/// under a lock (migration 000003), so a committed seq N implies every
/// smaller one is committed too: nothing can appear later below `after`.
///
/// Shape: commits from `after.seq` on, in seq order (the `seq` index), and
/// for each its events past the cursor, at most `limit`, as one range of
/// the `(txid, id)` key: `id > after.id` in the cursor's own transaction,
/// all of them in later ones. A row comparison `(seq, id) > (..)` across
/// the join cannot be an index condition: it read every event of the
/// cursor's transaction on each call (154,100 rows per idle poll after a
/// large seed), where this reads none once they are delivered.
pub async fn read_after(db: &Pool, after: Cursor, tables: &[&str], limit: u64) -> ApiResult<Vec<ChangeEvent>> {
    let tx = begin_as_realtime(db).await?;
    let tables: Vec<String> = tables.iter().map(|t| (*t).to_owned()).collect();
    let rows = LogRow::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT c.seq, l.id, l.table_name, l.op::text AS op, l.row_key, l.owner_id, l.new_row, l.old_row,
                (extract(epoch FROM clock_timestamp() - coalesce(c.committed_at, l.created_at)) * 1000)::bigint
                    AS committed_ms_ago
         FROM change_commit c
         CROSS JOIN LATERAL (
             SELECT l.id, l.table_name, l.op, l.row_key, l.owner_id, l.new_row, l.old_row, l.created_at
             FROM change_log l
             WHERE l.txid = c.txid AND l.id > CASE WHEN c.seq = $1 THEN $2 ELSE 0 END
               AND (cardinality($3::text[]) = 0 OR l.table_name = ANY($3::text[]))
             ORDER BY l.id
             LIMIT $4
         ) l
         WHERE c.seq >= $1
         ORDER BY c.seq, l.id
         LIMIT $4",
        [after.seq.into(), after.id.into(), tables.into(), i64::try_from(limit).unwrap_or(i64::MAX).into()],
    ))
    .all(&tx)
    .await?;
    db.commit(tx).await?;
    Ok(rows.into_iter().map(ChangeEvent::from).collect())
}

/// The newest committed event's position: the newest stamped commit that
/// has events (a commit whose statements published nothing has none), and
/// its last event, one index probe per commit from the newest. Joining
/// first and sorting by `(seq, id)` read the whole log.
const NEWEST_EVENT: &str = "SELECT c.seq, l.id FROM change_commit c
     CROSS JOIN LATERAL (SELECT l.id FROM change_log l WHERE l.txid = c.txid ORDER BY l.id DESC LIMIT 1) l
     WHERE c.seq IS NOT NULL ORDER BY c.seq DESC LIMIT 1";

/// The newest committed position: where a listener that has no history to
/// deliver starts.
pub async fn current_head(db: &Pool) -> ApiResult<Cursor> {
    let tx = begin_as_realtime(db).await?;
    let row = tx.query_one_raw(Statement::from_string(DbBackend::Postgres, NEWEST_EVENT)).await?;
    db.commit(tx).await?;
    Ok(match row {
        Some(row) => Cursor { seq: row.try_get("", "seq")?, id: row.try_get("", "id")? },
        None => Cursor::default(),
    })
}

/// Where a replay may start: after the newest pruned position (a cursor at
/// or before it has lost events), and at or before the newest committed one
/// (a cursor past it is not from this log as it is now: say, issued before a
/// point-in-time recovery).
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub horizon: Cursor,
    pub head: Cursor,
    /// The feed's epoch now (a restore renews it).
    pub epoch: Uuid,
}

/// The longest [`settle`] waits for the sequencer.
pub const SETTLE_WITHIN: Duration = Duration::from_secs(2);

/// In the logical capture mode, waits until the sequencer has stamped every
/// transaction that is visible now (its slot has passed the WAL insert
/// position of now), at most [`SETTLE_WITHIN`]; in the trigger mode a
/// visible commit is already stamped, and this is one query. Positions read
/// after it (the head of [`bounds`]) then cover everything a read of the
/// data now sees: a replay's history and an account check's position must,
/// or a change they already saw would be delivered as newer than them.
pub async fn settle(db: &Pool) -> ApiResult<()> {
    let tx = begin_as_realtime(db).await?;
    let row = tx
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT c.mode = 'logical' AS logical, pg_current_wal_insert_lsn()::text AS lsn,
                    'app_changes_' || d.oid AS slot
             FROM change_capture c, pg_database d WHERE d.datname = current_database()",
        ))
        .await?;
    db.commit(tx).await?;
    let Some(row) = row else { return Ok(()) };
    if !row.try_get::<bool>("", "logical")? {
        return Ok(());
    }
    let (lsn, slot): (String, String) = (row.try_get("", "lsn")?, row.try_get("", "slot")?);
    let deadline = Instant::now() + SETTLE_WITHIN;
    while !sequenced_past(db, &slot, &lsn).await? {
        if Instant::now() >= deadline {
            tracing::warn!(
                "the change-feed sequencer did not catch up within {SETTLE_WITHIN:?}; is a server with CAPTURE_MODE=logical running?"
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// The log's [`Bounds`], in one snapshot, once everything visible now is
/// stamped ([`settle`]).
pub async fn bounds(db: &Pool) -> ApiResult<Bounds> {
    settle(db).await?;
    let tx = begin_as_realtime(db).await?;
    let row = tx
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT h.seq, h.id, n.seq AS head_seq, n.id AS head_id, (SELECT epoch FROM change_feed_epoch) AS epoch
             FROM change_log_horizon h
             LEFT JOIN LATERAL ({NEWEST_EVENT}) n ON true"
            ),
        ))
        .await?;
    db.commit(tx).await?;
    let row = row.ok_or_else(|| ApiError::internal("change_log_horizon is empty"))?;
    let horizon = Cursor { seq: row.try_get("", "seq")?, id: row.try_get("", "id")? };
    let head = match (row.try_get::<Option<i64>>("", "head_seq")?, row.try_get::<Option<i64>>("", "head_id")?) {
        (Some(seq), Some(id)) => Cursor { seq, id },
        _ => Cursor::default(),
    };
    // Everything may have been pruned: the horizon is then the newest position.
    Ok(Bounds { horizon, head: head.max(horizon), epoch: row.try_get("", "epoch")? })
}

/// The identity cursors are bound to: the feed epoch and the database.
pub async fn identity(db: &Pool) -> ApiResult<FeedIdentity> {
    let tx = begin_as_realtime(db).await?;
    let row = tx
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT e.epoch, d.oid::bigint AS database
             FROM change_feed_epoch e, pg_database d WHERE d.datname = current_database()",
        ))
        .await?;
    db.commit(tx).await?;
    let row = row.ok_or_else(|| ApiError::internal("change_feed_epoch is empty: run the migrations"))?;
    Ok(FeedIdentity { epoch: row.try_get("", "epoch")?, database: row.try_get("", "database")? })
}

/// Gives the feed a new epoch, so every cursor issued before is refused:
/// `api restore` runs it (as the tables' owner) after restoring a backup,
/// whose log has older positions than cursors handed out since. Servers
/// read the epoch at start: restart them after a restore.
pub async fn renew_epoch(db: &impl ConnectionTrait) -> Result<(), sea_orm::DbErr> {
    db.execute_unprepared(
        "DO $$ BEGIN
             IF to_regclass('change_feed_epoch') IS NOT NULL THEN
                 UPDATE change_feed_epoch SET epoch = gen_random_uuid();
             END IF;
         END $$",
    )
    .await
    .map(|_| ())
}

/// Deletes events older than `retention_secs` that this listener has
/// already broadcast (at or before `head`), and moves the horizon past them,
/// in one transaction. Returns how many were deleted.
pub async fn prune(db: &Pool, retention_secs: u64, head: Cursor) -> ApiResult<u64> {
    let tx = begin_as_realtime(db).await?;
    let row = tx
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "WITH gone AS (
                 DELETE FROM change_log l USING change_commit c
                 WHERE c.txid = l.txid AND l.created_at < now() - make_interval(secs => $1)
                   AND (c.seq, l.id) <= ($2, $3)
                 RETURNING c.seq, l.id
             ), newest AS (
                 SELECT seq, id FROM gone ORDER BY seq DESC, id DESC LIMIT 1
             ), moved AS (
                 UPDATE change_log_horizon h SET seq = n.seq, id = n.id
                 FROM newest n WHERE (n.seq, n.id) > (h.seq, h.id)
                 RETURNING 1
             )
             SELECT count(*) AS deleted FROM gone",
            [(retention_secs as f64).into(), head.seq.into(), head.id.into()],
        ))
        .await?;
    // Commit stamps whose events are all gone.
    let orphans = "DELETE FROM change_commit c WHERE c.seq IS NOT NULL AND NOT EXISTS (SELECT 1 FROM change_log l WHERE l.txid = c.txid)";
    db.execute_unprepared(&tx, orphans).await?;
    db.commit(tx).await?;
    Ok(row.and_then(|r| r.try_get::<i64>("", "deleted").ok()).map_or(0, |n| u64::try_from(n).unwrap_or(0)))
}

/// Switches the database's capture to the trigger mode (as the realtime
/// role, through `app_capture_set_mode`). Returns whether it was logical:
/// the caller then stamps what the slot had not, with
/// [`restamp_after_running`].
pub async fn leave_logical(db: &Pool) -> ApiResult<bool> {
    let tx = begin_as_realtime(db).await?;
    let row = tx
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT app_capture_set_mode('trigger') AS previous",
        ))
        .await?;
    db.commit(tx).await?;
    Ok(row.and_then(|r| r.try_get::<String>("", "previous").ok()).as_deref() == Some("logical"))
}

/// Whether the database still has this feed's replication slot (it keeps
/// WAL for as long as it exists).
pub async fn slot_exists(db: &Pool) -> ApiResult<bool> {
    let tx = begin_as_realtime(db).await?;
    let row = tx
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT EXISTS (SELECT 1 FROM pg_replication_slots s JOIN pg_database d ON d.datname = s.database
                            WHERE d.datname = current_database() AND s.slot_name = 'app_changes_' || d.oid) AS found",
        ))
        .await?;
    db.commit(tx).await?;
    Ok(row.and_then(|r| r.try_get::<bool>("", "found").ok()).unwrap_or(false))
}

/// After leaving the logical mode: waits until every transaction that was
/// running then has ended (some ran the logical capture's body, which
/// leaves them unstamped), then stamps the log's unstamped transactions in
/// transaction-id order (`app_capture_restamp`). Returns how many.
pub async fn restamp_after_running(db: &Pool) -> ApiResult<i64> {
    let scalar = |sql: &'static str| async move {
        let tx = begin_as_realtime(db).await?;
        let row = tx.query_one_raw(Statement::from_string(DbBackend::Postgres, sql)).await?;
        db.commit(tx).await?;
        let row = row.ok_or_else(|| ApiError::internal("no row"))?;
        Ok::<i64, ApiError>(row.try_get::<i64>("", "v")?)
    };
    let running_before = scalar("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS v").await?;
    while scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS v").await? < running_before {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    scalar("SELECT app_capture_restamp() AS v").await
}

/// Whether the sequencer's slot has confirmed `lsn`: every transaction that
/// committed before it is stamped.
pub async fn sequenced_past(db: &Pool, slot: &str, lsn: &str) -> ApiResult<bool> {
    let tx = begin_as_realtime(db).await?;
    let row = tx
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT coalesce(bool_or(confirmed_flush_lsn >= $2::pg_lsn), false) AS past
             FROM pg_replication_slots WHERE slot_name = $1",
            [slot.into(), lsn.into()],
        ))
        .await?;
    db.commit(tx).await?;
    Ok(row.and_then(|r| r.try_get::<bool>("", "past").ok()).unwrap_or(false))
}
