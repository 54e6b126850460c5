//! A deliberately simple persistent, multi-process store (an append-only log
//! under an exclusive OS lock) that exercises the suite's persistence, crash and
//! multi-process checks, which re-run this binary as child processes.
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use conformance_tests::{Backend, Capabilities, Context};
use session_core::{Clock, ManualClock, Record, SessionId, SessionStore, StoreError, StoreResult};
use session_core::{Timestamp, Version, async_trait};

#[derive(Default)]
struct Db {
    last_version: u64,
    map: BTreeMap<SessionId, Record>,
    // How much of the log this process has replayed.
    offset: u64,
}

/// An append-only log, replayed incrementally under an exclusive `flock`.
struct LockedFileStore {
    path: PathBuf,
    db: Mutex<Db>,
    clock: ManualClock,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn corrupt(what: &str) -> StoreError {
    StoreError::corrupt(format!("log: {what}"))
}

fn id_of(s: &str) -> StoreResult<SessionId> {
    SessionId::parse(s).map_err(|_| corrupt("bad id"))
}

fn num<T: std::str::FromStr>(s: &str) -> StoreResult<T> {
    s.parse().map_err(|_| corrupt("bad number"))
}

impl Db {
    fn apply(&mut self, line: &str) -> StoreResult<()> {
        let f: Vec<&str> = line.split(' ').collect();
        match f.as_slice() {
            ["P", id, exp, ver, data] => {
                let version: u64 = num(ver)?;
                self.last_version = self.last_version.max(version);
                let rec = Record {
                    expires_at: Timestamp::from_millis(num(exp)?),
                    version: Version::from_raw(version),
                    data: unhex(data).ok_or_else(|| corrupt("bad data"))?,
                };
                self.map.insert(id_of(id)?, rec);
            }
            ["T", id, exp] => {
                if let Some(r) = self.map.get_mut(&id_of(id)?) {
                    r.expires_at = Timestamp::from_millis(num(exp)?);
                }
            }
            ["D", id] => {
                self.map.remove(&id_of(id)?);
            }
            _ => return Err(corrupt("bad line")),
        }
        Ok(())
    }
}

impl LockedFileStore {
    /// Runs `f` under the process mutex and the file lock, after replaying what
    /// other processes appended; appends the lines `f` returns (each already
    /// applied to `db` by `f`).
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Db, Timestamp) -> StoreResult<(Vec<String>, T)>,
    ) -> StoreResult<T> {
        let mut db = self
            .db
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&self.path)?;
        file.lock()?;
        let len = file.metadata()?.len();
        if len > db.offset {
            file.seek(SeekFrom::Start(db.offset))?;
            let mut tail = String::new();
            file.read_to_string(&mut tail)?;
            // A writer killed mid-append leaves a line without '\n': never
            // acknowledged, so drop it.
            let complete = tail.rfind('\n').map_or(0, |i| i + 1);
            for line in tail[..complete].lines() {
                db.apply(line)?;
            }
            db.offset += complete as u64;
            if complete < tail.len() {
                file.set_len(db.offset)?;
            }
        }
        let (lines, out) = f(&mut db, self.clock.now())?;
        if !lines.is_empty() {
            let text: String = lines.concat();
            file.write_all(text.as_bytes())?;
            db.offset += text.len() as u64;
        }
        Ok(out)
    }
}

fn live<'a>(db: &'a Db, id: &SessionId, now: Timestamp) -> Option<&'a Record> {
    db.map.get(id).filter(|r| r.expires_at > now)
}

fn put(db: &mut Db, id: &SessionId, data: &[u8], exp: Timestamp) -> (Vec<String>, Version) {
    db.last_version += 1;
    let v = db.last_version;
    let line = format!("P {} {} {v} {}\n", id.to_hex(), exp.as_millis(), hex(data));
    let version = Version::from_raw(v);
    db.map.insert(
        *id,
        Record {
            data: data.to_vec(),
            expires_at: exp,
            version,
        },
    );
    (vec![line], version)
}

fn check_size(data: &[u8]) -> StoreResult<()> {
    if data.len() > LIMIT {
        return Err(StoreError::TooLarge {
            size: data.len(),
            limit: LIMIT,
        });
    }
    Ok(())
}

const LIMIT: usize = 64 * 1024;

#[async_trait]
impl SessionStore for LockedFileStore {
    fn clock(&self) -> &dyn Clock {
        &self.clock
    }
    async fn load(&self, id: &SessionId) -> StoreResult<Option<Record>> {
        self.with(|db, now| Ok((vec![], live(db, id, now).cloned())))
    }
    async fn create(&self, id: &SessionId, data: &[u8], exp: Timestamp) -> StoreResult<Version> {
        check_size(data)?;
        self.with(|db, now| match live(db, id, now) {
            Some(_) => Err(StoreError::AlreadyExists),
            None => Ok(put(db, id, data, exp)),
        })
    }
    async fn save(
        &self,
        id: &SessionId,
        data: &[u8],
        exp: Timestamp,
        expected: Option<Version>,
    ) -> StoreResult<Version> {
        check_size(data)?;
        self.with(|db, now| match expected {
            Some(v) if live(db, id, now).map(|r| r.version) != Some(v) => Err(StoreError::Conflict),
            _ => Ok(put(db, id, data, exp)),
        })
    }
    async fn touch(&self, id: &SessionId, exp: Timestamp) -> StoreResult<bool> {
        self.with(
            |db, now| match db.map.get_mut(id).filter(|r| r.expires_at > now) {
                Some(r) => {
                    r.expires_at = exp;
                    Ok((
                        vec![format!("T {} {}\n", id.to_hex(), exp.as_millis())],
                        true,
                    ))
                }
                None => Ok((vec![], false)),
            },
        )
    }
    async fn delete(&self, id: &SessionId) -> StoreResult<bool> {
        self.with(|db, now| match db.map.remove(id) {
            Some(r) => Ok((vec![format!("D {}\n", id.to_hex())], r.expires_at > now)),
            None => Ok((vec![], false)),
        })
    }
    async fn delete_expired(&self) -> StoreResult<u64> {
        self.with(|db, now| {
            let dead: Vec<SessionId> = db
                .map
                .iter()
                .filter(|(_, r)| r.expires_at <= now)
                .map(|(id, _)| *id)
                .collect();
            for id in &dead {
                db.map.remove(id);
            }
            let lines = dead
                .iter()
                .map(|id| format!("D {}\n", id.to_hex()))
                .collect();
            Ok((lines, dead.len() as u64))
        })
    }
    async fn scan(
        &self,
        after: Option<&SessionId>,
        limit: usize,
    ) -> StoreResult<Vec<(SessionId, Record)>> {
        self.with(|db, _| {
            let from = after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
            let page = db.map.range((from, std::ops::Bound::Unbounded)).take(limit);
            Ok((vec![], page.map(|(id, r)| (*id, r.clone())).collect()))
        })
    }
}

struct LockedFile;

#[async_trait]
impl Backend for LockedFile {
    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .persistent()
            .multi_process()
            .max_value_size(LIMIT)
    }
    async fn open(&self, ctx: &Context) -> StoreResult<Arc<dyn SessionStore>> {
        Ok(Arc::new(LockedFileStore {
            path: ctx.dir().join("log"),
            db: Mutex::default(),
            clock: ctx.clock().clone(),
        }))
    }
}

conformance_tests::suite!(LockedFile);
