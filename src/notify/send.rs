//! Delivery: each subscribed webhook POSTed concurrently, retried when it may help, every
//! failure a warning (worded without the URL's secret parts), never an error.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;

use super::payload::{human_duration, payload};
use super::{Notice, Webhook};

/// How many times one notification is posted before giving up, and the pauses between tries.
const ATTEMPTS: usize = 3;
const BACKOFF: [Duration; ATTEMPTS - 1] = [Duration::from_millis(500), Duration::from_millis(1000)];

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
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
struct Failure {
    reason: String,
    retry: bool,
}

async fn deliver(hook: &Webhook, body: String) -> Result<(), Failure> {
    let client = client(hook).map_err(|error| Failure {
        reason: format!("cannot set up HTTP: {}", describe(&error)),
        retry: false,
    })?;
    let mut attempt = 0;
    loop {
        let mut failure = match post(&client, hook, body.clone()).await {
            Ok(()) => return Ok(()),
            Err(failure) => failure,
        };
        attempt += 1;
        if !failure.retry {
            return Err(failure);
        }
        if attempt == ATTEMPTS {
            failure.reason = format!("{} (after {ATTEMPTS} attempts)", failure.reason);
            return Err(failure);
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
    builder.tls_backend_preconfigured(tls_config()).build()
}

/// TLS for webhooks: ring (as russh uses) and the Mozilla roots built in, so that a static binary
/// on a machine without a CA store still reaches Slack or Teams.
fn tls_config() -> rustls::ClientConfig {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth()
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
    use crate::notify::{Kind, Trigger};

    #[test]
    fn the_webhook_client_takes_the_built_in_tls_configuration() {
        // A rustls that is not reqwest's own would be refused here, as an unknown TLS backend.
        for url in [
            "https://hooks.example.com/services/x",
            "http://127.0.0.1:9/hook",
        ] {
            let hook = Webhook {
                url: url.to_string(),
                kind: Kind::Slack,
                on: vec![Trigger::Success],
                timeout: Duration::from_secs(1),
            };
            client(&hook).unwrap_or_else(|e| panic!("{url}: {e}"));
        }
    }
}
