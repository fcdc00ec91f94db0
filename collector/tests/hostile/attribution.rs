//! Attribution: with operator tokens, a deploy records the token's name as `by`, and a
//! `by` the caller sends is kept apart as `claimed_by`; silences record the token's name.

use serde_json::json;

use super::{post, start};

const BOT_TOKEN: &str = "deploy-bot-token-0123456789";

#[tokio::test]
async fn deploys_and_silences_record_the_operator_tokens_name() {
    let dir = tempfile::tempdir().unwrap();
    let operators = format!("[[auth.operators]]\nname = \"deploy-bot\"\ntoken = \"{BOT_TOKEN}\"\n");
    let collector = start(dir.path(), &operators).await;
    let deploy =
        json!({"service": "recall-api", "version": "1.4.2", "by": "alice (CTO)", "note": "hotfix"});
    let (status, body) = post(&collector, "/api/v1/deploys", Some(BOT_TOKEN), &deploy).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["by"], "deploy-bot", "{body}");
    assert_eq!(body["claimed_by"], "alice (CTO)", "{body}");
    assert_eq!(body["note"], "hotfix", "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let (status, body) = post(
        &collector,
        &format!("/api/v1/deploys/{id}/cancel"),
        Some(BOT_TOKEN),
        &json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["summary"].as_str().unwrap().contains("deploy-bot"),
        "{body}"
    );

    let silence = json!({"service": "recall-api", "for": "1h", "reason": "upgrade"});
    let (status, body) = post(&collector, "/api/v1/silences", Some(BOT_TOKEN), &silence).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["created_by"], "deploy-bot", "{body}");
    collector.shutdown().await.unwrap();
}

#[tokio::test]
async fn without_operator_tokens_a_loopback_callers_by_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let collector = start(dir.path(), "").await;
    let deploy = json!({"service": "recall-api", "version": "1.4.2", "by": "alice"});
    let (status, body) = post(&collector, "/api/v1/deploys", None, &deploy).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["by"], "alice", "{body}");
    assert!(body.get("claimed_by").is_none(), "{body}");
    collector.shutdown().await.unwrap();
}
