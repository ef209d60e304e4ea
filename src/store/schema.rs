//! The database: connection settings (WAL, durable commits) and the schema as numbered
//! migrations under `PRAGMA user_version`, applied in one transaction each.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// How long a connection waits for another process's write lock (a `relay` and a `backfill`
/// may share one file).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Each step moves `user_version` from its index to index + 1.
const MIGRATIONS: &[&str] = &[
    // 1: events, their single-letter tags, and NIP-09 tombstones.
    "CREATE TABLE events (
        seq        INTEGER PRIMARY KEY,
        id         BLOB NOT NULL UNIQUE,
        pubkey     BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        kind       INTEGER NOT NULL,
        slot       TEXT,
        json       TEXT NOT NULL
    );
    CREATE INDEX events_time ON events (created_at DESC, id);
    CREATE INDEX events_pubkey ON events (pubkey, created_at DESC);
    CREATE INDEX events_kind ON events (kind, created_at DESC);
    CREATE INDEX events_pubkey_kind ON events (pubkey, kind, created_at DESC);
    CREATE INDEX events_slot ON events (pubkey, kind, slot) WHERE slot IS NOT NULL;
    CREATE TABLE tags (
        seq        INTEGER NOT NULL REFERENCES events (seq) ON DELETE CASCADE,
        name       TEXT NOT NULL,
        value      TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX tags_value ON tags (name, value, created_at DESC);
    CREATE INDEX tags_seq ON tags (seq);
    -- ids deleted by their author (kind 5 `e` tags): refused if they come back
    CREATE TABLE deleted_ids (
        id     BLOB NOT NULL,
        pubkey BLOB NOT NULL,
        PRIMARY KEY (id, pubkey)
    ) WITHOUT ROWID;
    -- coordinates deleted up to a time (kind 5 `a` tags)
    CREATE TABLE deleted_slots (
        pubkey BLOB NOT NULL,
        kind   INTEGER NOT NULL,
        slot   TEXT NOT NULL,
        until  INTEGER NOT NULL,
        PRIMARY KEY (pubkey, kind, slot)
    ) WITHOUT ROWID;",
    // 2: the tie-break of every REQ (`created_at DESC, id ASC`) inside the indexes, so a query
    // walks an index in order and stops at its limit without sorting each run of equal times;
    // and one tag row per (event, name, value), so that a one-value tag filter needs no
    // DISTINCT (the writer no longer stores an event's repeated tags twice).
    "DROP INDEX events_pubkey;
    CREATE INDEX events_pubkey ON events (pubkey, created_at DESC, id);
    DROP INDEX events_kind;
    CREATE INDEX events_kind ON events (kind, created_at DESC, id);
    DROP INDEX events_pubkey_kind;
    CREATE INDEX events_pubkey_kind ON events (pubkey, kind, created_at DESC, id);
    DELETE FROM tags WHERE rowid NOT IN (SELECT min(rowid) FROM tags GROUP BY seq, name, value);",
    // 3: the event's `seq` inside the tag index, so a tag filter (`#e` thread, `#p` mentions,
    // `#t`) goes from the index straight to the event row instead of through the tags table's
    // row first: one random page per result instead of two (a 333-reply thread at 100k events:
    // 1.05 ms of SQL before, 0.41 ms after, both without the read map).
    "DROP INDEX tags_value;
    CREATE INDEX tags_value ON tags (name, value, created_at DESC, seq);",
];

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("cannot open the event database {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "the event database {path} has schema version {found}, newer than this binary ({known})"
    )]
    TooNew {
        path: String,
        found: i64,
        known: usize,
    },
}

/// Page cache per connection, in KiB (SQLite's default is 2 MiB; indexes of a few hundred
/// thousand events want more to stay in memory).
const CACHE_KIB: i64 = 64 * 1024;

/// Pages written to the WAL between automatic checkpoints (4 KiB pages: 40 MiB).
const WAL_PAGES: i64 = 10_000;
/// Size the WAL file is truncated to after a checkpoint, in bytes.
const WAL_LIMIT: i64 = 64 << 20;

fn settings(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // FULL: a commit is on disk before `OK true` is sent (WAL makes this one fsync per batch).
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

/// Open (creating if needed) and migrate the database: the writer's connection.
pub fn open_writer(path: &Path) -> Result<Connection, SchemaError> {
    let err = |source| SchemaError::Open {
        path: path.display().to_string(),
        source,
    };
    let mut conn = Connection::open(path).map_err(err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(err)?;
    settings(&conn).map_err(err)?;
    // Checkpoint every WAL_PAGES pages rather than SQLite's 1000: the hot index pages are
    // copied back once per checkpoint, not once per 4 MiB written. The WAL file is cut back to
    // WAL_LIMIT after a checkpoint.
    conn.pragma_update(None, "wal_autocheckpoint", WAL_PAGES)
        .map_err(err)?;
    conn.pragma_update(None, "journal_size_limit", WAL_LIMIT)
        .map_err(err)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(err)?;
    if version as usize > MIGRATIONS.len() {
        return Err(SchemaError::TooNew {
            path: path.display().to_string(),
            found: version,
            known: MIGRATIONS.len(),
        });
    }
    for (index, step) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction().map_err(err)?;
        tx.execute_batch(step).map_err(err)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)
            .map_err(err)?;
        tx.commit().map_err(err)?;
    }
    Ok(conn)
}

/// Bytes of the database file a read connection maps into memory. A REQ fetches its events'
/// rows from all over the file (a thread's replies were stored over weeks); through the map
/// each page is a pointer into the OS page cache, shared by every reader, instead of a
/// `pread` into a 2 MiB private page cache that a 333-reply thread already overflows (measured
/// at 100k events, schema step 2: 1.05–2.4 ms of SQL for the thread without the map,
/// 0.46 ms with it; 0.35 ms with step 3 too). 1 GiB of
/// address space covers a million events; 32-bit stations get 256 MiB (their address space is
/// 3 GiB), and past the map SQLite reads as before.
#[cfg(target_pointer_width = "64")]
const READ_MAP_BYTES: i64 = 1 << 30;
#[cfg(not(target_pointer_width = "64"))]
const READ_MAP_BYTES: i64 = 256 << 20;

/// A read-only connection (readers never block the writer in WAL mode), its file mapped.
pub fn open_reader(path: &Path) -> Result<Connection, SchemaError> {
    let err = |source| SchemaError::Open {
        path: path.display().to_string(),
        source,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
    // The pragma answers with the size granted (less when SQLite was built with a lower
    // ceiling); a refused map only means reads go through `pread`, so the answer is not checked.
    conn.pragma_update_and_check(None, "mmap_size", READ_MAP_BYTES, |_| Ok(()))
        .map_err(err)?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The columns of `index`, in order.
    fn index_columns(conn: &Connection, index: &str) -> Vec<String> {
        let mut stmt = conn
            .prepare(&format!("PRAGMA index_info({index})"))
            .expect("index_info");
        stmt.query_map([], |r| r.get(2))
            .expect("columns")
            .collect::<Result<_, _>>()
            .expect("names")
    }

    #[test]
    fn steps_2_and_3_rebuild_the_indexes_and_fold_repeated_tags_of_a_step_1_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("old.sqlite");
        {
            // A database as the first schema left it, with a tag stored twice.
            let conn = Connection::open(&path).expect("old");
            conn.execute_batch(MIGRATIONS[0]).expect("step 1");
            conn.pragma_update(None, "user_version", 1)
                .expect("version");
            conn.execute_batch(
                "INSERT INTO events (seq, id, pubkey, created_at, kind, json)
                     VALUES (1, x'01', x'02', 5, 1, '{}');
                 INSERT INTO tags VALUES (1, 't', 'a', 5), (1, 't', 'a', 5), (1, 't', 'b', 5);",
            )
            .expect("rows");
        }
        let conn = open_writer(&path).expect("migrated");
        let one = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).expect(sql) };
        assert_eq!(one("PRAGMA user_version") as usize, MIGRATIONS.len());
        assert_eq!(one("SELECT count(*) FROM events"), 1);
        assert_eq!(
            one("SELECT count(*) FROM tags"),
            2,
            "one row per (event, name, value)"
        );
        for index in ["events_pubkey", "events_kind", "events_pubkey_kind"] {
            let columns = index_columns(&conn, index);
            assert_eq!(columns.last().map(String::as_str), Some("id"), "{index}");
        }
        assert_eq!(
            index_columns(&conn, "tags_value"),
            ["name", "value", "created_at", "seq"]
        );
        // The thread query reads the event's seq from the index, not from the tags table.
        let plan: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT e.json FROM tags t JOIN events e ON e.seq = t.seq \
                 WHERE t.name = 'e' AND t.value = 'x' ORDER BY t.created_at DESC",
                [],
                |r| r.get(3),
            )
            .expect("plan");
        assert!(plan.contains("COVERING INDEX tags_value"), "{plan}");
    }

    #[test]
    fn step_3_keeps_the_tags_of_a_step_2_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("step2.sqlite");
        {
            let conn = Connection::open(&path).expect("old");
            conn.execute_batch(MIGRATIONS[0]).expect("step 1");
            conn.execute_batch(MIGRATIONS[1]).expect("step 2");
            conn.pragma_update(None, "user_version", 2)
                .expect("version");
            conn.execute_batch(
                "INSERT INTO events (seq, id, pubkey, created_at, kind, json)
                     VALUES (1, x'01', x'02', 5, 1, '{}'), (2, x'03', x'02', 6, 1, '{}');
                 INSERT INTO tags VALUES (1, 'e', 'root', 5), (2, 'e', 'root', 6), (2, 'p', 'a', 6);",
            )
            .expect("rows");
        }
        let conn = open_writer(&path).expect("migrated");
        let thread: Vec<i64> = conn
            .prepare(
                "SELECT t.seq FROM tags t JOIN events e ON e.seq = t.seq \
                 WHERE t.name = 'e' AND t.value = 'root' ORDER BY t.created_at DESC",
            )
            .expect("thread")
            .query_map([], |r| r.get(0))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("seqs");
        assert_eq!(thread, [2, 1], "newest first, through the new index");
        assert_eq!(
            index_columns(&conn, "tags_value"),
            ["name", "value", "created_at", "seq"]
        );
    }

    /// A database created and migrated by a first writer, closed again.
    fn created() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("r.sqlite");
        drop(open_writer(&path).expect("first open"));
        (dir, path)
    }

    fn pragma<T: rusqlite::types::FromSql>(conn: &Connection, name: &str) -> T {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
            .expect(name)
    }

    #[test]
    fn a_read_connection_maps_the_file() {
        let (_dir, path) = created();
        let reader = open_reader(&path).expect("reader");
        assert_eq!(pragma::<i64>(&reader, "mmap_size"), READ_MAP_BYTES);
    }

    #[test]
    fn migrations_apply_once_and_refuse_a_newer_file() {
        let (_dir, path) = created();
        let conn = open_writer(&path).expect("second open");
        assert_eq!(
            pragma::<i64>(&conn, "user_version") as usize,
            MIGRATIONS.len()
        );
        assert_eq!(pragma::<String>(&conn, "journal_mode"), "wal");
        conn.pragma_update(None, "user_version", 99).expect("bump");
        drop(conn);
        assert!(matches!(
            open_writer(&path),
            Err(SchemaError::TooNew { found: 99, .. })
        ));
    }
}
