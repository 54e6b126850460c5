//! Checks that need other processes: the parent re-runs the test binary with
//! `--exact <test>` and these environment variables, and the generated `#[test]`
//! sees them and runs the child's part instead of the check.

use std::fs::File;
use std::io::{BufRead, BufReader, Write as _};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use session_core::{SessionId, SessionStore, StoreError, Timestamp, Update};

use crate::checks::{counter, live};
use crate::{Backend, CheckResult, Context, Failure, Harness, ensure};

const ENV_CHILD: &str = "SESSION_CONFORMANCE_CHILD";
const ENV_DIR: &str = "SESSION_CONFORMANCE_DIR";
const ENV_NS: &str = "SESSION_CONFORMANCE_NAMESPACE";
const ENV_NOW: &str = "SESSION_CONFORMANCE_NOW_MS";
const ENV_ARG: &str = "SESSION_CONFORMANCE_ARG";

const CRASH: &str = "crash_keeps_acknowledged_writes";
const CAS: &str = "multi_process_cas_increments_are_exact";
const RACE: &str = "multi_process_create_race_has_one_winner";
const VISIBLE: &str = "multi_process_writes_are_visible_without_reopen";

/// Acknowledged writes the crash check waits for before it kills the writer.
const CRASH_ACKS: usize = 150;
const CAS_PER_CHILD: u64 = 100;
const RACE_IDS: usize = 50;
const RACE_CHILDREN: usize = 3;

pub(crate) fn is_child_for(name: &str) -> bool {
    std::env::var(ENV_CHILD).as_deref() == Ok(name)
}

/// Runs the child's part of check `name` and exits the process.
pub(crate) fn run_child(backend: &dyn Backend, name: &str) -> ! {
    let result = child_main(backend, name);
    match result {
        Ok(()) => std::process::exit(0),
        Err(msg) => {
            let _ = writeln!(
                std::io::stderr().lock(),
                "conformance child `{name}` failed: {msg}"
            );
            std::process::exit(1)
        }
    }
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("missing {name}"))
}

fn child_main(backend: &dyn Backend, name: &str) -> Result<(), String> {
    // libtest has printed "test <name> ... " without a newline: end that line so
    // every line we print starts at column 0.
    say("")?;
    let dir = env(ENV_DIR)?;
    let ns = env(ENV_NS)?;
    let now: i64 = env(ENV_NOW)?
        .parse()
        .map_err(|e| format!("bad {ENV_NOW}: {e}"))?;
    let arg = env(ENV_ARG)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let ctx = Context::borrowed(dir.into(), ns, Timestamp::from_millis(now));
        let store = backend
            .open(&ctx)
            .await
            .map_err(|e| format!("child could not open the store: {e}"))?;
        let s: &dyn SessionStore = &*store;
        match name {
            CRASH => crash_child(s, &arg).await,
            CAS => cas_child(s, &arg).await,
            RACE => race_child(s, &arg).await,
            VISIBLE => visibility_child(s, &arg).await,
            other => Err(format!("no child part for {other}")),
        }
    })
}

fn say(line: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| e.to_string())
}

fn spawn(h: &Harness<'_>, check: &str, arg: &str, tag: &str) -> Result<Child, Failure> {
    let exe = std::env::current_exe()
        .map_err(|e| Failure(format!("cannot find the test binary: {e}")))?;
    let stderr = File::create(h.ctx().dir().join(format!("child-{tag}.stderr")))
        .map_err(|e| Failure(format!("cannot create a stderr file: {e}")))?;
    Command::new(exe)
        .args([h.test_name(), "--exact", "--nocapture", "--test-threads=1"])
        .env(ENV_CHILD, check)
        .env(ENV_DIR, h.ctx().dir())
        .env(ENV_NS, h.ctx().namespace())
        .env(ENV_NOW, h.now().as_millis().to_string())
        .env(ENV_ARG, arg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .spawn()
        .map_err(|e| Failure(format!("cannot spawn a child process: {e}")))
}

fn child_stderr(h: &Harness<'_>, tag: &str) -> String {
    let text = std::fs::read_to_string(h.ctx().dir().join(format!("child-{tag}.stderr")))
        .unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(8).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

/// Waits for a child and returns its stdout lines; fails on a non-zero exit.
async fn finish(h: &Harness<'_>, child: Child, tag: &str) -> Result<Vec<String>, Failure> {
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .map_err(|e| Failure(format!("waiting for child: {e}")))?
        .map_err(|e| Failure(format!("waiting for child: {e}")))?;
    ensure!(
        out.status.success(),
        "child process {tag} failed ({}): {}",
        out.status,
        child_stderr(h, tag)
    );
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Children wait until this wall-clock instant so they really race.
async fn start_gate(at_ms: u64) {
    let now = wall_ms();
    if at_ms > now {
        tokio::time::sleep(Duration::from_millis(at_ms - now)).await;
    }
}

fn parse_id(s: &str) -> Result<SessionId, String> {
    SessionId::parse(s).map_err(|e| e.to_string())
}

// ---------------------------------------------------------------- crash

fn crash_id(salt: &SessionId, i: u64) -> SessionId {
    let mut b = *salt.as_bytes();
    b[24..].copy_from_slice(&i.to_le_bytes());
    SessionId::from_bytes(b)
}

fn crash_data(i: u64) -> Vec<u8> {
    let mut d = format!("acknowledged write {i};").into_bytes();
    let unit = d.clone();
    while d.len() < 300 {
        d.extend_from_slice(&unit);
    }
    d
}

pub(crate) async fn crash_parent(h: &Harness<'_>) -> CheckResult {
    let salt = SessionId::generate();
    let counter_id = crash_id(&salt, u64::MAX);
    // Single-process engines must be closed here before the child opens them.
    h.close();
    let mut child = spawn(h, CRASH, &salt.to_hex(), "crash")?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Failure("no child stdout".into()))?;
    let (acked, early_exit) = tokio::task::spawn_blocking(move || {
        let mut acked = Vec::new();
        let mut killed = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(n) = line
                .strip_prefix("ACK ")
                .and_then(|n| n.parse::<u64>().ok())
            {
                acked.push(n);
                if acked.len() == CRASH_ACKS && !killed {
                    // SIGKILL: no destructors, no flush, no unlock.
                    let _ = child.kill();
                    killed = true;
                }
            }
        }
        let status = child.wait();
        (acked, if killed { None } else { Some(status) })
    })
    .await
    .map_err(|e| Failure(format!("crash reader: {e}")))?;
    if let Some(status) = early_exit {
        return Err(Failure(format!(
            "crash: the writer exited by itself ({status:?}) after {} acks: {}",
            acked.len(),
            child_stderr(h, "crash")
        )));
    }
    let s = h
        .open_again()
        .await
        .map_err(|f| Failure(format!("crash: after a killed writer, {}", f.0)))?;
    for &i in &acked {
        let r = s.load(&crash_id(&salt, i)).await?;
        ensure!(
            r.as_ref().map(|r| &r.data) == Some(&crash_data(i)),
            "crash: acknowledged write #{i} was lost or torn after the writer was killed"
        );
    }
    let last = acked.iter().copied().max().unwrap_or(0);
    let c = counter(Some(&live(&*s, &counter_id).await?))?;
    ensure!(
        c >= last,
        "crash: the overwritten counter went back to {c} although {last} was acknowledged"
    );
    let next = crash_id(&salt, last + 1);
    if let Some(r) = s.load(&next).await? {
        ensure!(
            r.data == crash_data(last + 1),
            "crash: an unacknowledged write is visible but torn"
        );
    }
    let fresh = SessionId::generate();
    s.create(&fresh, b"after crash", h.in_secs(3_600)).await?;
    ensure!(
        live(&*s, &fresh).await?.data == b"after crash",
        "crash: the store must be writable after a killed writer"
    );
    Ok(())
}

async fn crash_child(s: &dyn SessionStore, arg: &str) -> Result<(), String> {
    let salt = parse_id(arg)?;
    let exp = s.clock().now().saturating_add(Duration::from_secs(86_400));
    let counter_id = crash_id(&salt, u64::MAX);
    for i in 0..1_000_000u64 {
        s.save(&crash_id(&salt, i), &crash_data(i), exp, None)
            .await
            .map_err(|e| e.to_string())?;
        s.save(&counter_id, &i.to_le_bytes(), exp, None)
            .await
            .map_err(|e| e.to_string())?;
        say(&format!("ACK {i}"))?;
    }
    Ok(())
}

// ---------------------------------------------------------------- CAS increments

pub(crate) async fn cas_parent(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let id = SessionId::generate();
    s.create(&id, &0u64.to_le_bytes(), h.in_secs(3_600)).await?;
    let gate = wall_ms() + 400;
    let arg = format!("{};{gate}", id.to_hex());
    let children = [spawn(h, CAS, &arg, "cas-a")?, spawn(h, CAS, &arg, "cas-b")?];
    start_gate(gate).await;
    let mut mine = 0u64;
    while mine < CAS_PER_CHILD {
        let rec = live(&*s, &id).await?;
        let n = counter(Some(&rec))?;
        match s
            .save(
                &id,
                &(n + 1).to_le_bytes(),
                rec.expires_at,
                Some(rec.version),
            )
            .await
        {
            Ok(_) => mine += 1,
            Err(StoreError::Conflict) => tokio::task::yield_now().await,
            Err(e) => return Err(e.into()),
        }
    }
    for (child, tag) in children.into_iter().zip(["cas-a", "cas-b"]) {
        finish(h, child, tag).await?;
    }
    let total = counter(Some(&live(&*s, &id).await?))?;
    let want = 2 * 2 * CAS_PER_CHILD + CAS_PER_CHILD;
    ensure!(
        total == want,
        "multi-process: CAS increments from 3 processes must total {want}, got {total} (lost updates across processes)"
    );
    Ok(())
}

async fn cas_child(s: &dyn SessionStore, arg: &str) -> Result<(), String> {
    let (id, gate) = arg.split_once(';').ok_or("bad arg")?;
    let id = parse_id(id)?;
    start_gate(gate.parse().map_err(|_| "bad gate")?).await;
    for _ in 0..CAS_PER_CHILD {
        let mut bad = None;
        s.update(&id, &mut |cur| match counter(cur) {
            Ok(n) => Update::Put {
                data: (n + 1).to_le_bytes().to_vec(),
                expires_at: cur.map_or(Timestamp::MAX, |r| r.expires_at),
            },
            Err(e) => {
                bad = Some(e.0);
                Update::Keep
            }
        })
        .await
        .map_err(|e| e.to_string())?;
        if let Some(e) = bad {
            return Err(e);
        }
        loop {
            let rec = s
                .load(&id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("counter vanished")?;
            let n = counter(Some(&rec)).map_err(|e| e.0)?;
            match s
                .save(
                    &id,
                    &(n + 1).to_le_bytes(),
                    rec.expires_at,
                    Some(rec.version),
                )
                .await
            {
                Ok(_) => break,
                Err(StoreError::Conflict) => tokio::task::yield_now().await,
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- create race

pub(crate) async fn create_race_parent(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let ids: Vec<SessionId> = (0..RACE_IDS).map(|_| SessionId::generate()).collect();
    let gate = wall_ms() + 500;
    let list = ids
        .iter()
        .map(SessionId::to_hex)
        .collect::<Vec<_>>()
        .join(",");
    let mut children = Vec::new();
    for k in 0..RACE_CHILDREN {
        children.push((
            k,
            spawn(h, RACE, &format!("{k};{gate};{list}"), &format!("race-{k}"))?,
        ));
    }
    let mut winner: Vec<Option<usize>> = vec![None; RACE_IDS];
    for (k, child) in children {
        for line in finish(h, child, &format!("race-{k}")).await? {
            if let Some(idx) = line
                .strip_prefix("WON ")
                .and_then(|n| n.parse::<usize>().ok())
            {
                ensure!(
                    idx < RACE_IDS,
                    "multi-process: child reported a bogus id index"
                );
                ensure!(
                    winner[idx].is_none(),
                    "multi-process: two processes both created id #{idx} (create is not exclusive across processes)"
                );
                winner[idx] = Some(k);
            }
        }
    }
    for (idx, id) in ids.iter().enumerate() {
        let Some(k) = winner[idx] else {
            return Err(Failure(format!(
                "multi-process: nobody won the create of id #{idx}"
            )));
        };
        let rec = live(&*s, id).await?;
        ensure!(
            rec.data == format!("child {k}").into_bytes(),
            "multi-process: id #{idx} holds another process's data than the create winner's"
        );
    }
    Ok(())
}

async fn race_child(s: &dyn SessionStore, arg: &str) -> Result<(), String> {
    let mut parts = arg.splitn(3, ';');
    let k = parts.next().ok_or("bad arg")?;
    let gate: u64 = parts
        .next()
        .ok_or("bad arg")?
        .parse()
        .map_err(|_| "bad gate")?;
    let ids = parts.next().ok_or("bad arg")?;
    let exp = s.clock().now().saturating_add(Duration::from_secs(3_600));
    let data = format!("child {k}").into_bytes();
    let ids: Vec<SessionId> = ids.split(',').map(parse_id).collect::<Result<_, _>>()?;
    start_gate(gate).await;
    for (idx, id) in ids.iter().enumerate() {
        match s.create(id, &data, exp).await {
            Ok(_) => say(&format!("WON {idx}"))?,
            Err(StoreError::AlreadyExists) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- visibility

pub(crate) async fn visibility_parent(h: &Harness<'_>) -> CheckResult {
    let s = h.store();
    let (a, b) = (SessionId::generate(), SessionId::generate());
    s.create(&a, b"parent", h.in_secs(3_600)).await?;
    // Warm any cache the parent's store has.
    live(&*s, &a).await?;
    let arg = format!("write;{};{};0", a.to_hex(), b.to_hex());
    finish(h, spawn(h, VISIBLE, &arg, "vis-write")?, "vis-write").await?;
    let ra = live(&*s, &a).await?;
    ensure!(
        ra.data == b"child",
        "multi-process: a write by another process is not visible to an open store (stale cache?)"
    );
    let rb = s.load(&b).await?;
    ensure!(
        rb.map(|r| r.data) == Some(b"child-b".to_vec()),
        "multi-process: a create by another process is not visible to an open store"
    );
    ensure!(
        s.delete(&b).await?,
        "multi-process: delete of another process's record must give true"
    );
    let later = h.in_secs(5 * 3_600);
    ensure!(
        s.touch(&a, later).await?,
        "multi-process: touch of another process's record must give true"
    );
    let arg = format!("read;{};{};{}", a.to_hex(), b.to_hex(), later.as_millis());
    finish(h, spawn(h, VISIBLE, &arg, "vis-read")?, "vis-read").await?;
    Ok(())
}

async fn visibility_child(s: &dyn SessionStore, arg: &str) -> Result<(), String> {
    let parts: Vec<&str> = arg.split(';').collect();
    let [mode, a, b, exp] = parts.as_slice() else {
        return Err("bad arg".into());
    };
    let (a, b) = (parse_id(a)?, parse_id(b)?);
    let err = |e: StoreError| e.to_string();
    match *mode {
        "write" => {
            let ra = s
                .load(&a)
                .await
                .map_err(err)?
                .ok_or("the parent's record is not visible in the child")?;
            if ra.data != b"parent" {
                return Err("the child sees other data than the parent wrote".into());
            }
            s.save(&a, b"child", ra.expires_at, Some(ra.version))
                .await
                .map_err(err)?;
            s.create(&b, b"child-b", ra.expires_at).await.map_err(err)?;
            Ok(())
        }
        "read" => {
            if s.load(&b).await.map_err(err)?.is_some() {
                return Err(
                    "a record the parent deleted is still visible in another process".into(),
                );
            }
            let ra = s.load(&a).await.map_err(err)?.ok_or("record vanished")?;
            let want: i64 = exp.parse().map_err(|_| "bad exp")?;
            if ra.expires_at.as_millis() != want {
                return Err("the parent's touch is not visible in another process".into());
            }
            Ok(())
        }
        _ => Err("bad mode".into()),
    }
}
