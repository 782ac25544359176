//! Webhook delivery against tiny HTTP servers on 127.0.0.1: bodies, retries, give-ups, triggers
//! and redaction. No outside network.

use std::time::{Duration, Instant};

use dep::notify::{payload, send, Kind, Notice, Trigger, Webhook};

use crate::support::net::{ClosedPort, HookServer as Server, Reply};

fn hook(url: String, kind: Kind, on: &[Trigger]) -> Webhook {
    Webhook {
        url,
        kind,
        on: on.to_vec(),
        timeout: Duration::from_secs(2),
    }
}

fn notice(trigger: Trigger) -> Notice {
    Notice {
        trigger,
        application: "shop".into(),
        stage: "production".into(),
        release: "20261126101500".into(),
        revision: "abc1234def5678abc1234def5678abc1234def56".into(),
        branch: "main".into(),
        hosts: vec!["web1".into(), "web2".into()],
        duration: Some(Duration::from_millis(8_200)),
        who: "alice@laptop".into(),
        message: None,
    }
}

#[tokio::test]
async fn every_kind_is_delivered_as_json() {
    let server = Server::scripted(&[Reply::Status(200)]);
    let hooks = [
        hook(server.url("/slack"), Kind::Slack, &Trigger::ALL),
        hook(server.url("/teams"), Kind::Teams, &Trigger::ALL),
        hook(server.url("/json"), Kind::Json, &Trigger::ALL),
    ];
    let notice = notice(Trigger::Success);

    let warnings = send(&hooks, &notice).await;

    assert_eq!(warnings, Vec::<String>::new());
    let mut seen = server.seen();
    seen.sort_by(|a, b| a.path.cmp(&b.path));
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, ["/json", "/slack", "/teams"]);
    for (request, kind) in seen.iter().zip([Kind::Json, Kind::Slack, Kind::Teams]) {
        assert_eq!(request.method, "POST");
        assert_eq!(request.content_type.as_deref(), Some("application/json"));
        let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!(body, payload(kind, &notice), "{kind}");
    }
    let json: serde_json::Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(json["event"], "deploy_succeeded");
    assert_eq!(json["duration_ms"], 8_200);
}

#[tokio::test]
async fn a_server_error_is_retried_until_it_succeeds() {
    let server = Server::scripted(&[Reply::Status(500), Reply::Status(200)]);
    let hooks = [hook(server.url("/hook"), Kind::Json, &Trigger::ALL)];

    let started = Instant::now();
    let warnings = send(&hooks, &notice(Trigger::Failure)).await;

    assert_eq!(warnings, Vec::<String>::new());
    assert_eq!(server.seen().len(), 2);
    // One pause of half a second between the two tries.
    assert!(started.elapsed() >= Duration::from_millis(450));
}

#[tokio::test]
async fn a_client_error_is_not_retried() {
    let server = Server::scripted(&[Reply::Status(404)]);
    let hooks = [hook(
        server.url("/services/T000/B000/s3cret?token=s3cret"),
        Kind::Slack,
        &Trigger::ALL,
    )];

    let warnings = send(&hooks, &notice(Trigger::Start)).await;

    assert_eq!(server.seen().len(), 1);
    assert_eq!(
        warnings,
        [format!(
            "notification to `http://127.0.0.1:{}/…` (slack) failed: the server answered 404 Not Found: no_service",
            server.port
        )]
    );
}

#[tokio::test]
async fn a_dead_endpoint_gives_up_after_three_tries() {
    let closed = ClosedPort::new();
    let port = closed.port();
    let hooks = [Webhook {
        url: format!("http://user:s3cret@127.0.0.1:{port}/hook/s3cret"),
        kind: Kind::Teams,
        on: Trigger::ALL.to_vec(),
        timeout: Duration::from_millis(500),
    }];

    let started = Instant::now();
    let warnings = send(&hooks, &notice(Trigger::Success)).await;
    let took = started.elapsed();

    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let warning = &warnings[0];
    assert!(
        warning.starts_with(&format!(
            "notification to `http://127.0.0.1:{port}/…` (teams) failed: "
        )),
        "{warning}"
    );
    assert!(warning.contains("failed: could not connect: "), "{warning}");
    assert!(warning.ends_with("(after 3 attempts)"), "{warning}");
    assert!(!warning.contains("s3cret"), "{warning}");
    // Pauses of 0.5 s and 1 s between three refused connections; bounded well under 3 s.
    assert!(took >= Duration::from_millis(1400), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let server = Server::scripted(&[Reply::Silence]);
    let hooks = [Webhook {
        url: server.url("/hook?key=s3cret"),
        kind: Kind::Json,
        on: Trigger::ALL.to_vec(),
        timeout: Duration::from_millis(200),
    }];

    let started = Instant::now();
    let warnings = send(&hooks, &notice(Trigger::Rollback)).await;
    let took = started.elapsed();

    assert_eq!(server.seen().len(), 3);
    assert_eq!(
        warnings,
        [format!(
            "notification to `http://127.0.0.1:{}/…` (json) failed: no answer within 0.2s (after 3 attempts)",
            server.port
        )]
    );
    // Three 0.2 s timeouts and 1.5 s of pauses.
    assert!(took < Duration::from_millis(3000), "{took:?}");
}

#[tokio::test]
async fn only_subscribed_hooks_hear_of_a_trigger() {
    let server = Server::scripted(&[Reply::Status(200)]);
    let hooks = [
        hook(server.url("/failures"), Kind::Json, &[Trigger::Failure]),
        hook(
            server.url("/outcomes"),
            Kind::Json,
            &[Trigger::Success, Trigger::Failure],
        ),
        hook(server.url("/never"), Kind::Json, &[]),
    ];

    assert!(send(&hooks, &notice(Trigger::Success)).await.is_empty());
    assert!(send(&hooks, &notice(Trigger::Start)).await.is_empty());
    let paths: Vec<String> = server.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, ["/outcomes"]);

    assert!(send(&hooks, &notice(Trigger::Failure)).await.is_empty());
    let mut paths: Vec<String> = server.seen().into_iter().map(|s| s.path).collect();
    paths.sort();
    assert_eq!(paths, ["/failures", "/outcomes", "/outcomes"]);
}

#[tokio::test]
async fn one_failing_hook_does_not_stop_the_others() {
    let good = Server::scripted(&[Reply::Status(200)]);
    let bad = Server::scripted(&[Reply::Status(403)]);
    let hooks = [
        hook(bad.url("/a"), Kind::Slack, &Trigger::ALL),
        hook(good.url("/b"), Kind::Slack, &Trigger::ALL),
    ];

    let warnings = send(&hooks, &notice(Trigger::Success)).await;

    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("403 Forbidden"), "{warnings:?}");
    assert_eq!(good.seen().len(), 1);
    assert_eq!(bad.seen().len(), 1);
}

#[tokio::test]
async fn no_hooks_no_work() {
    assert!(send(&[], &notice(Trigger::Success)).await.is_empty());
}
