//! Shared by the integration tests: where the database servers are.

#![allow(dead_code, unreachable_pub)]

use std::io::Write as _;

/// Env var naming the PostgreSQL test database, read at run time.
pub const POSTGRES_ENV: &str = "SESSIONS_TEST_POSTGRES_URL";
/// Env var naming the MySQL / MariaDB test database, read at run time.
pub const MYSQL_ENV: &str = "SESSIONS_TEST_MYSQL_URL";

/// The URL in `var` (or its singular-prefix spelling `SESSION_TEST_…`), or
/// `None` after printing a loud SKIP line straight to stderr, past libtest's
/// output capture, so a run that skipped the server is visible.
pub fn server_url(var: &str, test: &str) -> Option<String> {
    let alt = var.replacen("SESSIONS_", "SESSION_", 1);
    let found = [var, alt.as_str()]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()));
    if found.is_none() {
        let _ = std::io::stderr().write_all(
            format!("\nSKIP {test}: {var} is not set, so this server test did not run\n")
                .as_bytes(),
        );
    }
    found
}
