//! The mail channel through a real SMTP conversation with a sink written here (RFC 5321: the
//! greeting, EHLO, MAIL, RCPT, DATA with its dot-terminated body, QUIT).

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::*;
use crate::flows::alice_token;

/// One mail as the sink received it.
#[derive(Debug, Clone, Default)]
struct Mail {
    from: String,
    to: Vec<String>,
    data: String,
}

/// An SMTP server that accepts every mail (no TLS, no auth: `security = "none"`) but answers
/// the first `busy` MAIL commands `451` (try again later). It never offers STARTTLS.
async fn smtp_sink(busy: usize) -> (u16, Arc<Mutex<Vec<Mail>>>, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
    let sessions: Arc<Mutex<usize>> = Arc::default();
    let (m, n) = (mails.clone(), sessions.clone());
    let refused = Arc::new(Mutex::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            *n.lock().unwrap() += 1;
            let (m, refused) = (m.clone(), refused.clone());
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 sink ESMTP\r\n").await.unwrap();
                let mut mail = Mail::default();
                while let Ok(Some(line)) = lines.next_line().await {
                    let upper = line.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                        b"250-sink\r\n250 8BITMIME\r\n"
                    } else if upper.starts_with("MAIL FROM:") {
                        let mut r = refused.lock().unwrap();
                        if *r < busy {
                            *r += 1;
                            b"451 4.3.2 busy, try later\r\n"
                        } else {
                            mail.from = line[10..].trim().to_string();
                            b"250 OK\r\n"
                        }
                    } else if upper.starts_with("RCPT TO:") {
                        mail.to.push(line[8..].trim().to_string());
                        b"250 OK\r\n"
                    } else if upper == "DATA" {
                        write.write_all(b"354 go on\r\n").await.unwrap();
                        while let Ok(Some(l)) = lines.next_line().await {
                            if l == "." {
                                break;
                            }
                            // RFC 5321 §4.5.2: a leading dot was doubled.
                            mail.data.push_str(l.strip_prefix('.').unwrap_or(&l));
                            mail.data.push('\n');
                        }
                        m.lock().unwrap().push(std::mem::take(&mut mail));
                        b"250 queued\r\n"
                    } else if upper == "QUIT" {
                        write.write_all(b"221 bye\r\n").await.unwrap();
                        return;
                    } else {
                        b"250 OK\r\n"
                    };
                    write.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (port, mails, sessions)
}

fn smtp(port: u16, security: &str) -> String {
    format!(
        "[notifications.smtp]\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"{security}\"\n\
         from = \"mandate@example.com\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_human_is_mailed_who_asks_for_what_and_where_to_decide_and_no_token() {
    for b in backends() {
        let (port, mails, _) = smtp_sink(0).await;
        let agent = TestAgent::new("build-bot");
        let app = spawn_app_with(b, &extra(&agent, &smtp(port, "none"))).await;
        let alice = alice_token(&app, "orders:read payments:write").await;
        // A binding message trying to start a header of its own: CIBA refuses it outright.
        let actor = agent.attest(&app).await;
        let resp = app
            .post_form(
                "/bc-authorize",
                Some(("agent-host", "host-secret")),
                &[
                    ("subject_token", alice.as_str()),
                    ("subject_token_type", AT),
                    ("actor_token", actor.as_str()),
                    ("actor_token_type", JWT),
                    ("binding_message", "hi\r\nBcc: eve@example.com"),
                ],
            )
            .await;
        assert_eq!(resp.status(), 400, "{b:?}");

        let (v, actor) = ask(
            &app,
            &agent,
            &alice,
            &[("binding_message", "Pay invoice 4711")],
        )
        .await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while mails.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "{b:?}: no mail");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let mail = mails.lock().unwrap()[0].clone();
        assert_eq!(mail.from, "<mandate@example.com>", "{b:?}");
        assert_eq!(mail.to, ["<alice@example.com>"], "{b:?}: only the human");
        let data = mail.data.replace("=\n", "");
        for part in [
            "Subject: Approval needed: agent:build-bot asks to act for alice",
            "To: alice@example.com",
            "Content-Type: text/plain",
            "Pay invoice 4711",
            "Client:     agent-host",
            "Scopes:     payments:write",
            &format!("{}/approvals", app.url),
        ] {
            assert!(data.contains(part), "{b:?}: {part} in {data}");
        }
        assert!(!data.to_ascii_lowercase().contains("\nbcc:"), "{b:?}");
        for secret in [
            v["auth_req_id"].as_str().unwrap(),
            &alice,
            &actor,
            "host-secret",
        ] {
            assert!(!data.contains(secret), "{b:?}: {data}");
        }
        app.stop().await;
    }
}

/// An SMTP server that is busy (`451`) is tried again, and the mail arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_smtp_server_is_tried_again() {
    let (port, mails, sessions) = smtp_sink(2).await;
    let agent = TestAgent::new("build-bot");
    let app = spawn_app_with(Backend::Sqlite, &extra(&agent, &smtp(port, "none"))).await;
    let alice = alice_token(&app, "orders:read payments:write").await;
    ask(&app, &agent, &alice, &[("binding_message", "again")]).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while mails.lock().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no mail");
        app.advance(1);
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(
        *sessions.lock().unwrap() >= 3,
        "two refused attempts, then one accepted"
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(mails.lock().unwrap().len(), 1, "delivered once");
    app.stop().await;
}

/// With `security = "starttls"` (the default) a server that does not offer STARTTLS never
/// gets the mail in clear text: the attempt fails and is retried, nothing is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_is_required_and_never_downgraded_to_clear_text() {
    let (port, mails, sessions) = smtp_sink(0).await;
    let agent = TestAgent::new("build-bot");
    let app = spawn_app_with(Backend::Sqlite, &extra(&agent, &smtp(port, "starttls"))).await;
    let alice = alice_token(&app, "orders:read payments:write").await;
    ask(&app, &agent, &alice, &[("binding_message", "secret plans")]).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while *sessions.lock().unwrap() < 2 {
        assert!(std::time::Instant::now() < deadline, "not tried twice");
        app.advance(1);
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(
        mails.lock().unwrap().is_empty(),
        "nothing sent in clear text"
    );
    app.stop().await;
}
