//! Sync history on SQLite (`<home>/history.sqlite`): one row per run with its stats, one per
//! peer, and the cache of rejected event ids. Numbered migrations under `PRAGMA user_version`.

use std::path::Path;

use nostr::prelude::EventId;
use rusqlite::{Connection, OptionalExtension, params};

use super::refusal::Refusal;
use super::stats::RunStats;

/// Rejected ids older than this are forgotten (a peer may have fixed its data).
const REJECTED_TTL_SECS: u64 = 30 * 86_400;

const MIGRATIONS: &[&str] = &["CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        started_at INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,
        status TEXT NOT NULL,
        imported INTEGER NOT NULL,
        stats TEXT NOT NULL
    );
    CREATE TABLE run_peers (
        run_id INTEGER NOT NULL REFERENCES runs(id),
        name TEXT NOT NULL,
        ok INTEGER NOT NULL,
        error TEXT,
        events_in INTEGER NOT NULL,
        events_out INTEGER NOT NULL,
        imported INTEGER NOT NULL,
        bytes_in INTEGER NOT NULL,
        bytes_out INTEGER NOT NULL
    );
    CREATE INDEX run_peers_run ON run_peers(run_id);
    CREATE TABLE rejected (
        id TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        at INTEGER NOT NULL
    );"];

#[derive(Debug, thiserror::Error)]
#[error("sync history {path}: {source}")]
pub struct HistoryError {
    path: String,
    #[source]
    source: rusqlite::Error,
}

/// The history database.
pub struct History {
    conn: Connection,
    path: String,
}

impl History {
    pub fn open(path: &Path) -> Result<History, HistoryError> {
        let name = path.display().to_string();
        let err = |source| HistoryError {
            path: name.clone(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        let mut history = History { conn, path: name };
        history.migrate()?;
        Ok(history)
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> HistoryError + '_ {
        |source| HistoryError {
            path: self.path.clone(),
            source,
        }
    }

    fn migrate(&mut self) -> Result<(), HistoryError> {
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(self.err())?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self.conn.transaction().map_err(|source| HistoryError {
                path: self.path.clone(),
                source,
            })?;
            tx.execute_batch(sql).map_err(|source| HistoryError {
                path: self.path.clone(),
                source,
            })?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(|source| HistoryError {
                    path: self.path.clone(),
                    source,
                })?;
            tx.commit().map_err(|source| HistoryError {
                path: self.path.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// Record a finished run; returns its id.
    pub fn record(&mut self, stats: &RunStats) -> Result<i64, HistoryError> {
        let path = self.path.clone();
        let err = |source| HistoryError {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        let json = serde_json::to_string(stats).unwrap_or_default();
        tx.execute(
            "INSERT INTO runs (started_at, duration_ms, status, imported, stats) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![stats.started_at as i64, stats.duration_ms as i64, stats.status().to_string(), stats.imported as i64, json],
        )
        .map_err(err)?;
        let id = tx.last_insert_rowid();
        for p in &stats.peers {
            tx.execute(
                "INSERT INTO run_peers (run_id, name, ok, error, events_in, events_out, imported, bytes_in, bytes_out) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![id, p.name, p.ok, p.error, p.events_in as i64, p.events_out as i64, p.imported as i64, p.bytes_in as i64, p.bytes_out as i64],
            )
            .map_err(err)?;
        }
        // Store the id inside the JSON too, so a re-read run knows itself.
        let mut with_id = stats.clone();
        with_id.run_id = id;
        tx.execute(
            "UPDATE runs SET stats = ?1 WHERE id = ?2",
            params![serde_json::to_string(&with_id).unwrap_or_default(), id],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(id)
    }

    /// A run by id, or the latest.
    pub fn run(&self, id: Option<i64>) -> Result<Option<RunStats>, HistoryError> {
        let json: Option<String> = match id {
            Some(id) => self
                .conn
                .query_row("SELECT stats FROM runs WHERE id = ?1", [id], |r| r.get(0))
                .optional(),
            None => self
                .conn
                .query_row("SELECT stats FROM runs ORDER BY id DESC LIMIT 1", [], |r| {
                    r.get(0)
                })
                .optional(),
        }
        .map_err(self.err())?;
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
    }

    /// The last `n` runs, oldest first (for trends).
    pub fn recent(&self, n: usize) -> Result<Vec<RunStats>, HistoryError> {
        let mut stmt = self
            .conn
            .prepare("SELECT stats FROM runs ORDER BY id DESC LIMIT ?1")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([n as i64], |r| r.get::<_, String>(0))
            .map_err(self.err())?;
        let mut runs: Vec<RunStats> = rows
            .flatten()
            .filter_map(|j| serde_json::from_str(&j).ok())
            .collect();
        runs.reverse();
        Ok(runs)
    }

    /// Unix time the last run started.
    pub fn last_run_at(&self) -> Result<Option<u64>, HistoryError> {
        self.conn
            .query_row("SELECT MAX(started_at) FROM runs", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .map(|v| v.map(|t| t as u64))
            .map_err(self.err())
    }

    pub fn remember_rejected(
        &mut self,
        ids: &[(EventId, Refusal)],
        now: u64,
    ) -> Result<(), HistoryError> {
        let path = self.path.clone();
        let err = |source| HistoryError {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        for (id, reason) in ids {
            tx.execute(
                "INSERT OR REPLACE INTO rejected (id, reason, at) VALUES (?1, ?2, ?3)",
                params![id.to_hex(), reason.to_string(), now as i64],
            )
            .map_err(err)?;
        }
        tx.execute(
            "DELETE FROM rejected WHERE at < ?1",
            [(now.saturating_sub(REJECTED_TTL_SECS)) as i64],
        )
        .map_err(err)?;
        tx.commit().map_err(err)
    }

    /// Ids refused lately (a row that is not an id, from an older version, is skipped).
    pub fn rejected_ids(&self) -> Result<std::collections::HashSet<EventId>, HistoryError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM rejected")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(self.err())?;
        Ok(rows
            .flatten()
            .filter_map(|hex| EventId::from_hex(&hex).ok())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_round_trip_and_rejected_ids_expire() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = History::open(&dir.path().join("h.sqlite")).unwrap();
        let stats = RunStats {
            started_at: 1000,
            imported: 7,
            peers_contacted: 1,
            peers_ok: 1,
            ..Default::default()
        };
        let id = h.record(&stats).unwrap();
        let back = h.run(Some(id)).unwrap().unwrap();
        assert_eq!((back.run_id, back.imported), (id, 7));
        assert_eq!(h.last_run_at().unwrap(), Some(1000));
        let id = EventId::from_byte_array([0xaa; 32]);
        h.remember_rejected(&[(id, Refusal::Spam)], 10).unwrap();
        assert!(h.rejected_ids().unwrap().contains(&id));
        h.remember_rejected(&[], 10 + REJECTED_TTL_SECS + 1)
            .unwrap();
        assert!(h.rejected_ids().unwrap().is_empty());
        drop(h);
        // Reopening runs no migration twice.
        let h = History::open(&dir.path().join("h.sqlite")).unwrap();
        assert_eq!(h.recent(5).unwrap().len(), 1);
    }
}
