//! What each kind of webhook receives: Slack's text, a Teams MessageCard, or dep's own JSON,
//! and the one-line summary they share. Pure: no clock, no environment.

use std::time::Duration;

use serde_json::{json, Value};

use super::{Kind, Notice, Trigger};

/// Longest message (failure summary, stderr tail…) put into a payload, in characters.
pub(super) const MESSAGE_LIMIT: usize = 2000;

/// Hosts named one by one in a summary line; the rest are counted.
const HOSTS_NAMED: usize = 5;

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
        Trigger::Alert => {
            format!("dep: issues detected on {stage} after {release} went live ({hosts}); the release stays live — deployed by")
        }
        Trigger::Normal => {
            format!("dep: all systems normal on {stage}: {release} watched{took} ({hosts}) — deployed by")
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
        Trigger::Alert => ("E8B400", format!("Issues detected on {}", notice.stage)),
        Trigger::Normal => ("2EB886", format!("All systems normal on {}", notice.stage)),
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

/// `3 hosts: web1, web2, web3`, or `40 hosts: web1, …, web5 and 35 more` (also the live view's).
pub fn hosts_phrase(hosts: &[String]) -> String {
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
pub(super) fn human_duration(duration: Duration) -> String {
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
