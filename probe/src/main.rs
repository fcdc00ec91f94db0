//! `postflight-probe`: parse arguments, set up logging, hand over to the library.

use clap::Parser;
use postflight_probe::cli::{Cli, execute};
use postflight_probe::logging::init_logging;

fn main() {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(postflight_probe::cli::EXIT_USAGE);
        }
    };
    let code = runtime.block_on(execute(cli));
    std::process::exit(code);
}
