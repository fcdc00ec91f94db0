//! A collector started inside the test process (tests and benches of the collector
//! crate): a real listener on `127.0.0.1:0`, a real sled store, and the clock the test
//! drives (usually a `ManualClock`), so alerting and watch windows run in milliseconds.

use std::path::Path;
use std::sync::Arc;

use postflight_collector::clock::Clock;
use postflight_collector::config;
use postflight_collector::server::Collector;

/// A collector storing in `data_dir`, listening on a free loopback port, with
/// `extra` (keys of `[server]`, then any other sections) after its `[server]` lines.
pub async fn start_collector(data_dir: &Path, extra: &str, clock: Arc<dyn Clock>) -> Collector {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n{extra}",
        data_dir.display()
    );
    let loaded = config::parse(&text, "test").expect("test collector config");
    Collector::start(loaded, clock)
        .await
        .expect("start the in-process collector")
}
