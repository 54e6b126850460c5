//! Command-line arguments.

use std::time::Duration;

use clap::{Parser, Subcommand};

/// Maintenance for session stores: purge expired sessions, inspect, copy.
#[derive(Debug, Parser)]
#[command(name = "sessionctl", version, about)]
pub(crate) struct Args {
    /// Store URL, e.g. `redb:///var/lib/app/sessions.redb`, `postgres://…`, `file:///dir`.
    #[arg(long = "store", env = "SESSION_STORE", global = true)]
    pub(crate) store: Option<String>,

    /// Machine-readable JSON output (stats, list, show).
    #[arg(long, global = true)]
    pub(crate) json: bool,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Delete expired sessions and print how many went.
    Purge {
        /// Keep running: purge every interval (e.g. `5m`, `30s`) until SIGTERM or Ctrl-C.
        #[arg(long, value_parser = parse_interval)]
        every: Option<Duration>,
    },
    /// Live and expired counts, bytes, and store-specific figures.
    Stats,
    /// List store keys (hashed, never tokens) with expiry and size.
    List {
        /// Show expired-but-not-purged sessions instead of live ones.
        #[arg(long)]
        expired: bool,
        /// At most this many rows.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Decode one session and print it (values as stored; flash and per-key expiry shown).
    Show {
        /// A cookie token or a store key (64 hex characters); prefix with `token:` or
        /// `key:` to say which.
        target: String,
    },
    /// Delete one session.
    Delete {
        /// A cookie token or a store key, as for `show`.
        target: String,
    },
    /// Copy every live session to another store, keeping data and expiry.
    Copy {
        /// Destination store URL.
        #[arg(long)]
        to: String,
    },
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{s:?} is not an interval: {e}"))?;
    if d < Duration::from_secs(1) {
        return Err("the interval must be at least 1s".into());
    }
    Ok(d)
}
