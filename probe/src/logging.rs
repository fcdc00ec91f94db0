//! Log set-up shared by both binaries: human or JSON lines on stderr, filtered by
//! `POSTFLIGHT_LOG` (or `RUST_LOG`), default `info`. Every line goes through
//! [`crate::secret::RedactingStderr`], so a registered secret never reaches the log,
//! whatever level or format.

use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Readable lines for a terminal or journald.
    #[default]
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Install the global subscriber; calling it twice is harmless.
pub fn init_logging(format: LogFormat) {
    let filter = std::env::var("POSTFLIGHT_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::secret::RedactingStderr);
    let _ = match format {
        LogFormat::Human => builder
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
