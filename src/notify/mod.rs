//! Deploy notifications by webhook (Slack, Microsoft Teams, generic JSON): the resolved
//! `[[notify]]` webhook, what happened (`Notice`), the payload each kind receives (`payload`),
//! and best-effort delivery that never fails a deploy (`send`).
//!
//! A webhook URL usually carries its secret in the path or query (Slack's
//! `https://hooks.slack.com/services/T…/B…/xyz`), so every message this module writes names a hook
//! by its scheme, host and port only: `https://hooks.slack.com/…`.

mod payload;
mod send;

use std::time::Duration;

use reqwest::Url;

use crate::config::deployfile::RawNotify;
pub use crate::config::deployfile::{Kind, Trigger};
pub use payload::{hosts_phrase, payload, summary};
pub use send::send;

/// The timeout of one POST when the Deployfile names none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a `[[notify]]` webhook cannot be posted to; never shows the URL's path, query or
/// credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("notify webhook: {0}")]
    Render(String),
    #[error("notify webhook `{0}` rendered to an empty URL (is its variable set?)")]
    RenderedEmpty(String),
    #[error("notify webhook is empty")]
    Empty,
    #[error("notify webhook `{shown}` is not a valid URL: {error}")]
    NotAUrl { shown: String, error: String },
    #[error("notify webhook `{shown}` must be an http:// or https:// URL, not {scheme}://")]
    Scheme { shown: String, scheme: String },
    #[error("notify webhook `{0}` has no host")]
    NoHost(String),
    #[error("notify webhook `{0}`: `timeout` must be at least 1 (seconds)")]
    ZeroTimeout(String),
}

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
    pub fn from_raw<E: std::fmt::Display>(
        raw: &RawNotify,
        render: impl Fn(&str) -> Result<String, E>,
    ) -> Result<Webhook, WebhookError> {
        let rendered =
            render(&raw.webhook).map_err(|error| WebhookError::Render(error.to_string()))?;
        let url = rendered.trim();
        if url.is_empty() {
            return Err(if raw.webhook.contains("{{") {
                WebhookError::RenderedEmpty(raw.webhook.trim().to_string())
            } else {
                WebhookError::Empty
            });
        }
        let parsed = Url::parse(url).map_err(|error| WebhookError::NotAUrl {
            shown: redact_unparsed(url),
            error: error.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(WebhookError::Scheme {
                shown: redact(url),
                scheme: parsed.scheme().to_string(),
            });
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(WebhookError::NoHost(redact(url)));
        }
        let timeout = match raw.timeout {
            None => DEFAULT_TIMEOUT,
            Some(0) => return Err(WebhookError::ZeroTimeout(redact(url))),
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

#[cfg(test)]
mod tests {
    use super::payload::{human_duration, MESSAGE_LIMIT};
    use super::*;
    use serde_json::json;

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

    fn verbatim(text: &str) -> Result<String, std::convert::Infallible> {
        Ok(text.to_string())
    }

    fn verbatim_empty(_: &str) -> Result<String, std::convert::Infallible> {
        Ok(String::new())
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
    fn watch_payloads_say_what_the_window_found() {
        let mut alert = notice(Trigger::Alert);
        alert.message = Some("issues detected; the release stays live\nprobe `search` on host `web2`: p95 812 ms, above 500 ms".into());
        assert_eq!(
            payload(Kind::Slack, &alert),
            json!({
                "text": "dep: issues detected on production after release 20261126101500 of shop went live (3 hosts: web1, web2, web3); the release stays live — deployed by alice@laptop, revision abc1234 (main)\nissues detected; the release stays live\nprobe `search` on host `web2`: p95 812 ms, above 500 ms"
            })
        );
        let teams = payload(Kind::Teams, &alert);
        assert_eq!(teams["themeColor"], "E8B400");
        assert_eq!(teams["title"], "dep: shop — Issues detected on production");
        assert!(teams["text"]
            .as_str()
            .unwrap()
            .ends_with("p95 812 ms, above 500 ms"));
        assert_eq!(payload(Kind::Json, &alert)["event"], "watch_alert");
        let normal = notice(Trigger::Normal);
        assert_eq!(payload(Kind::Json, &normal)["event"], "watch_normal");
        assert_eq!(payload(Kind::Teams, &normal)["themeColor"], "2EB886");
        assert_eq!(
            summary(&normal),
            "dep: all systems normal on production: release 20261126101500 of shop watched after 12.3s (3 hosts: web1, web2, web3) — deployed by alice@laptop, revision abc1234 (main)"
        );
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
            Ok::<_, std::convert::Infallible>(" https://hooks.slack.com/services/T/B/x\n".into())
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
        let error = |raw: RawNotify| Webhook::from_raw(&raw, verbatim).unwrap_err().to_string();
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
            Webhook::from_raw(&raw("{{ hook }}"), verbatim_empty).unwrap_err(),
            WebhookError::RenderedEmpty("{{ hook }}".into())
        );
        assert_eq!(
            Webhook::from_raw(&raw("{{ hook }}"), |_| Err("undefined variable `hook`"))
                .unwrap_err()
                .to_string(),
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
