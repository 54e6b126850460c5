//! Parsing a store URL into a backend, a path or server address, and checked options.
//!
//! Everything is checked here, before any store is touched and whether or not
//! the backend's feature is compiled in: an unknown option, a malformed value
//! or an option given twice is an [`OpenError`], never ignored or defaulted.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use percent_encoding::percent_decode_str;
use url::Url;

use crate::OpenError;

/// The storage backends a URL can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// `memory:` — session-core's in-process `MemoryStore` (always available).
    Memory,
    /// `mmap:` — store-mmap, a shared-memory cache (feature `mmap`).
    Mmap,
    /// `redb:` — store-embedded-kv on redb (feature `redb`).
    Redb,
    /// `lmdb:` — store-embedded-kv on LMDB (feature `lmdb`).
    Lmdb,
    /// `sqlite:` — store-sql on SQLite (feature `sqlite`).
    Sqlite,
    /// `postgres:` / `postgresql:` — store-sql on PostgreSQL (feature `postgres`).
    Postgres,
    /// `mysql:` / `mariadb:` — store-sql on MySQL or MariaDB (feature `mysql`).
    Mysql,
    /// `file:` — store-file, one file per session (feature `file`).
    File,
}

impl Backend {
    /// Every backend, in the order of the crate docs' table.
    pub const ALL: [Backend; 8] = [
        Self::Memory,
        Self::Mmap,
        Self::Redb,
        Self::Lmdb,
        Self::Sqlite,
        Self::Postgres,
        Self::Mysql,
        Self::File,
    ];

    /// The URL scheme (the canonical one where there are aliases).
    #[must_use]
    pub fn scheme(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Mmap => "mmap",
            Self::Redb => "redb",
            Self::Lmdb => "lmdb",
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::Mysql => "mysql",
            Self::File => "file",
        }
    }

    /// The cargo feature of this crate that compiles the backend in
    /// (`None` for `memory`, which is always there).
    #[must_use]
    pub fn feature(self) -> Option<&'static str> {
        match self {
            Self::Memory => None,
            other => Some(other.scheme()),
        }
    }

    /// Whether this build has the backend.
    #[must_use]
    pub fn is_enabled(self) -> bool {
        match self {
            Self::Memory => true,
            Self::Mmap => cfg!(feature = "mmap"),
            Self::Redb => cfg!(feature = "redb"),
            Self::Lmdb => cfg!(feature = "lmdb"),
            Self::Sqlite => cfg!(feature = "sqlite"),
            Self::Postgres => cfg!(feature = "postgres"),
            Self::Mysql => cfg!(feature = "mysql"),
            Self::File => cfg!(feature = "file"),
        }
    }

    fn from_scheme(s: &str) -> Option<Self> {
        // Matched lower-cased: URL schemes are case-insensitive.
        Some(match s {
            "memory" => Self::Memory,
            "mmap" => Self::Mmap,
            "redb" => Self::Redb,
            "lmdb" => Self::Lmdb,
            "sqlite" => Self::Sqlite,
            "postgres" | "postgresql" => Self::Postgres,
            "mysql" | "mariadb" => Self::Mysql,
            "file" => Self::File,
            _ => return None,
        })
    }

    fn is_server(self) -> bool {
        matches!(self, Self::Postgres | Self::Mysql)
    }

    /// The query options this backend accepts (ours, then the driver's).
    #[must_use]
    pub fn options(self) -> &'static [&'static str] {
        match self {
            Self::Memory => &["max_value_size"],
            Self::Mmap => &["size", "pages", "max_value_size"],
            Self::Redb => &[
                "durability",
                "flush_interval",
                "cache_size",
                "max_value_size",
            ],
            Self::Lmdb => &["durability", "flush_interval", "map_size", "max_value_size"],
            Self::Sqlite => &["table", "synchronous", "busy_timeout", "max_value_size"],
            Self::Postgres => &[
                "table",
                "max_connections",
                "acquire_timeout",
                "max_value_size",
                "sslmode",
                "sslrootcert",
                "sslcert",
                "sslkey",
                "application_name",
                "options",
            ],
            Self::Mysql => &[
                "table",
                "max_connections",
                "acquire_timeout",
                "max_value_size",
                "ssl-mode",
                "ssl-ca",
                "ssl-cert",
                "ssl-key",
                "charset",
                "collation",
                "timezone",
                "socket",
            ],
            Self::File => &["durability", "max_value_size"],
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.scheme())
    }
}

/// When writes reach the disk (`durability=`), for the stores that offer a choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DurabilityOpt {
    Immediate,
    Eventual,
    None,
}

/// SQLite's `synchronous=` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SynchronousOpt {
    Normal,
    Full,
}

/// The checked query options; each is `None` when not given (the store's default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Options {
    pub(crate) max_value_size: Option<usize>,
    pub(crate) size: Option<u64>,
    pub(crate) pages: Option<u32>,
    pub(crate) durability: Option<DurabilityOpt>,
    pub(crate) flush_interval: Option<Duration>,
    pub(crate) cache_size: Option<usize>,
    pub(crate) map_size: Option<usize>,
    pub(crate) table: Option<String>,
    pub(crate) synchronous: Option<SynchronousOpt>,
    pub(crate) busy_timeout: Option<Duration>,
    pub(crate) max_connections: Option<u32>,
    pub(crate) acquire_timeout: Option<Duration>,
    /// Driver options passed on to sqlx in the connection URL.
    pub(crate) driver: Vec<(String, String)>,
}

/// Where the store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// `memory:`.
    None,
    /// A file or directory.
    Path(PathBuf),
    /// A server connection URL for the driver (our options removed).
    Server(Url),
}

/// A parsed, checked store URL. [`FromStr`] and [`StoreUrl::parse`] accept the
/// forms in the [crate docs](crate#picking-a-backend); `Display` hides a password.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrl {
    pub(crate) backend: Backend,
    pub(crate) location: Location,
    pub(crate) options: Options,
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StoreUrl").field(&self.to_string()).finish()
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Location::None => write!(f, "{}:", self.backend),
            Location::Path(p) => write!(f, "{}:{}", self.backend, p.display()),
            Location::Server(u) => {
                let mut u = u.clone();
                if u.password().is_some() {
                    // Only fails for URLs that cannot have a password, and this one has one.
                    let _ = u.set_password(Some("***"));
                }
                u.set_query(None);
                write!(f, "{u}")
            }
        }
    }
}

impl FromStr for StoreUrl {
    type Err = OpenError;

    fn from_str(s: &str) -> Result<Self, OpenError> {
        Self::parse(s)
    }
}

fn invalid(option: &str, value: &str, expected: &'static str) -> OpenError {
    OpenError::InvalidOption {
        option: option.to_owned(),
        value: value.to_owned(),
        expected,
    }
}

/// `64MiB`, `512KiB`, `1GiB`, `4096`, `10MB` (1000-based), `0` is refused.
pub(crate) fn parse_size(option: &str, value: &str) -> Result<u64, OpenError> {
    const EXPECTED: &str = "a positive byte count, optionally with a unit: B, KiB, MiB, GiB, TiB, kB, MB, GB, TB (e.g. 64MiB)";
    let v = value.trim();
    let digits = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(digits);
    let n: u64 = num.parse().map_err(|_| invalid(option, value, EXPECTED))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return Err(invalid(option, value, EXPECTED)),
    };
    match n.checked_mul(mult) {
        Some(0) | None => Err(invalid(option, value, EXPECTED)),
        Some(b) => Ok(b),
    }
}

fn parse_usize_size(option: &str, value: &str) -> Result<usize, OpenError> {
    usize::try_from(parse_size(option, value)?).map_err(|_| {
        invalid(
            option,
            value,
            "a size that fits this machine's address space",
        )
    })
}

/// `500ms`, `5s`, `2m`, `1h`.
pub(crate) fn parse_duration(option: &str, value: &str) -> Result<Duration, OpenError> {
    const EXPECTED: &str = "a duration with a unit: ms, s, m or h (e.g. 5s)";
    let v = value.trim();
    let digits = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(digits);
    let n: u64 = num.parse().map_err(|_| invalid(option, value, EXPECTED))?;
    let d = match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => None,
    };
    d.ok_or_else(|| invalid(option, value, EXPECTED))
}

fn parse_count(option: &str, value: &str) -> Result<u32, OpenError> {
    match value.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(invalid(option, value, "a positive whole number")),
    }
}

/// The path of a path backend's URL, taken from the text as written: the url
/// crate would resolve `..` segments and turn `file:rel` into `file:///rel`,
/// both of which change which file is meant.
fn parse_path(backend: Backend, rest: &str) -> Result<Option<PathBuf>, OpenError> {
    let path = match rest.strip_prefix("//") {
        Some(after) => {
            let (authority, path) = after.split_at(after.find('/').unwrap_or(after.len()));
            if !authority.is_empty() {
                return Err(OpenError::HostInPath { backend });
            }
            path
        }
        None => rest,
    };
    let decoded = percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| OpenError::Malformed {
            backend: Some(backend),
            reason: "the path is not UTF-8 after percent-decoding".into(),
        })?;
    if decoded.contains('\0') {
        return Err(OpenError::Malformed {
            backend: Some(backend),
            reason: "the path holds a NUL byte".into(),
        });
    }
    if decoded.is_empty() || decoded == "/" {
        return Ok(None);
    }
    Ok(Some(PathBuf::from(decoded.into_owned())))
}

fn parse_options(
    backend: Backend,
    pairs: impl Iterator<Item = (String, String)>,
) -> Result<Options, OpenError> {
    let mut options = Options::default();
    let mut seen: Vec<String> = Vec::new();
    for (key, value) in pairs {
        if !backend.options().contains(&key.as_str()) {
            return Err(OpenError::UnknownOption {
                backend,
                option: key,
                allowed: backend.options(),
            });
        }
        if seen.contains(&key) {
            return Err(OpenError::DuplicateOption { option: key });
        }
        seen.push(key.clone());
        apply_option(backend, &mut options, &key, &value)?;
    }
    if options.flush_interval.is_some() && options.durability != Some(DurabilityOpt::Eventual) {
        return Err(invalid(
            "flush_interval",
            "(given)",
            "to be used only with durability=eventual",
        ));
    }
    Ok(options)
}

fn server_location(backend: Backend, s: &str) -> Result<(Url, Options), OpenError> {
    let url = Url::parse(s).map_err(|e| OpenError::Malformed {
        backend: Some(backend),
        // The url crate's message never echoes the input (which may hold a password).
        reason: e.to_string(),
    })?;
    let options = parse_options(
        backend,
        url.query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned())),
    )?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(OpenError::Malformed {
            backend: Some(backend),
            reason: format!(
                "{backend}:// needs a host, e.g. {backend}://user:password@127.0.0.1/db"
            ),
        });
    }
    let mut server = url.clone();
    if backend == Backend::Mysql && server.scheme() != "mysql" {
        // Only fails when switching between special and non-special schemes.
        let _ = server.set_scheme("mysql");
    }
    if options.driver.is_empty() {
        server.set_query(None);
    } else {
        server
            .query_pairs_mut()
            .clear()
            .extend_pairs(options.driver.iter());
    }
    Ok((server, options))
}

impl StoreUrl {
    /// Parses and checks a store URL.
    ///
    /// # Errors
    ///
    /// [`OpenError::Malformed`], [`OpenError::UnknownScheme`],
    /// [`OpenError::MissingPath`], [`OpenError::HostInPath`],
    /// [`OpenError::UnknownOption`], [`OpenError::DuplicateOption`] or
    /// [`OpenError::InvalidOption`]. A backend whose feature is off still
    /// parses; [`open`](Self::open) reports [`OpenError::FeatureDisabled`].
    pub fn parse(s: &str) -> Result<Self, OpenError> {
        let s = s.trim();
        let Some((scheme, rest)) = s.split_once(':') else {
            return Err(OpenError::Malformed {
                backend: None,
                reason: "no scheme: write e.g. redb:///var/lib/app/sessions or memory:".into(),
            });
        };
        let valid_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        if !valid_scheme {
            return Err(OpenError::Malformed {
                backend: None,
                reason: "the scheme must be letters, digits, '+', '-' or '.'".into(),
            });
        }
        let backend = Backend::from_scheme(&scheme.to_ascii_lowercase()).ok_or_else(|| {
            OpenError::UnknownScheme {
                scheme: scheme.to_owned(),
            }
        })?;
        if backend.is_server() {
            let (url, options) = server_location(backend, s)?;
            return Ok(Self {
                backend,
                location: Location::Server(url),
                options,
            });
        }
        if rest.contains('#') {
            return Err(OpenError::Malformed {
                backend: Some(backend),
                reason: "a '#' fragment has no meaning in a store URL (percent-encode it as %23 in a path)".into(),
            });
        }
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let options = parse_options(
            backend,
            url::form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned())),
        )?;
        let location = match (backend, parse_path(backend, path)?) {
            (Backend::Memory, None) => Location::None,
            (Backend::Memory, Some(_)) => {
                return Err(OpenError::Malformed {
                    backend: Some(backend),
                    reason: "memory: takes no path (write `memory:`)".into(),
                });
            }
            (_, Some(p)) => Location::Path(p),
            (_, None) => return Err(OpenError::MissingPath { backend }),
        };
        Ok(Self {
            backend,
            location,
            options,
        })
    }

    /// The backend this URL names.
    #[must_use]
    pub fn backend(&self) -> Backend {
        self.backend
    }
}

fn apply_option(
    backend: Backend,
    o: &mut Options,
    key: &str,
    value: &str,
) -> Result<(), OpenError> {
    match key {
        "max_value_size" => o.max_value_size = Some(parse_usize_size(key, value)?),
        "size" => o.size = Some(parse_size(key, value)?),
        "pages" => o.pages = Some(parse_count(key, value)?),
        "cache_size" => o.cache_size = Some(parse_usize_size(key, value)?),
        "map_size" => o.map_size = Some(parse_usize_size(key, value)?),
        "durability" => {
            o.durability = Some(match (backend, value) {
                (_, "immediate") => DurabilityOpt::Immediate,
                (Backend::Redb | Backend::Lmdb, "eventual") => DurabilityOpt::Eventual,
                (Backend::File, "none") => DurabilityOpt::None,
                (Backend::File, _) => return Err(invalid(key, value, "immediate or none")),
                _ => return Err(invalid(key, value, "immediate or eventual")),
            });
        }
        "flush_interval" => o.flush_interval = Some(parse_duration(key, value)?),
        "table" => {
            // The store checks the full rule per dialect; refuse the obvious here.
            if value.is_empty() {
                return Err(invalid(key, value, "a table name"));
            }
            o.table = Some(value.to_owned());
        }
        "synchronous" => {
            o.synchronous = Some(match value {
                "normal" => SynchronousOpt::Normal,
                "full" => SynchronousOpt::Full,
                _ => return Err(invalid(key, value, "normal or full")),
            });
        }
        "busy_timeout" => o.busy_timeout = Some(parse_duration(key, value)?),
        "max_connections" => o.max_connections = Some(parse_count(key, value)?),
        "acquire_timeout" => o.acquire_timeout = Some(parse_duration(key, value)?),
        // Driver options (listed in Backend::options) go to sqlx as given.
        _ => o.driver.push((key.to_owned(), value.to_owned())),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<StoreUrl, OpenError> {
        StoreUrl::parse(s)
    }

    #[test]
    fn paths() {
        let u = parse("redb:///var/lib/app/sessions").unwrap();
        assert_eq!(u.backend(), Backend::Redb);
        assert_eq!(u.location, Location::Path("/var/lib/app/sessions".into()));
        let u = parse("file:data/sessions").unwrap();
        assert_eq!(u.location, Location::Path("data/sessions".into()));
        let u = parse("sqlite:///tmp/a%20b.db").unwrap();
        assert_eq!(u.location, Location::Path("/tmp/a b.db".into()));
        assert!(matches!(
            parse("redb://host/x"),
            Err(OpenError::HostInPath { .. })
        ));
        assert!(matches!(
            parse("lmdb://"),
            Err(OpenError::MissingPath { .. })
        ));
        assert!(matches!(parse("mmap:"), Err(OpenError::MissingPath { .. })));
        // Taken as written: no `..` resolution, relative stays relative.
        let u = parse("file:///a/../b").unwrap();
        assert_eq!(u.location, Location::Path("/a/../b".into()));
        let u = parse("REDB:./x?durability=immediate").unwrap();
        assert_eq!(u.location, Location::Path("./x".into()));
        assert!(parse("redb:///x%00y").is_err());
    }

    #[test]
    fn memory() {
        assert_eq!(parse("memory:").unwrap().location, Location::None);
        assert_eq!(parse("memory://").unwrap().location, Location::None);
        assert!(parse("memory:/x").is_err());
        let u = parse("memory:?max_value_size=64KiB").unwrap();
        assert_eq!(u.options.max_value_size, Some(64 << 10));
    }

    #[test]
    fn options() {
        let u = parse("mmap:///tmp/c?size=64MiB&pages=32").unwrap();
        assert_eq!(u.options.size, Some(64 << 20));
        assert_eq!(u.options.pages, Some(32));
        let u = parse("redb:///d?durability=eventual&flush_interval=250ms").unwrap();
        assert_eq!(u.options.durability, Some(DurabilityOpt::Eventual));
        assert_eq!(u.options.flush_interval, Some(Duration::from_millis(250)));
        assert!(parse("redb:///d?flush_interval=1s").is_err());
        assert!(parse("file:///d?durability=eventual").is_err());
        assert!(parse("file:///d?durability=none").is_ok());
        let u = parse("sqlite:///x.db?table=s1&synchronous=full&busy_timeout=2s").unwrap();
        assert_eq!(u.options.table.as_deref(), Some("s1"));
        assert_eq!(u.options.synchronous, Some(SynchronousOpt::Full));
        match parse("redb:///d?sizee=1") {
            Err(OpenError::UnknownOption { option, .. }) => assert_eq!(option, "sizee"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse("mmap:///d?size=1&size=2"),
            Err(OpenError::DuplicateOption { .. })
        ));
        for bad in [
            "mmap:///d?size=",
            "mmap:///d?size=0",
            "mmap:///d?size=12XB",
            "mmap:///d?size=-1",
            "mmap:///d?pages=0",
            "sqlite:///d?busy_timeout=5",
            "sqlite:///d?synchronous=off",
            "mmap:///d?size=99999999999999999999",
        ] {
            assert!(
                matches!(parse(bad), Err(OpenError::InvalidOption { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn servers() {
        let u = parse("postgres://u:secret@127.0.0.1:5432/db?table=t&sslmode=disable").unwrap();
        assert_eq!(u.backend(), Backend::Postgres);
        let Location::Server(server) = &u.location else {
            panic!("server")
        };
        assert_eq!(server.query(), Some("sslmode=disable"));
        assert_eq!(u.options.table.as_deref(), Some("t"));
        let shown = u.to_string();
        assert!(!shown.contains("secret"), "{shown}");
        let u = parse("mariadb://u@localhost/db").unwrap();
        let Location::Server(server) = &u.location else {
            panic!("server")
        };
        assert_eq!(server.scheme(), "mysql");
        assert!(parse("postgres:///db").is_err());
        assert!(matches!(
            parse("postgres://h/db?sslmode=x&foo=1"),
            Err(OpenError::UnknownOption { .. })
        ));
    }

    #[test]
    fn malformed() {
        assert!(matches!(parse("nope"), Err(OpenError::Malformed { .. })));
        assert!(matches!(parse(""), Err(OpenError::Malformed { .. })));
        assert!(matches!(
            parse("redis://h"),
            Err(OpenError::UnknownScheme { .. })
        ));
        assert!(matches!(
            parse("redb:///x#frag"),
            Err(OpenError::Malformed { .. })
        ));
    }

    #[test]
    fn errors_never_show_passwords() {
        let e = parse("postgres://u:hunter2@h/db?bogus=1").unwrap_err();
        assert!(!e.to_string().contains("hunter2"));
        let e = parse("postgres://u:hunter2@h:99999/db").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
