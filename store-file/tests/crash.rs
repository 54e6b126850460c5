//! Crash safety with real processes: a child writes and acknowledges sessions
//! with `Durability::Immediate`; the parent SIGKILLs it at a random moment,
//! several times. After each kill the store opens, every acknowledged session
//! reads back byte-exact, and `delete_expired` leaves no temp file behind.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use session_core::{SessionId, SessionStore, Timestamp, Version};
use store_file::{Durability, FileStore};

const ENV_DIR: &str = "STORE_FILE_CRASH_DIR";
const KILLS: usize = 4;

/// The bytes the child writes for `id` in round `n`: derived from both, so the
/// parent can check them byte-exact without sharing state.
fn payload(id: &SessionId, n: u64) -> Vec<u8> {
    let len = usize::try_from((n * 7_919) % 40_000).unwrap_or(0);
    let mut out = Vec::with_capacity(len + 8);
    out.extend_from_slice(&n.to_le_bytes());
    out.extend(id.as_bytes().iter().cycle().take(len));
    out
}

/// The next complete `ACK <id> <n>` line, skipping other output. A line cut
/// short by the kill (no newline) is not trusted: its number may be truncated.
fn next_ack(out: &mut impl BufRead) -> Option<(SessionId, u64)> {
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line).ok()? == 0 || !line.ends_with('\n') {
            return None;
        }
        let parsed = line
            .trim_end()
            .strip_prefix("ACK ")
            .and_then(|rest| rest.split_once(' '))
            .and_then(|(hex, n)| Some((SessionId::parse(hex).ok()?, n.parse().ok()?)));
        if parsed.is_some() {
            return parsed;
        }
    }
}

fn open(root: &Path) -> FileStore {
    FileStore::builder()
        .path(root)
        .durability(Durability::Immediate)
        .open()
        .unwrap()
}

/// The child's part: does nothing unless started by `kill_minus_nine_loses_no_acknowledged_write`.
#[test]
fn crash_writer_child() {
    let Ok(dir) = std::env::var(ENV_DIR) else {
        return;
    };
    let store = open(Path::new(&dir));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rt.block_on(async {
        // A small working set, so ids are overwritten as well as created.
        let ids: Vec<SessionId> = (0..32).map(|_| SessionId::generate()).collect();
        let start =
            u64::try_from(Timestamp::from(std::time::SystemTime::now()).as_millis()).unwrap_or(0);
        // libtest may have printed "test … " without a newline.
        println!();
        for n in start.. {
            let id = &ids[usize::try_from(n % 32).unwrap_or(0)];
            store
                .save(id, &payload(id, n), Timestamp::MAX, None)
                .await
                .unwrap();
            println!("ACK {} {n}", id.to_hex());
        }
    });
}

#[test]
fn kill_minus_nine_loses_no_acknowledged_write() {
    if std::env::var(ENV_DIR).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("sessions");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut acked: std::collections::HashMap<SessionId, u64> = Default::default();
    for round in 0..KILLS {
        open(&root); // create the root before the child races to it
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "crash_writer_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV_DIR, &root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        // Kill after 20..120 acknowledgements plus 0..15 ms, varying per round.
        let seed = Version::random(None).as_raw();
        let acks_before_kill = 20 + seed % 100;
        let extra = Duration::from_millis((seed >> 8) % 15);
        let mut seen = 0u64;
        let mut until = None;
        while let Some((id, n)) = next_ack(&mut out) {
            acked.insert(id, n);
            seen += 1;
            match until {
                None if seen >= acks_before_kill => until = Some(Instant::now() + extra),
                // Keep draining so the child is not blocked on a full pipe.
                Some(t) if Instant::now() >= t => break,
                _ => {}
            }
        }
        assert!(
            seen >= acks_before_kill,
            "round {round}: child stopped early"
        );
        child.kill().unwrap(); // SIGKILL
        // Lines the child completed before it died were acknowledged too.
        while let Some((id, n)) = next_ack(&mut out) {
            acked.insert(id, n);
        }
        child.wait().unwrap();

        let store = open(&root);
        rt.block_on(async {
            for (id, n) in &acked {
                let rec = store.load(id).await.unwrap().unwrap_or_else(|| {
                    panic!("round {round}: acknowledged session {id} is missing")
                });
                assert_eq!(
                    rec.data,
                    payload(id, *n),
                    "round {round}: session {id} is not the last acknowledged write"
                );
            }
            let before = store.stats().await.unwrap();
            eprintln!("round {round}: after the kill {:?}", before.details);
            assert_eq!(store.delete_expired().await.unwrap(), 0);
            let stats = store.stats().await.unwrap();
            assert!(
                stats.details.contains(&("temp_files".into(), "0".into())),
                "round {round}: temp files leaked: {:?}",
                stats.details
            );
            assert!(
                stats
                    .details
                    .contains(&("corrupt_files".into(), "0".into()))
            );
        });
    }
    assert!(acked.len() > 32, "several rounds wrote several id sets");
}
