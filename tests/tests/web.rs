//! The collector's web pages in a real headless Chromium (WebDriver through Debian's
//! chromium-driver), against a real `postflight serve` holding real data: a healthy
//! service with a gap in its history and a maintenance window, and a service that
//! regressed after a deploy and has an open incident. Each test saves a screenshot in
//! `target/screenshots/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use postflight_collector::timefmt::rfc3339;
use postflight_probe::testkit;
use postflight_tests::browser::Browser;
use std::time::Duration;

use postflight_tests::{CollectorProcess, eventually, now_ms, post_batch, post_json, probe_batch};

const HOUR: i64 = 3_600_000;

/// A collector with `shop` (healthy, results 3 h ago and in the last 5 minutes so the
/// hour slot starting 2 h before this hour is empty, maintenance 100 to 80 minutes ago)
/// and `butler-tax` (regressed after deploy 1.1, failing now, incident open).
struct Fixture {
    collector: CollectorProcess,
    /// When the data was written, unix ms.
    now: i64,
    deploy_id: String,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let config = format!(
        "[[maintenance]]\nservice = \"shop\"\nstart = \"{}\"\nend = \"{}\"\nreason = \"db upgrade\"\n",
        rfc3339(now - 100 * 60_000),
        rfc3339(now - 80 * 60_000)
    );
    let collector = CollectorProcess::start(dir.path(), &config).await;
    let url = collector.url.clone();
    // shop: a result 3 h ago, none for two hours (the gap), then the last 5 minutes.
    let mut shop = vec![
        testkit::result("shop", "home")
            .at(now - 3 * HOUR)
            .judged_by_status(200)
            .build(),
    ];
    shop.extend((0..5).map(|i| {
        testkit::result("shop", "home")
            .at(now - i * 60_000)
            .judged_by_status(200)
            .build()
    }));
    // butler-tax: a passing baseline over the last half hour.
    let baseline = (1..=30).map(|i| {
        testkit::result("butler-tax", "health")
            .at(now - i * 60_000)
            .judged_by_status(200)
            .build()
    });
    shop.extend(baseline);
    assert_eq!(
        post_batch(&url, None, &probe_batch("web-1", 1).results(shop).build())
            .await
            .0,
        200
    );
    let deploy = post_json(
        &format!("{url}/api/v1/deploys"),
        &serde_json::json!({
            "service": "butler-tax", "env": "prod", "version": "1.1", "previous_version": "1.0",
            "window": "10m"
        }),
    )
    .await;
    let deploy_id = deploy["id"].as_str().unwrap().to_string();
    let later = now_ms();
    let failing: Vec<_> = (1..=20)
        .map(|i| {
            testkit::result("butler-tax", "health")
                .at(later + i)
                .judged_by_status(503)
                .build()
        })
        .collect();
    assert_eq!(
        post_batch(
            &url,
            None,
            &probe_batch("web-1", 2).results(failing).build()
        )
        .await
        .0,
        200
    );
    let answer = collector
        .get_json(&format!("/api/v1/deploys/{deploy_id}"))
        .await;
    assert_eq!(answer["verdict"], "regressed", "{answer}");
    Fixture {
        collector,
        now,
        deploy_id,
        _dir: dir,
    }
}

/// Headings, labels and contrast every page must have: one h1, no skipped heading
/// level, every SVG labelled (aria-label or title), text contrast at least 4.5:1, no console error,
/// no horizontal scrolling at the browser's width.
async fn assert_accessible(browser: &Browser, page: &str) {
    let report = browser.execute(ACCESSIBILITY_SCRIPT).await;
    assert_eq!(report["h1"], 1, "{page}: one h1: {report}");
    assert_eq!(report["skipped"], serde_json::json!([]), "{page}: {report}");
    assert_eq!(report["unlabelled"], 0, "{page}: unlabelled svg: {report}");
    assert_eq!(
        report["low_contrast"],
        serde_json::json!([]),
        "{page}: {report}"
    );
    assert!(
        report["scroll_width"].as_f64().unwrap() <= report["inner_width"].as_f64().unwrap(),
        "{page}: scrolls sideways: {report}"
    );
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "{page}: console errors: {errors:?}");
}

/// Collects heading order, unlabelled SVGs and the contrast of every text element.
const ACCESSIBILITY_SCRIPT: &str = r#"
const rgb = s => (s.match(/[\d.]+/g) || []).map(Number);
const lum = c => { const [r, g, b] = c.slice(0, 3).map(v => { v /= 255;
  return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
const background = el => { for (; el; el = el.parentElement) {
  const c = rgb(getComputedStyle(el).backgroundColor);
  if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c; } return [255, 255, 255]; };
const low = [];
for (const el of document.querySelectorAll('body *')) {
  if (![...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim())) continue;
  if (el.closest('svg')) continue;
  const [a, b] = [lum(rgb(getComputedStyle(el).color)), lum(background(el))];
  const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  if (ratio < 4.5) low.push(el.tagName + '.' + el.className + ' ' + ratio.toFixed(2));
}
const levels = [...document.querySelectorAll('h1,h2,h3,h4')].map(h => +h.tagName[1]);
const skipped = levels.filter((l, i) => i > 0 && l > levels[i - 1] + 1);
return { h1: levels.filter(l => l === 1).length, skipped, low_contrast: low,
  unlabelled: [...document.querySelectorAll('svg')].filter(s => !s.getAttribute('aria-label')
    && !(s.querySelector(':scope > title') || {}).textContent).length,
  scroll_width: document.documentElement.scrollWidth, inner_width: window.innerWidth };
"#;

#[tokio::test(flavor = "multi_thread")]
async fn overview_shows_the_failing_service_in_red_and_a_gap_as_a_gap() {
    let fixture = fixture().await;
    let browser = Browser::start(400).await;
    browser.goto(&format!("{}/", fixture.collector.url)).await;
    assert_eq!(browser.title().await, "Overview · Postflight");
    failing_butler_tax_comes_first_in_red(&browser).await;
    healthy_shop_is_a_row_whose_strip_shows_the_gap(&browser, fixture.now).await;
    browser.screenshot("overview-400px").await;
    assert_accessible(&browser, "overview").await;

    range_switch_and_name_filter_are_plain_links_and_forms(&browser).await;
}

/// Open incidents and failing services come first, in red; the failing check has its
/// strip.
async fn failing_butler_tax_comes_first_in_red(browser: &Browser) {
    let first = browser.find("section.service").await;
    assert_eq!(
        browser.attribute(&first, "data-service").await.unwrap(),
        "butler-tax"
    );
    let butler = browser
        .find("section.service[data-service='butler-tax']")
        .await;
    assert_eq!(
        browser.colour(&butler, "border-left-color").await,
        (179, 38, 30)
    );
    let badge = browser
        .find("section[data-service='butler-tax'] h2 .badge")
        .await;
    assert_eq!(browser.text(&badge).await, "failing");
    assert_eq!(
        browser.colour(&badge, "background-color").await,
        (179, 38, 30)
    );
    let versions = browser
        .find("section[data-service='butler-tax'] dl.versions dd")
        .await;
    assert!(
        browser
            .text(&versions)
            .await
            .contains("deployed 1.1 regressed")
    );
    let incidents = browser.text(&browser.find("section.incidents").await).await;
    assert!(incidents.contains("butler-tax"), "{incidents}");

    // The failing check is on the overview with its strip; the passing one is named.
    let health = browser
        .find("section[data-service='butler-tax'] li[data-check='health']")
        .await;
    assert!(browser.text(&health).await.contains("1/1 failing"));
    // Its hour holds the passing baseline and the failures: partly down.
    let partial = browser
        .find("section[data-service='butler-tax'] li[data-check='health'] .strip i.p")
        .await;
    assert_eq!(
        browser.colour(&partial, "background-color").await,
        (249, 168, 37)
    );
}

/// shop is healthy: one row of the healthy table, with the service's strip, where the
/// hours without results (before `now`) are hollow gaps, not green, and maintenance is
/// marked.
async fn healthy_shop_is_a_row_whose_strip_shows_the_gap(browser: &Browser, now: i64) {
    assert!(
        browser
            .find_all("section.service[data-service='shop']")
            .await
            .is_empty()
    );
    let healthy = browser
        .text(&browser.find("section.healthy h2").await)
        .await;
    assert_eq!(healthy, "Healthy services (1)");
    let shop_strip = "table.healthy tr[data-service='shop'] span.strip";
    let strip = browser.find(shop_strip).await;
    // Two or three of the 24 hour slots hold results (the last 5 minutes may reach
    // into the previous hour).
    let gaps = browser.attribute(&strip, "data-gaps").await.unwrap();
    assert!(gaps == "21" || gaps == "22", "{gaps}");
    let title = browser.attribute(&strip, "title").await.unwrap();
    assert!(title.starts_with("shop over 24h: 100% up, 2"), "{title}");
    // Slots are absolute times, so the empty one is found by its start.
    let gap_from = (now / HOUR - 2) * HOUR;
    let gap = browser
        .find(&format!("{shop_strip} i[data-from='{gap_from}']"))
        .await;
    assert!(
        browser
            .attribute(&gap, "class")
            .await
            .unwrap()
            .starts_with('g')
    );
    assert_eq!(
        browser.colour(&gap, "background-color").await,
        (255, 255, 255)
    );
    let up = browser.find(&format!("{shop_strip} i.u")).await;
    assert_eq!(browser.colour(&up, "background-color").await, (46, 125, 50));
    assert!(
        !browser
            .find_all(&format!("{shop_strip} i.m"))
            .await
            .is_empty()
    );
}

/// The 7 d switch works without JavaScript (a plain link); the name filter is a plain
/// GET form that keeps the range.
async fn range_switch_and_name_filter_are_plain_links_and_forms(browser: &Browser) {
    browser
        .click(&browser.find("nav.range a[href='/?range=7d']").await)
        .await;
    assert!(browser.current_url().await.ends_with("/?range=7d"));
    let current = browser.find("nav.range a[aria-current]").await;
    assert_eq!(browser.text(&current).await, "7d");
    assert_accessible(browser, "overview 7d").await;

    // The name filter is a plain GET form; it keeps the range.
    browser
        .execute("document.getElementById('q').value = 'SHO'; return null;")
        .await;
    browser
        .click(&browser.find("form.filter button").await)
        .await;
    // The submission navigates on its own: wait for the filtered page's address.
    let filtered = eventually(Duration::from_secs(10), || async {
        browser.current_url().await.ends_with("/?range=7d&q=SHO")
    })
    .await;
    assert!(filtered, "{}", browser.current_url().await);
    browser.find("table.healthy tr[data-service='shop']").await;
    assert!(
        browser
            .find_all("section.service[data-service='butler-tax']")
            .await
            .is_empty()
    );
    let summary = browser.text(&browser.find("p.summary").await).await;
    assert!(summary.contains("1 matching “SHO”"), "{summary}");
    browser.find("table.healthy tr[data-service='shop']").await;
    assert_accessible(browser, "overview filtered").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn service_chart_marks_the_deploy_and_links_lead_to_its_verdict_and_evidence() {
    let fixture = fixture().await;
    let browser = Browser::start(1000).await;
    browser.goto(&format!("{}/", fixture.collector.url)).await;
    let link = browser
        .find("section[data-service='butler-tax'] h2 a")
        .await;
    browser.click(&link).await;
    assert!(
        browser
            .current_url()
            .await
            .ends_with("/services/butler-tax")
    );
    assert_eq!(browser.text(&browser.find("h1").await).await, "butler-tax");

    let marker = browser
        .find("figure.series svg.chart a.marker.regressed")
        .await;
    assert_eq!(browser.text(&marker).await, "1.1 regressed");
    let failing = browser
        .text(&browser.find("table.failing tbody tr").await)
        .await;
    assert!(
        failing.contains("status == 200") && failing.contains("503"),
        "{failing}"
    );
    browser.screenshot("service-butler-tax").await;
    assert_accessible(&browser, "service").await;

    let deploy_link = format!("table.ledger a[href='/deploys/{}']", fixture.deploy_id);
    browser.click(&browser.find(&deploy_link).await).await;
    assert!(browser.current_url().await.ends_with(&fixture.deploy_id));
    let verdict = browser.find("p.verdict .badge").await;
    assert_eq!(browser.text(&verdict).await, "regressed");
    let evidence = browser.text(&browser.find("ol.evidence li").await).await;
    assert!(
        evidence.contains("health") && evidence.contains("baseline: pass ratio 100%"),
        "{evidence}"
    );
    let rollback = browser.text(&browser.find("p.rollback").await).await;
    assert!(
        rollback.contains("Roll back") || rollback.contains("No good version"),
        "{rollback}"
    );
    let figures = browser.text(&browser.find("table.figures").await).await;
    assert!(figures.contains("baseline"), "{figures}");
    browser.screenshot("deploy-regressed").await;
    assert_accessible(&browser, "deploy").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn incident_and_probe_pages_show_timeline_and_fleet() {
    let fixture = fixture().await;
    let browser = Browser::start(1000).await;
    browser
        .goto(&format!("{}/incidents", fixture.collector.url))
        .await;
    let row = browser.find("table.incidents tbody tr.open a").await;
    browser.click(&row).await;
    assert!(browser.current_url().await.contains("/incidents/"));
    let timeline = browser.text(&browser.find("ol.timeline").await).await;
    assert!(!timeline.is_empty());
    let notifications = browser
        .text(&browser.find("#notifications + p").await)
        .await;
    assert!(notifications.starts_with("None sent"), "{notifications}");
    let failing = browser.text(&browser.find("main ul li").await).await;
    assert!(
        failing.contains("web-1") && failing.contains("actual 503"),
        "{failing}"
    );
    browser.screenshot("incident").await;
    assert_accessible(&browser, "incident").await;

    browser
        .click(&browser.find("nav a[href='/probes']").await)
        .await;
    let probe = browser
        .text(&browser.find("tr[data-probe='web-1']").await)
        .await;
    assert!(
        probe.contains("reporting") && probe.contains("env=prod"),
        "{probe}"
    );
    browser.screenshot("probes").await;
    assert_accessible(&browser, "probes").await;

    browser
        .goto(&format!("{}/services/shp", fixture.collector.url))
        .await;
    let missing = browser.text(&browser.find("p.error-text").await).await;
    assert_eq!(missing, "unknown service shp; known: butler-tax, shop");
}
