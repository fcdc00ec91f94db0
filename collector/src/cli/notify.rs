//! `postflight notify test CHANNEL`: send a test notification through a configured
//! channel from this process (no collector needed) and say whether it was delivered.

use std::path::Path;

use postflight_probe::secret::redact;

use crate::clock::SystemClock;

use super::output::print_or_json;
use super::{EXIT_CONFIG, EXIT_FAILING, EXIT_OK};

pub async fn notify_test(config: Option<&Path>, channel: &str, json: bool) -> i32 {
    let loaded = match crate::config::load(config) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("error: {}", redact(&error.to_string()));
            return EXIT_CONFIG;
        }
    };
    let now_ms = crate::clock::Clock::now_ms(&SystemClock);
    let outcome = crate::notify::send_test(&loaded.config, channel, now_ms).await;
    let answer = match &outcome {
        Ok(d) => {
            serde_json::json!({"channel": d.channel, "kind": d.kind, "delivered": true, "duration_ms": d.duration_ms})
        }
        Err(e) => {
            serde_json::json!({"channel": channel, "delivered": false, "error": redact(&e.to_string())})
        }
    };
    match outcome {
        Ok(delivery) => {
            print_or_json(json, &answer, || {
                format!(
                    "delivered: test notification through {} ({}) in {} ms\n",
                    delivery.channel, delivery.kind, delivery.duration_ms
                )
            });
            EXIT_OK
        }
        Err(error) => {
            if json {
                print_or_json(true, &answer, String::new);
            }
            eprintln!("not delivered: {}", redact(&error.to_string()));
            EXIT_FAILING
        }
    }
}
