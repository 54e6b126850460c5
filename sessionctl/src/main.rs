//! `sessionctl`: one maintenance tool for every session store.
//!
//! Every command takes `--store URL` (or `SESSION_STORE`), opened with
//! `sessions::open`. Exit codes: 0 ok, 1 operational failure (the store or the
//! data said no), 2 usage error (bad flags, a malformed URL or token).
#![forbid(unsafe_code)]

mod cli;
mod commands;
mod render;

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;

/// A failure with the exit code it maps to. Printed as one line on stderr.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Exit 2: the user asked for something malformed.
    Usage(String),
    /// Exit 1: the store or the data failed.
    Operational(String),
}

impl Failure {
    pub(crate) fn op(e: impl std::fmt::Display) -> Self {
        Self::Operational(e.to_string())
    }
}

fn main() -> ExitCode {
    let args = cli::Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SESSIONCTL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .without_time()
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&Failure::op(format!("cannot start the runtime: {e}"))),
    };
    match rt.block_on(commands::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => fail(&f),
    }
}

fn fail(f: &Failure) -> ExitCode {
    let (code, msg) = match f {
        Failure::Usage(m) => (2, m),
        Failure::Operational(m) => (1, m),
    };
    // One line, whatever the cause chain held.
    let line = msg.replace('\n', " ");
    let _ = writeln!(std::io::stderr().lock(), "sessionctl: error: {line}");
    ExitCode::from(code)
}
