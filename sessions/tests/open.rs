//! `sessions::open` against real stores: options reach the store, errors are clear.

use std::sync::Arc;

use sessions::{Backend, OpenError, SessionId, SessionStore, StoreError, Timestamp};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Every enabled backend that needs no server, as a URL in `dir` with `query`.
fn local_urls(dir: &std::path::Path, query: &str) -> Vec<(Backend, String)> {
    let d = dir.display();
    let mut urls = vec![(Backend::Memory, format!("memory:?{query}"))];
    for b in sessions::enabled_backends() {
        let url = match b {
            Backend::Mmap => format!("mmap://{d}/cache?size=8MiB&pages=8&{query}"),
            Backend::Redb => format!("redb://{d}/redb?{query}"),
            Backend::Lmdb => format!("lmdb://{d}/lmdb?map_size=64MiB&{query}"),
            Backend::Sqlite => format!("sqlite://{d}/s.db?table=my_sessions&{query}"),
            Backend::File => format!("file://{d}/files?durability=none&{query}"),
            _ => continue,
        };
        urls.push((b, url));
    }
    urls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_local_backend_opens_and_honours_max_value_size() -> TestResult {
    let dir = tempfile::tempdir()?;
    let urls = local_urls(dir.path(), "max_value_size=1KiB");
    let expected = 1 + sessions::enabled_backends()
        .iter()
        .filter(|b| !matches!(b, Backend::Memory | Backend::Postgres | Backend::Mysql))
        .count();
    assert_eq!(
        urls.len(),
        expected,
        "every local backend of this build: {urls:?}"
    );
    for (backend, url) in urls {
        let store: Arc<dyn SessionStore> = sessions::open(&url).await?;
        let id = SessionId::generate();
        let later = Timestamp::from_millis(i64::MAX / 2);
        store.create(&id, &[7; 1024], later).await?;
        assert_eq!(store.load(&id).await?.map(|r| r.data), Some(vec![7; 1024]));
        match store.save(&id, &[7; 1025], later, None).await {
            Err(StoreError::TooLarge { size: 1025, .. }) => {}
            other => panic!("{backend}: max_value_size=1KiB not applied: {other:?}"),
        }
    }
    Ok(())
}

#[tokio::test]
async fn persistent_backends_keep_data_across_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    let id = SessionId::generate();
    for (backend, url) in local_urls(dir.path(), "max_value_size=4KiB") {
        if backend == Backend::Memory {
            continue;
        }
        {
            let store = sessions::open(&url).await?;
            store
                .create(&id, b"kept", Timestamp::from_millis(i64::MAX / 2))
                .await?;
        }
        let store = sessions::open(&url).await?;
        assert_eq!(
            store.load(&id).await?.map(|r| r.data),
            Some(b"kept".to_vec()),
            "{backend}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn clear_errors() -> TestResult {
    let cases: &[(&str, &str)] = &[
        ("redis://localhost", "unknown store URL scheme"),
        ("just-a-path", "no scheme"),
        (
            "memory:?max_value_size=lots",
            "invalid value \"lots\" for option \"max_value_size\"",
        ),
        (
            "memory:?maxvaluesize=1",
            "unknown option \"maxvaluesize\" for memory: URL (known: max_value_size)",
        ),
        ("redb://data/sessions", "URL names a host"),
        ("redb:", "URL needs a path"),
        (
            "redb:///x?durability=fast",
            "expected immediate or eventual",
        ),
        ("postgres:///db", "needs a host"),
    ];
    for (url, expected) in cases {
        let err = match sessions::open(url).await {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{url} opened"),
        };
        assert!(err.contains(expected), "{url}: {err:?} lacks {expected:?}");
    }
    // A store that cannot open is a Store error naming the backend.
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"not a directory")?;
    let url = format!("redb://{}/below", file.display());
    match sessions::open(&url).await {
        Err(OpenError::Store {
            backend: Backend::Redb,
            source,
        }) => {
            assert!(!source.to_string().is_empty());
        }
        Err(OpenError::FeatureDisabled { feature, .. }) if !Backend::Redb.is_enabled() => {
            assert_eq!(feature, "redb");
        }
        Err(other) => panic!("expected a store error, got {other}"),
        Ok(_) => panic!("opened a store below a plain file"),
    }
    Ok(())
}

#[tokio::test]
async fn disabled_features_are_named() -> TestResult {
    for backend in Backend::ALL {
        let Some(feature) = backend.feature() else {
            continue;
        };
        let url = match backend {
            Backend::Postgres | Backend::Mysql => format!("{backend}://u@127.0.0.1:1/db"),
            _ => format!("{backend}:///nonexistent/x"),
        };
        let parsed = sessions::StoreUrl::parse(&url)?;
        assert_eq!(parsed.backend(), backend);
        if backend.is_enabled() {
            continue;
        }
        let err = sessions::open(&url).await.err().ok_or("opened")?;
        assert!(
            matches!(err, OpenError::FeatureDisabled { feature: f, .. } if f == feature),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains(&format!("enable the `{feature}` feature"))
        );
    }
    // The message itself, whatever this build has in it.
    let e = OpenError::FeatureDisabled {
        backend: Backend::Lmdb,
        feature: "lmdb",
    };
    assert_eq!(
        e.to_string(),
        "the lmdb backend is not compiled in: enable the `lmdb` feature of the `sessions` crate"
    );
    Ok(())
}

#[tokio::test]
async fn display_hides_passwords() -> TestResult {
    let u = sessions::StoreUrl::parse(
        "postgres://app:s3cret@db.internal:5432/app?table=s&sslmode=require",
    )?;
    let shown = u.to_string();
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("db.internal"));
    Ok(())
}
