//! `postflight notify test CHANNEL` with the real binary: delivered through a real SMTP
//! server (aiosmtpd) exits 0, a channel whose server is down exits 1, an unknown name
//! lists the configured ones.

use std::process::Command;

use super::support::{SmtpSecurity, SmtpServer, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_postflight");

/// A collector config with an email channel `oncall` to port `smtp` and a webhook
/// channel `chat` to a closed port.
fn write_config(dir: &std::path::Path, smtp: u16) -> std::path::PathBuf {
    let path = dir.join("collector.toml");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\n\
         [[channels]]\nname = \"oncall\"\nemail = {{ smtp = \"smtp://127.0.0.1:{smtp}\", from = \"pf@example.com\", to = [\"oncall@example.com\"] }}\n\n\
         [[channels]]\nname = \"chat\"\ntimeout = \"2s\"\nwebhook = {{ url = \"http://127.0.0.1:{}/hook\" }}\n",
        dir.join("data").display(),
        free_port()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn notify_test(config: &std::path::Path, channel: &str) -> (i32, String, String) {
    let output = Command::new(BIN)
        .args(["notify", "test", channel, "--config"])
        .arg(config)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn notify_test_exits_0_when_the_mail_is_delivered_and_1_when_the_channel_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let mail = dir.path().join("mail");
    let smtp = SmtpServer::start(free_port(), &mail, SmtpSecurity::Plain, None);
    let config = write_config(dir.path(), smtp.port);

    let (code, stdout, stderr) = notify_test(&config, "oncall");
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.starts_with("delivered: test notification through oncall (email)"),
        "{stdout}"
    );
    let messages = smtp.received();
    assert_eq!(messages.len(), 1);
    let subject = messages[0]["subject"].as_str().unwrap_or_default();
    assert!(
        subject.contains("test notification through channel oncall"),
        "{subject}"
    );

    let (code, _, stderr) = notify_test(&config, "chat");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.starts_with("not delivered: channel \"chat\" did not deliver"),
        "{stderr}"
    );

    let (code, _, stderr) = notify_test(&config, "pager");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("no channel named \"pager\"; configured: oncall, chat"),
        "{stderr}"
    );
}
