//! `postflight-probe`: parse arguments, set up logging, hand over to the library.
//!
//! The always-on agent (`run`) uses a single-threaded runtime: its work is a few dozen
//! small I/O-bound tasks a second, and one thread avoids the cross-thread wake-ups that
//! cost more CPU than the work itself (file writes go to the blocking pool either way).
//! `once` uses two workers to run many checks at once.

use clap::Parser;
use postflight_probe::cli::{Cli, Command, execute};
use postflight_probe::logging::init_logging;

fn main() {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let mut builder = match cli.command {
        Command::Run { .. } => tokio::runtime::Builder::new_current_thread(),
        _ => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(2);
            builder
        }
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(postflight_probe::cli::EXIT_USAGE);
        }
    };
    let code = runtime.block_on(execute(cli));
    std::process::exit(code);
}
