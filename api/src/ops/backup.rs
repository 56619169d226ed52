//! Backups with the machine's pg_dump and pg_restore, as the seed does them:
//! custom format, restore with `--clean`, and a retention policy (daily
//! backups kept 30 days, weekly 6 months, monthly 2 years).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use chrono::{DateTime, Datelike, Duration, NaiveDateTime, Utc};

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
pub struct Tools {
    pub pg_dump: PathBuf,
    pub pg_restore: PathBuf,
    pub major: u32,
}

impl Tools {
    pub fn find(pg_bin: Option<&Path>) -> Result<Self, String> {
        let bin = crate::db::embedded::find_bin_with(pg_bin, &["pg_dump", "pg_restore"]).map_err(|e| {
            e.unwrap_or_else(|| {
                "pg_dump not found: install Debian's `postgresql-client` (or `postgresql`), or set PG_BIN".to_owned()
            })
        })?;
        let (pg_dump, pg_restore) = (bin.join("pg_dump"), bin.join("pg_restore"));
        let version = Command::new(&pg_dump)
            .arg("--version")
            .output()
            .map_err(|e| format!("cannot run {}: {e}", pg_dump.display()))?;
        // "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
        let major = String::from_utf8_lossy(&version.stdout)
            .split_whitespace()
            .nth(2)
            .and_then(|v| v.split('.').next()?.parse().ok())
            .ok_or("cannot read pg_dump's version")?;
        Ok(Self { pg_dump, pg_restore, major })
    }

    /// pg_dump refuses servers newer than itself; say so plainly first.
    pub fn check_server(&self, server_major: u32) -> Result<(), String> {
        if self.major < server_major {
            return Err(format!(
                "pg_dump {} is older than the server (PostgreSQL {server_major}): install postgresql-client-{server_major} or set PG_BIN",
                self.major
            ));
        }
        Ok(())
    }

    /// Dumps `url` into `dir`, printing progress; returns the file and its size.
    pub fn backup(&self, url: &str, dir: &Path) -> Result<(PathBuf, u64), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let file = dir.join(file_name(Utc::now()));
        let mut child = Command::new(&self.pg_dump)
            .args(["--format=custom", "--verbose", "--no-password"])
            .arg(format!("--file={}", file.display()))
            .arg(format!("--dbname={url}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run pg_dump: {e}"))?;
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
        let status = child.wait().map_err(|e| e.to_string())?;
        if !status.success() {
            let _ = std::fs::remove_file(&file);
            return Err(format!("pg_dump failed: {}", errors.join("; ")));
        }
        let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        Ok((file, size))
    }

    /// Restores `file` into `url`, dropping what it replaces first.
    pub fn restore(&self, file: &Path, url: &str) -> Result<(), String> {
        let output = Command::new(&self.pg_restore)
            .args(["--clean", "--if-exists", "--no-password", "--single-transaction"])
            .arg(format!("--dbname={url}"))
            .arg(file)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run pg_restore: {e}"))?;
        if !output.status.success() {
            return Err(format!("pg_restore failed: {}", String::from_utf8_lossy(&output.stderr).trim()));
        }
        Ok(())
    }

    /// Whether the archive's table of contents reads (it is a complete dump).
    pub fn list(&self, file: &Path) -> Result<usize, String> {
        let output = Command::new(&self.pg_restore)
            .arg("--list")
            .arg(file)
            .output()
            .map_err(|e| format!("cannot run pg_restore: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "{} is not a readable archive: {}",
                file.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
            .count())
    }
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

#[cfg(test)]
mod tests {
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
    fn a_pg_dump_older_than_the_server_is_refused_with_what_to_install() {
        let tools = Tools { pg_dump: "pg_dump".into(), pg_restore: "pg_restore".into(), major: 14 };
        let error = tools.check_server(15).err().unwrap_or_default();
        assert!(error.contains("pg_dump 14 is older than the server (PostgreSQL 15)"), "{error}");
        assert!(error.contains("postgresql-client-15"), "{error}");
        assert_eq!(tools.check_server(14), Ok(()));
        assert_eq!(tools.check_server(13), Ok(()));
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
