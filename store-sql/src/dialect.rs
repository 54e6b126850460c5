//! Everything that differs between SQL dialects, in one place: identifier
//! rules and quoting, the schema, and the table of statements.
//!
//! Statements are written once with `?` placeholders; PostgreSQL's `$n` form is
//! derived mechanically (no statement contains a string literal, and validated
//! table names cannot contain `?`). Each statement binds its parameters exactly
//! once, in the order listed in its comment, so MySQL's positional `?` and the
//! numbered forms agree.

use std::fmt;

use session_core::{StoreError, StoreResult};

/// The SQL dialect a statement or schema is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dialect {
    /// SQLite 3.35 or newer (upsert with `WHERE`, `RETURNING` not used).
    Sqlite,
    /// PostgreSQL 9.5 or newer (`ON CONFLICT`).
    Postgres,
    /// MySQL 5.7+ / MariaDB 10.2+ (`ON DUPLICATE KEY UPDATE`, InnoDB).
    MySql,
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::MySql => "mysql",
        })
    }
}

/// The table name used when none is configured.
pub const DEFAULT_TABLE: &str = "sessions";

/// Rows removed per statement by `delete_expired`, so one purge never holds
/// locks on (or writes undo for) an unbounded number of rows.
pub const PURGE_BATCH: u32 = 1_000;

/// Longest identifier accepted (PostgreSQL's limit; MySQL allows 64).
const MAX_IDENT: usize = 63;

/// A validated table name: `[A-Za-z_][A-Za-z0-9_]{0,62}`, for PostgreSQL
/// optionally prefixed by a schema of the same form (`schema.table`).
///
/// Validation is strict ASCII, so look-alike Unicode, quotes, backticks,
/// semicolons and whitespace are all refused; the name is quoted in every
/// statement anyway.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableName {
    schema: Option<String>,
    table: String,
    dialect: Dialect,
}

impl TableName {
    /// Validates `name` for `dialect`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Config`] naming the rule the name breaks.
    pub fn new(name: &str, dialect: Dialect) -> StoreResult<Self> {
        let (schema, table) = match name.split_once('.') {
            Some((s, t)) if dialect == Dialect::Postgres => (Some(s), t),
            Some(_) => {
                return Err(StoreError::config(format!(
                    "table name: a schema prefix is only supported for PostgreSQL, not {dialect}"
                )));
            }
            None => (None, name),
        };
        if let Some(s) = schema {
            check_ident(s, "schema name")?;
        }
        check_ident(table, "table name")?;
        Ok(Self {
            schema: schema.map(str::to_owned),
            table: table.to_owned(),
            dialect,
        })
    }

    /// The bare table name (without schema).
    #[must_use]
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The name as configured (`schema.table` or `table`).
    #[must_use]
    pub fn unquoted(&self) -> String {
        match &self.schema {
            Some(s) => format!("{s}.{}", self.table),
            None => self.table.clone(),
        }
    }

    /// The name quoted for its dialect, ready to splice into SQL.
    #[must_use]
    pub fn quoted(&self) -> String {
        let q = |s: &str| quote_ident(self.dialect, s);
        match &self.schema {
            Some(s) => format!("{}.{}", q(s), q(&self.table)),
            None => q(&self.table),
        }
    }

    /// Name of the expiry index. Index names share a namespace per schema
    /// (PostgreSQL) or per database (SQLite), so they carry the table name; a
    /// long name is shortened with a hash so it stays within 63 characters.
    fn index_name(&self) -> String {
        const SUFFIX: &str = "_expires_idx";
        if self.table.len() + SUFFIX.len() <= MAX_IDENT {
            format!("{}{SUFFIX}", self.table)
        } else {
            let head: String = self.table.chars().take(40).collect();
            format!("{head}_{:016x}_exp", fnv1a(self.table.as_bytes()))
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.unquoted())
    }
}

fn check_ident(s: &str, what: &str) -> StoreResult<()> {
    let bytes = s.as_bytes();
    let Some(&first) = bytes.first() else {
        return Err(StoreError::config(format!("{what} is empty")));
    };
    if bytes.len() > MAX_IDENT {
        return Err(StoreError::config(format!(
            "{what} is {} bytes long; at most {MAX_IDENT} allowed",
            bytes.len()
        )));
    }
    if !(first.is_ascii_alphabetic() || first == b'_') {
        return Err(StoreError::config(format!(
            "{what} must start with an ASCII letter or underscore"
        )));
    }
    if let Some(pos) = bytes
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_'))
    {
        // The offending text is not echoed: it may be hostile (terminal escapes).
        return Err(StoreError::config(format!(
            "{what} may contain only ASCII letters, digits and underscores (bad byte at offset {pos})"
        )));
    }
    Ok(())
}

/// Quotes an already validated identifier. Validation excludes quote
/// characters, but doubling them keeps this correct on its own.
fn quote_ident(dialect: Dialect, ident: &str) -> String {
    match dialect {
        Dialect::Sqlite | Dialect::Postgres => format!("\"{}\"", ident.replace('"', "\"\"")),
        Dialect::MySql => format!("`{}`", ident.replace('`', "``")),
    }
}

/// 64-bit FNV-1a: a stable hash for derived names and lock keys.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The DDL that each store's `migrate()` runs, for teams that manage their schema
/// themselves: `CREATE TABLE IF NOT EXISTS` and the expiry index, as separate
/// statements each ending in `;`.
///
/// # Errors
///
/// [`StoreError::Config`] if `table` is not a valid table name for `dialect`.
pub fn schema_sql(dialect: Dialect, table: &str) -> StoreResult<String> {
    let name = TableName::new(table, dialect)?;
    let mut out = String::new();
    for stmt in ddl(&name) {
        out.push_str(&stmt);
        out.push_str(";\n");
    }
    Ok(out)
}

/// Schema statements, in order. `id` is the raw 32-byte session id (fixed
/// width where the type allows), `expires_at` unix milliseconds, `version` the
/// 64-bit token reinterpreted as a signed BIGINT.
pub(crate) fn ddl(name: &TableName) -> Vec<String> {
    let t = name.quoted();
    let idx = quote_ident(name.dialect, &name.index_name());
    match name.dialect {
        Dialect::Sqlite => vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {t} (\
                 id BLOB NOT NULL PRIMARY KEY CHECK (length(id) = 32), \
                 data BLOB NOT NULL, \
                 expires_at INTEGER NOT NULL, \
                 version INTEGER NOT NULL)"
            ),
            format!("CREATE INDEX IF NOT EXISTS {idx} ON {t} (expires_at)"),
        ],
        Dialect::Postgres => vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {t} (\
                 id BYTEA NOT NULL PRIMARY KEY CHECK (octet_length(id) = 32), \
                 data BYTEA NOT NULL, \
                 expires_at BIGINT NOT NULL, \
                 version BIGINT NOT NULL)"
            ),
            format!("CREATE INDEX IF NOT EXISTS {idx} ON {t} (expires_at)"),
        ],
        // One statement (index inline) so concurrent migrations cannot
        // interleave between table and index.
        Dialect::MySql => vec![format!(
            "CREATE TABLE IF NOT EXISTS {t} (\
             id BINARY(32) NOT NULL PRIMARY KEY, \
             data LONGBLOB NOT NULL, \
             expires_at BIGINT NOT NULL, \
             version BIGINT NOT NULL, \
             INDEX {idx} (expires_at)) ENGINE = InnoDB"
        )],
    }
}

/// The statements of one store, prepared (and cached) by the driver.
///
/// Parameter order is given per statement; `now` always comes from the
/// store's clock, never from the database.
#[derive(Debug, Clone)]
pub(crate) struct Statements {
    /// (id, now) → data, expires_at, version of the live row.
    pub(crate) load: String,
    /// (id) → data, expires_at, version, live or not (used inside a transaction).
    pub(crate) load_any: String,
    /// (id, data, expires_at, version) — unconditional upsert.
    pub(crate) upsert: String,
    /// SQLite/PostgreSQL: (id, data, expires_at, version, now) — insert, or
    /// replace an expired row; 0 rows when a live row exists.
    /// MySQL: (id, data, expires_at, version) — plain insert (see `purge_one`).
    pub(crate) create: String,
    /// MySQL only: (id, now) — removes an expired row before `create`'s insert.
    pub(crate) purge_one: String,
    /// (data, expires_at, new version, id, expected version, now) — compare-and-swap.
    pub(crate) save_cas: String,
    /// (id, data, expires_at, version) — overwrite by id, used inside a transaction.
    pub(crate) overwrite: String,
    /// (expires_at, id, now).
    pub(crate) touch: String,
    /// (id, now) — removes the live row only.
    pub(crate) delete: String,
    /// SQLite/PostgreSQL: (now, now); MySQL: (now). At most [`PURGE_BATCH`] rows.
    pub(crate) purge_batch: String,
    /// (limit) → id, data, expires_at, version in id order.
    pub(crate) scan_first: String,
    /// (after, limit) → id, data, expires_at, version in id order.
    pub(crate) scan_after: String,
    /// (now, now, now) → live count, expired count, live bytes (all BIGINT).
    pub(crate) stats: String,
}

impl Statements {
    pub(crate) fn new(name: &TableName) -> Self {
        let t = name.quoted();
        let cols = "data, expires_at, version";
        let all = "id, data, expires_at, version";
        let d = name.dialect;

        // The per-dialect differences, side by side.
        let (upsert, create, purge_batch, length_fn, count_cast) = match d {
            Dialect::Sqlite | Dialect::Postgres => (
                format!(
                    "INSERT INTO {t} AS cur ({all}) VALUES (?, ?, ?, ?) \
                     ON CONFLICT (id) DO UPDATE SET data = excluded.data, \
                     expires_at = excluded.expires_at, version = excluded.version"
                ),
                format!(
                    "INSERT INTO {t} AS cur ({all}) VALUES (?, ?, ?, ?) \
                     ON CONFLICT (id) DO UPDATE SET data = excluded.data, \
                     expires_at = excluded.expires_at, version = excluded.version \
                     WHERE cur.expires_at <= ?"
                ),
                // The outer condition is re-checked on rows a concurrent writer
                // changed meanwhile, so a record made live again is never purged.
                format!(
                    "DELETE FROM {t} WHERE id IN \
                     (SELECT id FROM {t} WHERE expires_at <= ? LIMIT {PURGE_BATCH}) \
                     AND expires_at <= ?"
                ),
                if d == Dialect::Sqlite {
                    "length"
                } else {
                    "octet_length"
                },
                if d == Dialect::Sqlite {
                    ("", "")
                } else {
                    ("CAST(", " AS BIGINT)")
                },
            ),
            // MySQL: affected-row counts cannot tell "inserted" from "kept the
            // live row" under CLIENT_FOUND_ROWS, so create is an expired-row
            // purge followed by a plain INSERT whose duplicate-key error means
            // AlreadyExists. Both are atomic; together they are linearizable
            // because `now` is fixed for the call.
            Dialect::MySql => (
                format!(
                    "INSERT INTO {t} ({all}) VALUES (?, ?, ?, ?) \
                     ON DUPLICATE KEY UPDATE data = VALUES(data), \
                     expires_at = VALUES(expires_at), version = VALUES(version)"
                ),
                format!("INSERT INTO {t} ({all}) VALUES (?, ?, ?, ?)"),
                format!(
                    "DELETE FROM {t} WHERE expires_at <= ? ORDER BY expires_at LIMIT {PURGE_BATCH}"
                ),
                "LENGTH",
                ("CAST(", " AS SIGNED)"),
            ),
        };
        let (cast_open, cast_close) = count_cast;

        let stmts = Self {
            load: format!("SELECT {cols} FROM {t} WHERE id = ? AND expires_at > ?"),
            load_any: format!(
                "SELECT {cols} FROM {t} WHERE id = ?{}",
                if d == Dialect::Sqlite {
                    ""
                } else {
                    " FOR UPDATE"
                }
            ),
            upsert,
            create,
            purge_one: format!("DELETE FROM {t} WHERE id = ? AND expires_at <= ?"),
            save_cas: format!(
                "UPDATE {t} SET data = ?, expires_at = ?, version = ? \
                 WHERE id = ? AND version = ? AND expires_at > ?"
            ),
            overwrite: format!("UPDATE {t} SET data = ?, expires_at = ?, version = ? WHERE id = ?"),
            touch: format!("UPDATE {t} SET expires_at = ? WHERE id = ? AND expires_at > ?"),
            delete: format!("DELETE FROM {t} WHERE id = ? AND expires_at > ?"),
            purge_batch,
            scan_first: format!("SELECT {all} FROM {t} ORDER BY id LIMIT ?"),
            scan_after: format!("SELECT {all} FROM {t} WHERE id > ? ORDER BY id LIMIT ?"),
            stats: format!(
                "SELECT \
                 {cast_open}COALESCE(SUM(CASE WHEN expires_at > ? THEN 1 ELSE 0 END), 0){cast_close}, \
                 {cast_open}COALESCE(SUM(CASE WHEN expires_at > ? THEN 0 ELSE 1 END), 0){cast_close}, \
                 {cast_open}COALESCE(SUM(CASE WHEN expires_at > ? THEN {length_fn}(data) ELSE 0 END), 0){cast_close} \
                 FROM {t}"
            ),
        };
        if d == Dialect::Postgres {
            stmts.map(number_placeholders)
        } else {
            stmts
        }
    }

    fn map(self, f: fn(&str) -> String) -> Self {
        Self {
            load: f(&self.load),
            load_any: f(&self.load_any),
            upsert: f(&self.upsert),
            create: f(&self.create),
            purge_one: f(&self.purge_one),
            save_cas: f(&self.save_cas),
            overwrite: f(&self.overwrite),
            touch: f(&self.touch),
            delete: f(&self.delete),
            purge_batch: f(&self.purge_batch),
            scan_first: f(&self.scan_first),
            scan_after: f(&self.scan_after),
            stats: f(&self.stats),
        }
    }
}

/// `?` → `$1`, `$2`, … (PostgreSQL).
fn number_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// A version token as stored: the same 64 bits as a signed BIGINT.
pub(crate) fn version_to_sql(v: session_core::Version) -> i64 {
    i64::from_le_bytes(v.as_raw().to_le_bytes())
}

/// Reads a stored version back; 0 is never issued, so it marks a bad row.
pub(crate) fn version_from_sql(raw: i64) -> StoreResult<session_core::Version> {
    match u64::from_le_bytes(raw.to_le_bytes()) {
        0 => Err(StoreError::corrupt(
            "stored version is 0, which is never issued",
        )),
        v => Ok(session_core::Version::from_raw(v)),
    }
}

/// Reads a stored id back: exactly 32 bytes.
pub(crate) fn id_from_sql(raw: &[u8]) -> StoreResult<session_core::SessionId> {
    session_core::SessionId::try_from_slice(raw).map_err(StoreError::corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_pass_and_are_quoted() {
        let t = TableName::new("sessions", Dialect::Sqlite).unwrap();
        assert_eq!(t.quoted(), "\"sessions\"");
        let t = TableName::new("_S1", Dialect::MySql).unwrap();
        assert_eq!(t.quoted(), "`_S1`");
        let t = TableName::new("app.sessions", Dialect::Postgres).unwrap();
        assert_eq!(t.quoted(), "\"app\".\"sessions\"");
        let long = "a".repeat(63);
        assert!(TableName::new(&long, Dialect::Postgres).is_ok());
    }

    #[test]
    fn hostile_names_are_config_errors() {
        let hostile = [
            "",
            "x; DROP TABLE y",
            "x\"y",
            "x`y",
            "x'y",
            "1abc",
            "sess ions",
            "sessi\u{043e}ns", // Cyrillic o
            "ｓessions",       // full-width s
            "a-b",
            "a.b.c",
            "x\0",
            "x\n",
            ".x",
            "x.",
        ];
        for name in hostile {
            for d in [Dialect::Sqlite, Dialect::Postgres, Dialect::MySql] {
                let r = TableName::new(name, d);
                assert!(
                    matches!(r, Err(StoreError::Config(_))),
                    "{name:?} accepted for {d}"
                );
            }
        }
        let long = "a".repeat(64);
        assert!(matches!(
            TableName::new(&long, Dialect::MySql),
            Err(StoreError::Config(_))
        ));
        // A schema prefix is PostgreSQL-only.
        assert!(TableName::new("app.sessions", Dialect::Sqlite).is_err());
        assert!(TableName::new("app.sessions", Dialect::MySql).is_err());
    }

    #[test]
    fn index_names_fit_63_chars() {
        for len in [1, 50, 51, 52, 63] {
            let t = TableName::new(&"t".repeat(len), Dialect::Postgres).unwrap();
            assert!(t.index_name().len() <= MAX_IDENT, "{len}");
        }
        let a = TableName::new(&"a".repeat(62), Dialect::Postgres).unwrap();
        let b = TableName::new(&format!("{}b", "a".repeat(61)), Dialect::Postgres).unwrap();
        assert_ne!(a.index_name(), b.index_name());
    }

    #[test]
    fn postgres_placeholders_are_numbered() {
        let t = TableName::new("s", Dialect::Postgres).unwrap();
        let s = Statements::new(&t);
        assert!(s.save_cas.contains("$6") && !s.save_cas.contains('?'));
        assert!(s.create.contains("$5"));
    }

    #[test]
    fn schema_sql_mentions_index_and_types() {
        let s = schema_sql(Dialect::MySql, "sessions").unwrap();
        assert!(s.contains("LONGBLOB") && s.contains("INDEX"));
        let s = schema_sql(Dialect::Postgres, "sessions").unwrap();
        assert!(s.contains("BYTEA") && s.contains("CREATE INDEX IF NOT EXISTS"));
        assert!(schema_sql(Dialect::Sqlite, "x;y").is_err());
    }

    #[test]
    fn versions_round_trip_through_bigint() {
        for raw in [1, u64::MAX, 1 << 63, 42] {
            let v = session_core::Version::from_raw(raw);
            assert_eq!(version_from_sql(version_to_sql(v)).unwrap(), v);
        }
        assert!(version_from_sql(0).is_err());
    }
}
