//! The page shell every page shares (head, navigation, footer) and the small formatting
//! pieces the templates reuse: state badges, times, percentages, durations.

use std::time::Duration;

use maud::{DOCTYPE, Markup, html};

use postflight_probe::units::format_duration;

use crate::timefmt::{ago, rfc3339};

/// Which navigation entry is the current page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Incidents,
    Probes,
    Api,
    Mail,
    None,
}

/// A whole HTML page; `refresh` reloads it every that many seconds (live pages).
pub fn document(title: &str, nav: Nav, refresh: Option<u32>, body: Markup) -> Markup {
    let entries = [
        (Nav::Overview, "/", "Overview"),
        (Nav::Incidents, "/incidents", "Incidents"),
        (Nav::Probes, "/probes", "Probes"),
        (Nav::Api, "/api/v1", "API"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(seconds) = refresh {
                    meta http-equiv="refresh" content=(seconds);
                }
                title { (title) " · Postflight" }
                link rel="icon" href="data:,";
                link rel="stylesheet" href="/assets/style.css";
            }
            body {
                header.top {
                    a.brand href="/" { "Postflight" }
                    nav aria-label="Main" {
                        @for (entry, href, label) in entries {
                            @if entry == nav {
                                a href=(href) aria-current="page" { (label) }
                            } @else {
                                a href=(href) { (label) }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A coloured word for a state; `class` picks the colour (ok, failing, stale, silenced,
/// watching, passed, regressed, ...).
pub fn badge(class: &str, text: &str) -> Markup {
    html! { span class={ "badge " (class) } { (text) } }
}

/// `5m ago`, with the exact time as a tooltip.
pub fn when(ms: i64, now_ms: i64) -> Markup {
    html! { time datetime=(rfc3339(ms)) title=(rfc3339(ms)) { (ago(ms, now_ms)) } }
}

/// `97.5%`, or `-` without data.
pub fn percent(ratio: Option<f64>) -> String {
    match ratio {
        Some(r) if r >= 0.9995 => "100%".into(),
        Some(r) => format!("{:.1}%", r * 100.0),
        None => "-".into(),
    }
}

/// A span of milliseconds as `15m`, `1h30m`.
pub fn span(ms: i64) -> String {
    format_duration(Duration::from_millis(ms.max(0) as u64))
}

/// Microseconds as `12.3 ms`.
pub fn micros(us: u64) -> String {
    format!("{:.1} ms", us as f64 / 1000.0)
}

pub use crate::text::plural;

/// A path component, percent-encoded for links.
pub fn encode(text: &str) -> String {
    crate::text::encode(text)
}
