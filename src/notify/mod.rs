//! Deploy notifications by webhook (Slack, Microsoft Teams, generic JSON): the `[[notify]]` table,
//! the payload each kind receives, and best-effort delivery that never fails a deploy.
//!
//! A webhook URL usually carries its secret in the path or query (Slack's
//! `https://hooks.slack.com/services/T…/B…/xyz`), so every message this module writes names a hook
//! by its scheme, host and port only: `https://hooks.slack.com/…`.

use std::time::Duration;

use reqwest::Url;
use serde_json::{json, Value};

use crate::config::deployfile::RawNotify;
pub use crate::config::deployfile::{Kind, Trigger};

/// How many times one notification is posted before giving up, and the pauses between tries.
const ATTEMPTS: usize = 3;
const BACKOFF: [Duration; ATTEMPTS - 1] = [Duration::from_millis(500), Duration::from_millis(1000)];

/// The timeout of one POST when the Deployfile names none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest message (failure summary, stderr tail…) put into a payload, in characters.
const MESSAGE_LIMIT: usize = 2000;

/// Hosts named one by one in a summary line; the rest are counted.
const HOSTS_NAMED: usize = 5;

/// A resolved webhook: its URL rendered and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub url: String,
    pub kind: Kind,
    pub on: Vec<Trigger>,
    pub timeout: Duration,
}

impl Webhook {
    /// Render the URL template with `render` and check it is an http(s) URL with a host.
    /// Error messages never show the URL's path, query or credentials.
    pub fn from_raw(
        raw: &RawNotify,
        render: impl Fn(&str) -> Result<String, String>,
    ) -> Result<Webhook, String> {
        let rendered = render(&raw.webhook).map_err(|error| format!("notify webhook: {error}"))?;
        let url = rendered.trim();
        if url.is_empty() {
            return Err(if raw.webhook.contains("{{") {
                format!(
                    "notify webhook `{}` rendered to an empty URL (is its variable set?)",
                    raw.webhook.trim()
                )
            } else {
                "notify webhook is empty".to_string()
            });
        }
        let parsed = Url::parse(url).map_err(|error| {
            format!(
                "notify webhook `{}` is not a valid URL: {error}",
                redact_unparsed(url)
            )
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!(
                "notify webhook `{}` must be an http:// or https:// URL, not {}://",
                redact(url),
                parsed.scheme()
            ));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(format!("notify webhook `{}` has no host", redact(url)));
        }
        let timeout = match raw.timeout {
            None => DEFAULT_TIMEOUT,
            Some(0) => {
                return Err(format!(
                    "notify webhook `{}`: `timeout` must be at least 1 (seconds)",
                    redact(url)
                ))
            }
            Some(seconds) => Duration::from_secs(seconds),
        };
        let mut on = Vec::new();
        for trigger in &raw.on {
            if !on.contains(trigger) {
                on.push(*trigger);
            }
        }
        Ok(Webhook {
            url: url.to_string(),
            kind: raw.kind,
            on,
            timeout,
        })
    }

    /// The URL safe to print: scheme, host and port, then `/…` when anything followed.
    pub fn display_url(&self) -> String {
        redact(&self.url)
    }
}

/// What happened, as told to every subscribed webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub trigger: Trigger,
    /// The `application` variable; left out of the wording when empty.
    pub application: String,
    pub stage: String,
    /// The release concerned: the new one, or for `rollback` the one abandoned.
    pub release: String,
    /// The full commit id; the summary line shows its first 7 characters. May be empty.
    pub revision: String,
    /// May be empty (a tag, a bare revision, an artifact).
    pub branch: String,
    pub hosts: Vec<String>,
    /// Time since the deploy started; None for `start`.
    pub duration: Option<Duration>,
    /// `user@machine` that ran dep.
    pub who: String,
    /// Why: the failure summary, or "health check failed on web2: …".
    pub message: Option<String>,
}

/// The body posted to a webhook of this kind. Pure: no clock, no environment.
pub fn payload(kind: Kind, notice: &Notice) -> Value {
    match kind {
        Kind::Slack => slack(notice),
        Kind::Teams => teams(notice),
        Kind::Json => json!({
            "event": notice.trigger.event(),
            "application": notice.application,
            "stage": notice.stage,
            "release": notice.release,
            "revision": notice.revision,
            "branch": notice.branch,
            "hosts": notice.hosts,
            "duration_ms": notice.duration.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            "who": notice.who,
            "message": notice.message.as_deref().map(truncate),
        }),
    }
}

/// The one-line, emoji-free summary every kind starts from, e.g. "dep: release 20261126101500 of
/// shop is live on production (3 hosts: web1, web2, web3) in 12.3s — deployed by alice@laptop,
/// revision abc1234 (main)".
pub fn summary(notice: &Notice) -> String {
    let release = match notice.application.as_str() {
        "" => format!("release {}", notice.release),
        app => format!("release {} of {app}", notice.release),
    };
    let stage = &notice.stage;
    let hosts = hosts_phrase(&notice.hosts);
    let took = notice
        .duration
        .map(|d| format!(" after {}", human_duration(d)))
        .unwrap_or_default();
    let head = match notice.trigger {
        Trigger::Start => format!("dep: deploying {release} to {stage} ({hosts}) — started by"),
        Trigger::Success => {
            let took = notice
                .duration
                .map(|d| format!(" in {}", human_duration(d)))
                .unwrap_or_default();
            format!("dep: {release} is live on {stage} ({hosts}){took} — deployed by")
        }
        Trigger::Failure => {
            format!("dep: deploy of {release} to {stage} failed{took} ({hosts}) — started by")
        }
        Trigger::Rollback => {
            format!("dep: {release} was rolled back on {stage}{took} ({hosts}) — deployed by")
        }
    };
    let mut line = format!("{head} {}", notice.who);
    if !notice.revision.is_empty() {
        line.push_str(&format!(", revision {}", short_revision(&notice.revision)));
        if !notice.branch.is_empty() {
            line.push_str(&format!(" ({})", notice.branch));
        }
    } else if !notice.branch.is_empty() {
        line.push_str(&format!(", branch {}", notice.branch));
    }
    line
}

fn slack(notice: &Notice) -> Value {
    let mut text = slack_escape(&summary(notice));
    if let Some(message) = notice.message.as_deref().map(str::trim) {
        if !message.is_empty() {
            text.push('\n');
            text.push_str(&slack_escape(&truncate(message)));
        }
    }
    json!({ "text": text })
}

/// Slack reads `&`, `<` and `>` as markup in `text`; these three must be escaped.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn teams(notice: &Notice) -> Value {
    let (color, title) = match notice.trigger {
        Trigger::Start => ("0078D7", format!("Deploying to {}", notice.stage)),
        Trigger::Success => ("2EB886", format!("Deployed to {}", notice.stage)),
        Trigger::Failure => ("D93025", format!("Deploy to {} failed", notice.stage)),
        Trigger::Rollback => ("F2A33A", format!("Rolled back on {}", notice.stage)),
    };
    let title = match notice.application.as_str() {
        "" => format!("dep: {title}"),
        app => format!("dep: {app} — {title}"),
    };
    let summary = summary(notice);
    let text = match notice.message.as_deref().map(str::trim) {
        Some(message) if !message.is_empty() => format!("{summary}\n\n{}", truncate(message)),
        _ => summary.clone(),
    };
    let mut facts = vec![
        fact("Stage", &notice.stage),
        fact("Release", &notice.release),
    ];
    if !notice.revision.is_empty() {
        facts.push(fact("Revision", &notice.revision));
    }
    if !notice.branch.is_empty() {
        facts.push(fact("Branch", &notice.branch));
    }
    facts.push(fact("Hosts", &notice.hosts.join(", ")));
    if let Some(duration) = notice.duration {
        facts.push(fact("Duration", &human_duration(duration)));
    }
    facts.push(fact("Who", &notice.who));
    json!({
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": summary,
        "themeColor": color,
        "title": title,
        "text": text,
        "sections": [{ "facts": facts }],
    })
}

fn fact(name: &str, value: &str) -> Value {
    json!({ "name": name, "value": value })
}

fn hosts_phrase(hosts: &[String]) -> String {
    let count = match hosts.len() {
        1 => "1 host".to_string(),
        n => format!("{n} hosts"),
    };
    if hosts.is_empty() {
        return count;
    }
    let named = hosts
        .iter()
        .take(HOSTS_NAMED)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if hosts.len() > HOSTS_NAMED {
        format!("{count}: {named} and {} more", hosts.len() - HOSTS_NAMED)
    } else {
        format!("{count}: {named}")
    }
}

/// "0.4s", "12.3s", "2m 05s", "1h 02m".
fn human_duration(duration: Duration) -> String {
    let tenths = duration.as_millis() / 100;
    let seconds = duration.as_secs();
    if seconds < 60 {
        format!("{}.{}s", tenths / 10, tenths % 10)
    } else if seconds < 3600 {
        format!("{}m {:02}s", seconds / 60, seconds % 60)
    } else {
        format!("{}h {:02}m", seconds / 3600, (seconds % 3600) / 60)
    }
}

fn short_revision(revision: &str) -> &str {
    let is_sha = revision.len() > 7 && revision.bytes().all(|b| b.is_ascii_hexdigit());
    if is_sha {
        &revision[..7]
    } else {
        revision
    }
}

fn truncate(message: &str) -> String {
    match message.char_indices().nth(MESSAGE_LIMIT) {
        None => message.to_string(),
        Some((cut, _)) => format!("{}… (truncated)", &message[..cut]),
    }
}

/// `scheme://host[:port]`, then `/…` when a path, query or fragment followed; credentials dropped.
pub fn redact(url: &str) -> String {
    let Ok(parsed) = Url::parse(url) else {
        return redact_unparsed(url);
    };
    let Some(host) = parsed.host_str() else {
        return format!("{}:…", parsed.scheme());
    };
    let mut shown = format!("{}://{host}", parsed.scheme());
    if let Some(port) = parsed.port() {
        shown.push_str(&format!(":{port}"));
    }
    let more = parsed.path() != "/"
        || parsed.query().is_some()
        || parsed.fragment().is_some()
        || !parsed.username().is_empty()
        || parsed.password().is_some();
    if more {
        shown.push_str("/…");
    }
    shown
}

/// For text that is not even a URL: show at most what precedes `://`.
fn redact_unparsed(text: &str) -> String {
    match text.split_once("://") {
        Some((scheme, _)) if scheme.chars().all(|c| c.is_ascii_alphanumeric()) => {
            format!("{scheme}://…")
        }
        _ => "…".to_string(),
    }
}

/// Send `notice` to every webhook subscribed to its trigger, concurrently. Each POST is tried up
/// to three times (pausing 0.5 s, then 1 s) when it could not connect, timed out, or got a 5xx or
/// 429; any other answer is final. Returns one warning per webhook that finally failed; never
/// panics and never fails, so a notification can never fail a deploy. Needs a tokio runtime with
/// IO and time enabled.
pub async fn send(hooks: &[Webhook], notice: &Notice) -> Vec<String> {
    let deliveries = hooks
        .iter()
        .filter(|hook| hook.on.contains(&notice.trigger))
        .map(|hook| async move {
            let body = payload(hook.kind, notice).to_string();
            deliver(hook, body).await.err().map(|reason| {
                format!(
                    "notification to `{}` ({}) failed: {reason}",
                    hook.display_url(),
                    hook.kind
                )
            })
        });
    futures::future::join_all(deliveries)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// One failed try, and whether another might do better.
struct Failure {
    reason: String,
    retry: bool,
}

async fn deliver(hook: &Webhook, body: String) -> Result<(), String> {
    let client =
        client(hook).map_err(|error| format!("cannot set up HTTP: {}", describe(&error)))?;
    let mut attempt = 0;
    loop {
        let failure = match post(&client, hook, body.clone()).await {
            Ok(()) => return Ok(()),
            Err(failure) => failure,
        };
        attempt += 1;
        if !failure.retry {
            return Err(failure.reason);
        }
        if attempt == ATTEMPTS {
            return Err(format!("{} (after {ATTEMPTS} attempts)", failure.reason));
        }
        tokio::time::sleep(BACKOFF[attempt - 1]).await;
    }
}

fn client(hook: &Webhook) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("dep/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(hook.timeout)
        .timeout(hook.timeout);
    // A proxy from the environment is for the outside world; loopback hooks talk directly.
    let loopback = Url::parse(&hook.url)
        .ok()
        .and_then(|url| {
            let host = url
                .host_str()?
                .trim_start_matches('[')
                .trim_end_matches(']');
            Some(
                host.eq_ignore_ascii_case("localhost")
                    || host
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback()),
            )
        })
        .unwrap_or(false);
    if loopback {
        builder = builder.no_proxy();
    }
    builder.build()
}

async fn post(client: &reqwest::Client, hook: &Webhook, body: String) -> Result<(), Failure> {
    let response = client
        .post(&hook.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|error| Failure {
            retry: error.is_connect() || error.is_timeout() || error.is_request(),
            reason: if error.is_timeout() {
                format!("no answer within {}", human_duration(hook.timeout))
            } else if error.is_connect() {
                format!("could not connect: {}", describe(&error))
            } else {
                describe(&error)
            },
        })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    let body: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    let body = match body.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &body[..cut]),
        None => body,
    };
    let mut reason = format!("the server answered {status}");
    if !body.is_empty() {
        reason.push_str(&format!(": {body}"));
    }
    Err(Failure {
        reason,
        retry: status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS,
    })
}

/// A reqwest error and its causes, without the URL (which may hold the hook's secret).
fn describe(error: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut parts: Vec<String> = Vec::new();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    // The innermost cause says the most ("Connection refused (os error 111)").
    match parts.last() {
        Some(last) => last.clone(),
        None => match error.url() {
            Some(url) => error.to_string().replace(url.as_str(), "…"),
            None => error.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(trigger: Trigger) -> Notice {
        Notice {
            trigger,
            application: "shop".into(),
            stage: "production".into(),
            release: "20261126101500".into(),
            revision: "abc1234def5678abc1234def5678abc1234def56".into(),
            branch: "main".into(),
            hosts: vec!["web1".into(), "web2".into(), "web3".into()],
            duration: Some(Duration::from_millis(12_345)),
            who: "alice@laptop".into(),
            message: None,
        }
    }

    fn raw(webhook: &str) -> RawNotify {
        RawNotify {
            webhook: webhook.into(),
            kind: Kind::Slack,
            on: Trigger::ALL.to_vec(),
            timeout: None,
        }
    }

    fn verbatim(text: &str) -> Result<String, String> {
        Ok(text.to_string())
    }

    #[test]
    fn slack_payload_on_success() {
        assert_eq!(
            payload(Kind::Slack, &notice(Trigger::Success)),
            json!({
                "text": "dep: release 20261126101500 of shop is live on production (3 hosts: web1, web2, web3) in 12.3s — deployed by alice@laptop, revision abc1234 (main)"
            })
        );
    }

    #[test]
    fn slack_payload_on_failure_escapes_the_message() {
        let mut notice = notice(Trigger::Failure);
        notice.message = Some("host `web2`, task `deploy:vendors`: <exit 1> & more".into());
        assert_eq!(
            payload(Kind::Slack, &notice),
            json!({
                "text": "dep: deploy of release 20261126101500 of shop to production failed after 12.3s (3 hosts: web1, web2, web3) — started by alice@laptop, revision abc1234 (main)\nhost `web2`, task `deploy:vendors`: &lt;exit 1&gt; &amp; more"
            })
        );
    }

    #[test]
    fn teams_payload_on_rollback() {
        let mut notice = notice(Trigger::Rollback);
        notice.message = Some("health check failed on web2: expected status 200, got 502".into());
        let summary = "dep: release 20261126101500 of shop was rolled back on production after 12.3s (3 hosts: web1, web2, web3) — deployed by alice@laptop, revision abc1234 (main)";
        assert_eq!(
            payload(Kind::Teams, &notice),
            json!({
                "@type": "MessageCard",
                "@context": "https://schema.org/extensions",
                "summary": summary,
                "themeColor": "F2A33A",
                "title": "dep: shop — Rolled back on production",
                "text": format!("{summary}\n\nhealth check failed on web2: expected status 200, got 502"),
                "sections": [{ "facts": [
                    { "name": "Stage", "value": "production" },
                    { "name": "Release", "value": "20261126101500" },
                    { "name": "Revision", "value": "abc1234def5678abc1234def5678abc1234def56" },
                    { "name": "Branch", "value": "main" },
                    { "name": "Hosts", "value": "web1, web2, web3" },
                    { "name": "Duration", "value": "12.3s" },
                    { "name": "Who", "value": "alice@laptop" },
                ]}],
            })
        );
    }

    #[test]
    fn teams_colors_follow_the_outcome() {
        let color = |trigger| payload(Kind::Teams, &notice(trigger))["themeColor"].clone();
        assert_eq!(color(Trigger::Success), "2EB886");
        assert_eq!(color(Trigger::Failure), "D93025");
        assert_eq!(color(Trigger::Rollback), "F2A33A");
        assert_eq!(color(Trigger::Start), "0078D7");
    }

    #[test]
    fn json_payload_on_start_and_failure() {
        let mut start = notice(Trigger::Start);
        start.duration = None;
        assert_eq!(
            payload(Kind::Json, &start),
            json!({
                "event": "deploy_started",
                "application": "shop",
                "stage": "production",
                "release": "20261126101500",
                "revision": "abc1234def5678abc1234def5678abc1234def56",
                "branch": "main",
                "hosts": ["web1", "web2", "web3"],
                "duration_ms": null,
                "who": "alice@laptop",
                "message": null,
            })
        );
        let mut failure = notice(Trigger::Failure);
        failure.message = Some("boom".into());
        let value = payload(Kind::Json, &failure);
        assert_eq!(value["event"], "deploy_failed");
        assert_eq!(value["duration_ms"], 12_345);
        assert_eq!(value["message"], "boom");
        assert_eq!(
            payload(Kind::Json, &notice(Trigger::Success))["event"],
            "deploy_succeeded"
        );
        assert_eq!(
            payload(Kind::Json, &notice(Trigger::Rollback))["event"],
            "deploy_rolled_back"
        );
    }

    #[test]
    fn summary_lines() {
        let mut start = notice(Trigger::Start);
        start.duration = None;
        start.application = String::new();
        start.hosts = (1..=7).map(|i| format!("web{i}")).collect();
        start.revision = "v1.2.0".into();
        start.branch = String::new();
        assert_eq!(
            summary(&start),
            "dep: deploying release 20261126101500 to production (7 hosts: web1, web2, web3, web4, web5 and 2 more) — started by alice@laptop, revision v1.2.0"
        );
        let mut one = notice(Trigger::Success);
        one.hosts = vec!["demo".into()];
        one.duration = Some(Duration::from_secs(125));
        one.revision = String::new();
        assert_eq!(
            summary(&one),
            "dep: release 20261126101500 of shop is live on production (1 host: demo) in 2m 05s — deployed by alice@laptop, branch main"
        );
    }

    #[test]
    fn durations_read_well() {
        for (millis, text) in [
            (0, "0.0s"),
            (400, "0.4s"),
            (12_345, "12.3s"),
            (59_999, "59.9s"),
            (60_000, "1m 00s"),
            (3_599_000, "59m 59s"),
            (3_720_000, "1h 02m"),
        ] {
            assert_eq!(human_duration(Duration::from_millis(millis)), text);
        }
    }

    #[test]
    fn long_messages_are_truncated() {
        let mut failure = notice(Trigger::Failure);
        failure.message = Some("x".repeat(5000));
        let message = payload(Kind::Json, &failure)["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(message.ends_with("… (truncated)"));
        assert_eq!(
            message.chars().count(),
            MESSAGE_LIMIT + "… (truncated)".len() - 2
        );
    }

    #[test]
    fn redaction_keeps_scheme_host_and_port() {
        for (url, shown) in [
            (
                "https://hooks.slack.com/services/T000/B000/XXXX",
                "https://hooks.slack.com/…",
            ),
            ("https://user:pw@example.com/", "https://example.com/…"),
            (
                "http://127.0.0.1:8080/hook?token=s3cret",
                "http://127.0.0.1:8080/…",
            ),
            ("http://example.com?token=s3cret", "http://example.com/…"),
            ("http://example.com", "http://example.com"),
            ("https://example.com:443/", "https://example.com"),
            (
                "ftp://files.example.com/secret",
                "ftp://files.example.com/…",
            ),
            ("not a url with s3cret", "…"),
        ] {
            assert_eq!(redact(url), shown, "{url}");
        }
    }

    #[test]
    fn from_raw_renders_and_defaults() {
        let mut raw = raw("{{ slack_webhook }}");
        raw.on = vec![Trigger::Failure, Trigger::Failure, Trigger::Rollback];
        let hook = Webhook::from_raw(&raw, |text| {
            assert_eq!(text, "{{ slack_webhook }}");
            Ok(" https://hooks.slack.com/services/T/B/x\n".into())
        })
        .unwrap();
        assert_eq!(
            hook,
            Webhook {
                url: "https://hooks.slack.com/services/T/B/x".into(),
                kind: Kind::Slack,
                on: vec![Trigger::Failure, Trigger::Rollback],
                timeout: DEFAULT_TIMEOUT,
            }
        );
        assert_eq!(hook.display_url(), "https://hooks.slack.com/…");
    }

    #[test]
    fn from_raw_refuses_what_cannot_be_posted_to() {
        let error = |raw: RawNotify| Webhook::from_raw(&raw, verbatim).unwrap_err();
        assert_eq!(
            error(raw("ftp://files.example.com/s3cret")),
            "notify webhook `ftp://files.example.com/…` must be an http:// or https:// URL, not ftp://"
        );
        assert_eq!(
            error(raw("hooks.slack.com/services/s3cret")),
            "notify webhook `…` is not a valid URL: relative URL without a base"
        );
        assert_eq!(error(raw("  ")), "notify webhook is empty");
        let mut zero = raw("https://example.com/hook");
        zero.timeout = Some(0);
        assert_eq!(
            error(zero),
            "notify webhook `https://example.com/…`: `timeout` must be at least 1 (seconds)"
        );
        assert_eq!(
            Webhook::from_raw(&raw("{{ hook }}"), |_| Ok(String::new())).unwrap_err(),
            "notify webhook `{{ hook }}` rendered to an empty URL (is its variable set?)"
        );
        assert_eq!(
            Webhook::from_raw(&raw("{{ hook }}"), |_| Err(
                "undefined variable `hook`".into()
            ))
            .unwrap_err(),
            "notify webhook: undefined variable `hook`"
        );
    }

    #[test]
    fn raw_notify_parses_from_toml() {
        #[derive(serde::Deserialize)]
        struct File {
            notify: Vec<RawNotify>,
        }
        let file: File = toml::from_str(
            r#"
            [[notify]]
            webhook = "{{ slack_webhook }}"
            kind = "slack"
            on = ["success", "failure"]
            timeout = 10

            [[notify]]
            webhook = "https://example.com/hook"
            "#,
        )
        .unwrap();
        let [slack, plain] = &file.notify[..] else {
            panic!("two hooks expected")
        };
        assert_eq!(slack.kind, Kind::Slack);
        assert_eq!(slack.on, vec![Trigger::Success, Trigger::Failure]);
        assert_eq!(slack.timeout, Some(10));
        assert_eq!(plain.kind, Kind::Json);
        assert_eq!(plain.on, Trigger::ALL.to_vec());
        assert_eq!(plain.timeout, None);

        let unknown = toml::from_str::<File>("[[notify]]\nwebhook = \"x\"\nchannel = \"#ops\"\n");
        assert!(unknown
            .err()
            .unwrap()
            .to_string()
            .contains("unknown field `channel`"));
        let bad_kind = toml::from_str::<File>("[[notify]]\nwebhook = \"x\"\nkind = \"discord\"\n");
        assert!(bad_kind
            .err()
            .unwrap()
            .to_string()
            .contains("unknown variant `discord`"));
    }
}
