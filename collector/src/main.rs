//! `postflight`: parse arguments, set up logging, hand over to the library.

use postflight_collector::cli::{EXIT_UNREACHABLE, execute, parse_args};
use postflight_probe::logging::init_logging;

fn main() {
    let cli = parse_args();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(EXIT_UNREACHABLE);
        }
    };
    let code = runtime.block_on(execute(cli));
    std::process::exit(code);
}
