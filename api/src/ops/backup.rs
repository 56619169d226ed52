//! Backups with the machine's pg_dump and pg_restore, as the seed does them:
//! custom format, restore with `--clean`, and a retention policy (daily
//! backups kept 30 days, weekly 6 months, monthly 2 years).
//!
//! Each archive has a manifest beside it (`<archive>.json`): the rows of
//! every table in the very snapshot pg_dump saved, so `backup verify` can
//! compare a restore with the source as the backup saw it. Comparing with
//! the live database instead would fail on every database that was written
//! to since the backup, that is, on every production database.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use chrono::{DateTime, Datelike, Duration, NaiveDateTime, Utc};
use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, IsolationLevel, Statement,
    TransactionTrait,
};

/// Why a backup, a restore or their checks failed: what was being done,
/// and the cause.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A file or one of the PostgreSQL tools could not be used.
    #[error("{doing}: {source}")]
    Io { doing: String, source: std::io::Error },
    #[error("{doing}: {source}")]
    Database { doing: String, source: DbErr },
    /// A PostgreSQL tool ran and failed, or answered what we cannot use;
    /// the message carries what it printed.
    #[error("{0}")]
    Tool(String),
    #[error("{} is not a backup manifest ({source}); move it aside to go on without it", path.display())]
    Manifest { path: PathBuf, source: serde_json::Error },
}

fn io(doing: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackupError {
    let doing = doing.into();
    move |source| BackupError::Io { doing, source }
}

fn database(doing: impl Into<String>) -> impl FnOnce(DbErr) -> BackupError {
    let doing = doing.into();
    move |source| BackupError::Database { doing, source }
}

const PREFIX: &str = "backup_";
const SUFFIX: &str = ".dump";
const STAMP: &str = "%Y%m%dT%H%M%SZ";

/// The file name of a backup taken at `at`.
pub fn file_name(at: DateTime<Utc>) -> String {
    format!("{PREFIX}{}{SUFFIX}", at.format(STAMP))
}

/// When a backup file was taken, from its name.
pub fn taken_at(name: &str) -> Option<DateTime<Utc>> {
    let stamp = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    NaiveDateTime::parse_from_str(stamp, STAMP).ok().map(|t| t.and_utc())
}

/// What a backup recorded about its source.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub taken_at: DateTime<Utc>,
    /// `SHOW server_version` of the source.
    pub server_version: String,
    /// The migrations applied to the source, oldest first.
    pub migrations: Vec<String>,
    /// Rows per table of the public schema, in the archive's snapshot.
    pub rows: BTreeMap<String, i64>,
}

impl Manifest {
    /// Where the manifest of `archive` lives: beside it, `.json` appended.
    pub fn path(archive: &Path) -> PathBuf {
        let mut name = archive.file_name().unwrap_or_default().to_owned();
        name.push(".json");
        archive.with_file_name(name)
    }

    pub fn write(&self, archive: &Path) -> Result<(), BackupError> {
        let path = Self::path(archive);
        let json =
            serde_json::to_vec_pretty(self).map_err(std::io::Error::from).map_err(io("cannot encode the manifest"))?;
        std::fs::write(&path, json).map_err(io(format!("cannot write {}", path.display())))
    }

    /// The manifest of `archive`, or `None` when there is none (an archive
    /// copied without it, or made by plain pg_dump).
    pub fn read(archive: &Path) -> Result<Option<Self>, BackupError> {
        let path = Self::path(archive);
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map(Some).map_err(|source| BackupError::Manifest { path, source })
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(BackupError::Io { doing: format!("cannot read {}", path.display()), source }),
        }
    }
}

/// Which backups the retention policy keeps: the newest of each day for 30
/// days, of each ISO week for 26 weeks, of each month for 24 months.
/// Everything else (and anything from the future) is deleted.
pub fn plan_prune(names: &[String], now: DateTime<Utc>) -> (Vec<String>, Vec<String>) {
    let mut dated: Vec<(DateTime<Utc>, &String)> = names.iter().filter_map(|n| Some((taken_at(n)?, n))).collect();
    // Newest first, so the first file seen in a period is the one kept.
    dated.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    let mut keep = BTreeSet::new();
    let mut days = BTreeSet::new();
    let mut weeks = BTreeSet::new();
    let mut months = BTreeSet::new();
    for (at, name) in &dated {
        if *at > now {
            continue;
        }
        let age = now - *at;
        let day = at.date_naive();
        let week = (at.iso_week().year(), at.iso_week().week());
        let month = (at.year(), at.month());
        let mut kept = false;
        if age <= Duration::days(30) && days.insert(day) {
            kept = true;
        }
        if age <= Duration::weeks(26) && weeks.insert(week) {
            kept = true;
        }
        if age <= Duration::days(730) && months.insert(month) {
            kept = true;
        }
        if kept {
            keep.insert((*name).clone());
        }
    }
    let delete = dated.iter().map(|(_, n)| (*n).clone()).filter(|n| !keep.contains(n)).collect();
    (keep.into_iter().collect(), delete)
}

/// pg_dump and pg_restore of `pg_bin`, or found as the embedded database's
/// binaries are; the client package alone is enough.
#[derive(Clone)]
pub struct Tools {
    pub pg_dump: PathBuf,
    pub pg_restore: PathBuf,
    pub major: u32,
}

impl Tools {
    pub fn find(pg_bin: Option<&Path>) -> Result<Self, BackupError> {
        let bin = crate::db::embedded::find_bin_with(pg_bin, &["pg_dump", "pg_restore"]).map_err(|e| {
            BackupError::Tool(e.unwrap_or_else(|| {
                "pg_dump not found: install Debian's `postgresql-client` (or `postgresql`), or set PG_BIN".to_owned()
            }))
        })?;
        let (pg_dump, pg_restore) = (bin.join("pg_dump"), bin.join("pg_restore"));
        let version = Command::new(&pg_dump)
            .arg("--version")
            .output()
            .map_err(io(format!("cannot run {}", pg_dump.display())))?;
        // "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
        let major = String::from_utf8_lossy(&version.stdout)
            .split_whitespace()
            .nth(2)
            .and_then(|v| v.split('.').next()?.parse().ok())
            .ok_or_else(|| BackupError::Tool("cannot read pg_dump's version".into()))?;
        Ok(Self { pg_dump, pg_restore, major })
    }

    /// pg_dump refuses servers newer than itself; say so plainly first.
    pub fn check_server(&self, server_major: u32) -> Result<(), BackupError> {
        if self.major < server_major {
            return Err(BackupError::Tool(format!(
                "pg_dump {} is older than the server (PostgreSQL {server_major}): install postgresql-client-{server_major} or set PG_BIN",
                self.major
            )));
        }
        Ok(())
    }

    /// Dumps `url` into `dir` as the backup taken `at`, printing progress;
    /// returns the file and its size. The dump reads `snapshot` (from
    /// `pg_export_snapshot()`, whose transaction must stay open until this
    /// returns): see [`take`].
    pub fn backup(
        &self,
        url: &str,
        dir: &Path,
        snapshot: &str,
        at: DateTime<Utc>,
    ) -> Result<(PathBuf, u64), BackupError> {
        std::fs::create_dir_all(dir).map_err(io(format!("cannot create {}", dir.display())))?;
        let file = dir.join(file_name(at));
        let (url, password) = split_password(url);
        let mut command = Command::new(&self.pg_dump);
        if let Some(password) = password {
            command.env("PGPASSWORD", password);
        }
        let mut child = command
            .args(["--format=custom", "--verbose", "--no-password"])
            .arg(format!("--snapshot={snapshot}"))
            .arg(format!("--file={}", file.display()))
            .arg(format!("--dbname={url}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io("cannot run pg_dump"))?;
        let mut tables = 0;
        let mut errors = Vec::new();
        if let Some(stderr) = child.stderr.take() {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("dumping contents of table") {
                    tables += 1;
                    eprint!("\rdumping: {tables} tables");
                    let _ = std::io::stderr().flush();
                } else if line.contains("error") {
                    errors.push(line);
                }
            }
        }
        eprintln!();
        let status = child.wait().map_err(io("cannot wait for pg_dump"))?;
        if !status.success() {
            let _ = std::fs::remove_file(&file);
            return Err(BackupError::Tool(format!("pg_dump failed: {}", errors.join("; "))));
        }
        let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        Ok((file, size))
    }

    /// Restores `file` into `url`, dropping what it replaces first. Async,
    /// never blocking a runtime thread: pg_restore waits for the locks of
    /// whatever else runs on it, a server's transactions included.
    pub async fn restore(&self, file: &Path, url: &str) -> Result<(), BackupError> {
        let (url, password) = split_password(url);
        let mut command = tokio::process::Command::new(&self.pg_restore);
        if let Some(password) = password {
            command.env("PGPASSWORD", password);
        }
        command
            .args(["--clean", "--if-exists", "--no-password", "--single-transaction"])
            .arg(format!("--dbname={url}"))
            .arg(file);
        pg_restore(command, |stderr| format!("pg_restore failed: {stderr}")).await?;
        Ok(())
    }

    /// Whether the archive's table of contents reads (it is a complete
    /// dump); how many entries it has.
    pub async fn list(&self, file: &Path) -> Result<usize, BackupError> {
        let mut command = tokio::process::Command::new(&self.pg_restore);
        command.arg("--list").arg(file);
        let output =
            pg_restore(command, |stderr| format!("{} is not a readable archive: {stderr}", file.display())).await?;
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
            .count())
    }
}

/// Runs a pg_restore `command` to its end without input; a failure is the
/// error `failed` words around pg_restore's own message (its stderr).
async fn pg_restore(
    mut command: tokio::process::Command,
    failed: impl FnOnce(&str) -> String,
) -> Result<std::process::Output, BackupError> {
    let output = command.stdin(Stdio::null()).output().await.map_err(io("cannot run pg_restore"))?;
    if !output.status.success() {
        return Err(BackupError::Tool(failed(String::from_utf8_lossy(&output.stderr).trim())));
    }
    Ok(output)
}

/// Backs the database at `url` (reached by `source` too) up into `dir`,
/// and writes the archive's manifest. The row counts and the dump come from
/// one snapshot: a read-only repeatable-read transaction exports it, counts
/// in it, and stays open while pg_dump runs with `--snapshot`.
pub async fn take(
    tools: &Tools,
    source: &DatabaseConnection,
    url: &str,
    dir: &Path,
) -> Result<(PathBuf, u64, Manifest), BackupError> {
    let tx = source
        .begin_with_config(Some(IsolationLevel::RepeatableRead), Some(AccessMode::ReadOnly))
        .await
        .map_err(database("cannot start the backup's snapshot"))?;
    // The transaction idles while pg_dump reads, and its counts may take
    // long on big tables: timeouts set for the role or the server must not
    // end it (pg_dump lifts them for its own session the same way).
    tx.execute_unprepared(
        "SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0; SET LOCAL idle_in_transaction_session_timeout = 0",
    )
    .await
    .map_err(database("cannot lift the snapshot's timeouts"))?;
    let snapshot: String = scalar(&tx, "SELECT pg_export_snapshot()").await?;
    let server_version: String = scalar(&tx, "SHOW server_version").await?;
    let rows = count_rows(&tx).await?;
    let migrations = applied_migrations(&tx).await?;
    let taken_at = Utc::now();
    let (tools, url, dir) = (tools.clone(), url.to_owned(), dir.to_owned());
    let (file, bytes) = tokio::task::spawn_blocking(move || tools.backup(&url, &dir, &snapshot, taken_at))
        .await
        .map_err(|e| BackupError::Io { doing: "the pg_dump task failed".into(), source: e.into() })??;
    let manifest = Manifest { taken_at, server_version, migrations, rows };
    if let Err(err) = manifest.write(&file) {
        // An archive without its manifest would verify against the wrong
        // thing later: no backup rather than a half one.
        let _ = std::fs::remove_file(&file);
        return Err(err);
    }
    // pg_dump has finished with the snapshot; the transaction only read.
    if let Err(err) = tx.commit().await {
        tracing::warn!(error = %err, "ending the backup's snapshot transaction failed; the backup is complete");
    }
    Ok((file, bytes, manifest))
}

async fn scalar(tx: &DatabaseTransaction, sql: &str) -> Result<String, BackupError> {
    tx.query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .map_err(database(sql))?
        .and_then(|row| row.try_get_by_index::<String>(0).ok())
        .ok_or_else(|| BackupError::Tool(format!("{sql}: no value")))
}

/// The migrations applied to the database, oldest first; none when it
/// was never migrated.
async fn applied_migrations(tx: &DatabaseTransaction) -> Result<Vec<String>, BackupError> {
    let ledger = scalar(tx, "SELECT (to_regclass('public.seaql_migrations') IS NOT NULL)::text").await?;
    if ledger != "true" {
        return Ok(Vec::new());
    }
    tx.query_all_raw(Statement::from_string(
        DbBackend::Postgres,
        "SELECT version FROM seaql_migrations ORDER BY version",
    ))
    .await
    .map_err(database("cannot read the applied migrations"))?
    .iter()
    .map(|row| row.try_get_by_index::<String>(0).map_err(database("cannot read the applied migrations")))
    .collect()
}

/// Rows per table of the public schema, exactly, all from one snapshot.
pub async fn row_counts(db: &DatabaseConnection) -> Result<BTreeMap<String, i64>, BackupError> {
    let counting = "cannot count the rows of each table";
    let tx = db
        .begin_with_config(Some(IsolationLevel::RepeatableRead), Some(AccessMode::ReadOnly))
        .await
        .map_err(database(counting))?;
    let rows = count_rows(&tx).await?;
    tx.commit().await.map_err(database(counting))?;
    Ok(rows)
}

/// Counts in `tx` with row-level security off, as pg_dump reads: a role
/// whose reads the policies would filter gets an error, never a short count.
async fn count_rows(tx: &DatabaseTransaction) -> Result<BTreeMap<String, i64>, BackupError> {
    tx.execute_unprepared("SET LOCAL row_security = off").await.map_err(database("cannot turn row security off"))?;
    // The catalog quotes the names (`%I`): a table may be called anything.
    let tables = tx
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT tablename::text, format('SELECT count(*) FROM %I.%I', schemaname, tablename)
             FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
        ))
        .await
        .map_err(database("cannot list the tables"))?;
    let mut counts = BTreeMap::new();
    for row in tables {
        let (table, count_sql): (String, String) = (
            row.try_get_by_index(0).map_err(database("cannot list the tables"))?,
            row.try_get_by_index(1).map_err(database("cannot list the tables"))?,
        );
        let count = tx
            .query_one_raw(Statement::from_string(DbBackend::Postgres, count_sql))
            .await
            .map_err(database(format!("cannot count the rows of {table}")))?
            .ok_or_else(|| BackupError::Tool(format!("cannot count the rows of {table}: no result")))?
            .try_get_by_index::<i64>(0)
            .map_err(database(format!("cannot count the rows of {table}")))?;
        counts.insert(table, count);
    }
    Ok(counts)
}

/// Human-readable bytes.
pub fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / f64::from(1u32 << 30)),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1u32 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// `url` without its password, and the password: pg_dump and pg_restore get
/// it through their environment (PGPASSWORD), never on the command line,
/// where every local user could read it in /proc/<pid>/cmdline.
fn split_password(url: &str) -> (String, Option<String>) {
    let Ok(mut parsed) = url::Url::parse(url) else { return (url.to_owned(), None) };
    let Some(password) =
        parsed.password().map(|p| percent_encoding::percent_decode_str(p).decode_utf8_lossy().into_owned())
    else {
        return (url.to_owned(), None);
    };
    if parsed.set_password(None).is_err() {
        return (url.to_owned(), None);
    }
    (parsed.to_string(), Some(password))
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_password_goes_to_the_environment_not_the_command_line() {
        let (url, password) =
            super::split_password("postgres://app:s%40cr%3At@db.internal:5432/app?sslmode=verify-full");
        assert_eq!(url, "postgres://app@db.internal:5432/app?sslmode=verify-full");
        assert_eq!(password.as_deref(), Some("s@cr:t"));
        let socket = "postgres://postgres@localhost:5432/app?host=/tmp/sock";
        assert_eq!(super::split_password(socket), (socket.to_owned(), None));
    }
    use chrono::TimeZone;

    use super::*;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).single().unwrap_or_default()
    }

    #[test]
    fn names_carry_their_utc_time() {
        let t = at(2026, 11, 22, 3);
        assert_eq!(file_name(t), "backup_20261122T030000Z.dump");
        assert_eq!(taken_at(&file_name(t)), Some(t));
        assert_eq!(taken_at("notes.txt"), None);
    }

    #[test]
    fn retention_keeps_dailies_for_30_days_weeklies_for_26_weeks_and_monthlies_for_2_years() {
        let now = at(2026, 11, 22, 12);
        // Two backups a day, every day, for three years back.
        let mut names = Vec::new();
        for days in 0..(3 * 365) {
            for hour in [1, 13] {
                let t = now - Duration::days(days) - Duration::hours(12) + Duration::hours(hour);
                if t <= now {
                    names.push(file_name(t));
                }
            }
        }
        let (keep, delete) = plan_prune(&names, now);
        assert_eq!(keep.len() + delete.len(), names.len());
        let kept: Vec<DateTime<Utc>> = keep.iter().filter_map(|n| taken_at(n)).collect();
        // One per day for the last 30 days: the later of each day's two.
        let recent = kept.iter().filter(|t| now - **t <= Duration::days(30)).count();
        assert!((30..=31).contains(&recent), "{recent}");
        assert!(
            kept.iter()
                .filter(|t| now - **t <= Duration::days(30))
                .all(|t| t.format("%H").to_string() == "13" || t.date_naive() == now.date_naive())
        );
        // Nothing older than two years.
        assert!(kept.iter().all(|t| now - *t <= Duration::days(730)));
        // Between 6 months and 2 years: one per month.
        let old: Vec<_> = kept.iter().filter(|t| now - **t > Duration::weeks(26)).collect();
        let months: BTreeSet<(i32, u32)> = old.iter().map(|t| (t.year(), t.month())).collect();
        assert_eq!(old.len(), months.len(), "one backup per month past six months");
        assert!((17..=19).contains(&months.len()), "{}", months.len());
        // Between 30 days and 6 months: at most one per ISO week, plus month ends.
        let mid: Vec<_> =
            kept.iter().filter(|t| now - **t > Duration::days(30) && now - **t <= Duration::weeks(26)).collect();
        let weeks: BTreeSet<(i32, u32)> = mid.iter().map(|t| (t.iso_week().year(), t.iso_week().week())).collect();
        assert!(mid.len() <= weeks.len() + 6, "{} kept over {} weeks", mid.len(), weeks.len());
    }

    #[test]
    fn retention_keeps_exactly_the_newest_backup_of_each_period_at_each_boundary() {
        // Sunday 2026-11-22 12:00 UTC, in ISO week 47.
        let now = at(2026, 11, 22, 12);
        let kept = [
            at(2026, 11, 22, 9),  // today's newest
            at(2026, 10, 23, 13), // 29 days old: still a daily
            at(2026, 10, 18, 10), // newest of ISO week 42
            at(2026, 5, 30, 10),  // 176 days: still a weekly (26 weeks = 182 days)
            at(2026, 4, 2, 10),   // newest of April
            at(2024, 12, 1, 10),  // 721 days: still a monthly
        ];
        let deleted = [
            at(2026, 11, 22, 3),  // today, but not the newest
            at(2026, 10, 22, 11), // 31 days: no daily; 10-23 is its week's and month's newest
            at(2026, 10, 12, 10), // week 42 and October have newer ones
            at(2026, 5, 20, 10),  // 186 days: no weekly; May's newest is 05-30
            at(2026, 4, 1, 10),   // April's older one
            at(2024, 11, 20, 10), // 732 days: past the monthlies
            at(2026, 11, 23, 10), // from the future: a wrong clock, not a backup to trust
        ];
        let mut names: Vec<String> = kept.iter().chain(&deleted).map(|t| file_name(*t)).collect();
        names.push("backup_garbage.dump".into());
        names.push("backup_20261001T000000Z.dump.json".into());

        let (keep, delete) = plan_prune(&names, now);

        let sorted = |times: &[DateTime<Utc>]| -> BTreeSet<String> { times.iter().map(|t| file_name(*t)).collect() };
        assert_eq!(keep.into_iter().collect::<BTreeSet<_>>(), sorted(&kept));
        assert_eq!(delete.into_iter().collect::<BTreeSet<_>>(), sorted(&deleted), "manifests and strangers untouched");
    }

    #[test]
    fn a_manifest_lives_beside_its_archive() {
        let archive = Path::new("/backups/backup_20261122T030000Z.dump");
        assert_eq!(Manifest::path(archive), Path::new("/backups/backup_20261122T030000Z.dump.json"));
        assert_eq!(taken_at("backup_20261122T030000Z.dump.json"), None, "prune never takes it for an archive");
    }

    #[test]
    fn a_pg_dump_older_than_the_server_is_refused_with_what_to_install() {
        let tools = Tools { pg_dump: "pg_dump".into(), pg_restore: "pg_restore".into(), major: 14 };
        let error = tools.check_server(15).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("pg_dump 14 is older than the server (PostgreSQL 15)"), "{error}");
        assert!(error.contains("postgresql-client-15"), "{error}");
        assert!(tools.check_server(14).is_ok());
        assert!(tools.check_server(13).is_ok());
    }

    #[test]
    fn other_files_are_left_alone_and_future_backups_are_not_kept() {
        let now = at(2026, 11, 22, 12);
        let names = vec!["README".to_owned(), file_name(now + Duration::days(1)), file_name(now)];
        let (keep, delete) = plan_prune(&names, now);
        assert_eq!(keep, [file_name(now)]);
        assert_eq!(delete, [file_name(now + Duration::days(1))]);
    }
}
