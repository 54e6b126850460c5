//! What the PostgreSQL and MySQL stores share: pool settings, error mapping
//! and row decoding over sqlx.

use std::time::Duration;

use session_core::{Record, SessionId, StoreError, StoreResult, Timestamp};

use crate::dialect::{id_from_sql, version_from_sql};

/// Default number of pooled connections per store.
pub(crate) const DEFAULT_MAX_CONNECTIONS: u32 = 10;
/// Default wait for a pooled connection before [`StoreError::Busy`]; short, so
/// an unreachable server shows up as an error rather than a hang.
pub(crate) const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Driver errors keep their cause: pool exhaustion is `Busy`, undecodable
/// values are `Corrupt`, everything else (lost connection, SQL error) `Backend`.
pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut => StoreError::busy(e),
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => StoreError::corrupt(e),
        _ => StoreError::backend(e),
    }
}

/// Decodes `data, expires_at, version` starting at column `at`; a NULL or a
/// value of the wrong type (a row written by hand) is `Corrupt`.
pub(crate) fn decode<R>(row: &R, at: usize) -> StoreResult<Record>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let data: Vec<u8> = row.try_get(at).map_err(StoreError::corrupt)?;
    let expires_at: i64 = row.try_get(at + 1).map_err(StoreError::corrupt)?;
    let version: i64 = row.try_get(at + 2).map_err(StoreError::corrupt)?;
    Ok(Record {
        data,
        expires_at: Timestamp::from_millis(expires_at),
        version: version_from_sql(version)?,
    })
}

/// Decodes `id, data, expires_at, version`.
pub(crate) fn decode_with_id<R>(row: &R) -> StoreResult<(SessionId, Record)>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let raw: Vec<u8> = row.try_get(0).map_err(StoreError::corrupt)?;
    Ok((id_from_sql(&raw)?, decode(row, 1)?))
}

/// Decodes the three BIGINT counts of the stats statement.
pub(crate) fn decode_counts<R>(row: &R) -> StoreResult<(u64, u64, u64)>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let get = |i: usize| -> StoreResult<u64> {
        let v: i64 = row.try_get(i).map_err(StoreError::corrupt)?;
        Ok(u64::try_from(v).unwrap_or(0))
    };
    Ok((get(0)?, get(1)?, get(2)?))
}

/// `limit` as a bound LIMIT parameter.
pub(crate) fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}
