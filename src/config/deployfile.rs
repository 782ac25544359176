//! The raw shape of a Deployfile or recipe file, as written: parsed strictly, pointed errors.
//!
//! These types stay at the edge: `project` turns them into resolved hosts, tasks and variables.

use std::fmt::{self, Display, Formatter};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;

use crate::error::{Error, Result};

/// Variables as written: any TOML value; a table `{ run = "..." }` is a dynamic variable.
pub type RawConfig = IndexMap<String, serde_json::Value>;

/// One Deployfile or recipe file. Recipes and the Deployfile share this shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    #[serde(default)]
    pub import: Vec<String>,
    #[serde(default)]
    pub config: RawConfig,
    /// Names of environment variables whose values are masked in every output.
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default)]
    pub hosts: IndexMap<String, RawHost>,
    #[serde(default)]
    pub stages: IndexMap<String, RawStage>,
    #[serde(default)]
    pub tasks: IndexMap<String, RawTask>,
    /// Health checks for every stage.
    #[serde(default)]
    pub health: Vec<RawHealth>,
    /// Webhooks told about deploys and rollbacks.
    #[serde(default)]
    pub notify: Vec<RawNotify>,
    /// The watch window after the switch, for every stage.
    pub watch: Option<RawWatch>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHost {
    pub hostname: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_file: Option<String>,
    pub known_hosts_file: Option<String>,
    pub host_key_check: Option<HostKeyCheck>,
    pub stage: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    /// Run this host's commands on this machine, without SSH.
    #[serde(default)]
    pub local: bool,
    /// The host's color in a blue-green stage (hosts without one route traffic).
    pub color: Option<Color>,
    #[serde(default)]
    pub config: RawConfig,
}

/// One half of a blue-green stage: the live one takes the traffic, the other is idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Color {
    Blue,
    Green,
}

impl Color {
    pub fn name(self) -> &'static str {
        match self {
            Color::Blue => "blue",
            Color::Green => "green",
        }
    }

    /// The other color.
    pub fn other(self) -> Color {
        match self {
            Color::Blue => Color::Green,
            Color::Green => Color::Blue,
        }
    }

    /// A color's name as `.dep/live_color` holds it (surrounding blanks ignored).
    pub fn parse(text: &str) -> Option<Color> {
        match text.trim() {
            "blue" => Some(Color::Blue),
            "green" => Some(Color::Green),
            _ => None,
        }
    }
}

impl Display for Color {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a stage's hosts go through the deploy (`--rolling N` and `--canary` still choose).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyName {
    #[default]
    All,
    Rolling,
    Canary,
    BlueGreen,
}

impl StrategyName {
    pub const NAMES: [&'static str; 4] = ["all", "rolling", "canary", "blue-green"];

    pub fn name(self) -> &'static str {
        match self {
            StrategyName::All => "all",
            StrategyName::Rolling => "rolling",
            StrategyName::Canary => "canary",
            StrategyName::BlueGreen => "blue-green",
        }
    }

    pub fn from_name(name: &str) -> Option<StrategyName> {
        [
            StrategyName::All,
            StrategyName::Rolling,
            StrategyName::Canary,
            StrategyName::BlueGreen,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyCheck {
    #[default]
    Strict,
    AcceptNew,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStage {
    #[serde(default)]
    pub config: RawConfig,
    /// Health checks for this stage only (in addition to the global ones).
    #[serde(default)]
    pub health: Vec<RawHealth>,
    /// Deploy this stage in batches of this many hosts (like `--rolling N`).
    pub rolling: Option<usize>,
    /// `"all"`, `"rolling"`, `"canary"` or `"blue-green"`.
    pub strategy: Option<StrategyName>,
    /// This stage's watch window: its duration and interval replace the global ones, its
    /// probes are added to them.
    pub watch: Option<RawWatch>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTask {
    pub desc: Option<String>,
    pub run: Option<OneOrMany>,
    pub steps: Option<Vec<String>>,
    pub upload: Option<RawUpload>,
    pub template: Option<RawTemplate>,
    /// A step of the release lifecycle implemented natively (built-in recipes only).
    pub builtin: Option<String>,
    #[serde(default)]
    pub once: bool,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub local: bool,
    pub cwd: Option<String>,
    #[serde(default)]
    pub env: IndexMap<String, String>,
    pub timeout: Option<RawDuration>,
    #[serde(default)]
    pub retries: u32,
    #[serde(rename = "if")]
    pub condition: Option<String>,
    #[serde(default)]
    pub barrier: bool,
    pub before: Option<OneOrMany>,
    pub after: Option<OneOrMany>,
    pub on_failure: Option<OnFailure>,
    /// Check what the task prints (`"migrations"`: a `migrate --pretend` run's SQL).
    pub check_output: Option<OutputCheck>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpload {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTemplate {
    pub src: String,
    pub dest: String,
    pub mode: Option<String>,
}

/// A duration as seconds (`30`) or with a unit (`"30s"`, `"5m"`, `"1h"`, `"500ms"`), checked as
/// it is read, so that a bad one is an error pointed at with file:line:col.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawDuration(pub Duration);

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RawDuration;

            fn expecting(&self, f: &mut Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a duration such as \"30s\", \"5m\" or \"250ms\", or a number of seconds",
                )
            }

            fn visit_u64<E: serde::de::Error>(self, seconds: u64) -> Result<RawDuration, E> {
                parse_duration(&seconds.to_string())
                    .map(RawDuration)
                    .map_err(E::custom)
            }

            fn visit_i64<E: serde::de::Error>(self, seconds: i64) -> Result<RawDuration, E> {
                match u64::try_from(seconds) {
                    Ok(seconds) => self.visit_u64(seconds),
                    Err(_) => Err(E::custom(DurationError::Invalid(seconds.to_string()))),
                }
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<RawDuration, E> {
                parse_duration(text).map(RawDuration).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// The longest duration dep takes (about 11 years): longer ones are typos, and would overflow
/// the clock arithmetic of timeouts.
pub const MAX_DURATION: Duration = Duration::from_secs(MAX_HOURS * 3600);
const MAX_HOURS: u64 = 100_000;

/// A duration that is neither seconds nor a number with a unit, or that is too long.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("`{0}` is not a duration (e.g. \"30s\", \"5m\")")]
    Invalid(String),
    #[error("`{0}` is too long a duration (at most {MAX_HOURS}h)")]
    TooLong(String),
}

/// `"30s"`, `"30"` (seconds), `"5m"`, `"1h"`, `"250ms"`, `"1.5s"`; at most [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| DurationError::Invalid(text.to_string()))?;
    let seconds = match unit.trim() {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(DurationError::Invalid(text.to_string())),
    };
    // `try_`: `Duration::from_secs_f64` panics on what does not fit.
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|duration| *duration <= MAX_DURATION)
        .ok_or_else(|| DurationError::TooLong(text.to_string()))
}

/// What dep checks in a task's output (`check_output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputCheck {
    /// The output of `migrate --pretend`: a destructive statement fails the task.
    Migrations,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    Abort,
    Continue,
}

/// `[[health]]` (or `[[stages.NAME.health]]`) as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub name: Option<String>,
    pub http: Option<String>,
    pub command: Option<String>,
    pub expect_status: Option<u16>,
    pub expect_body: Option<String>,
    pub max_latency_ms: Option<u64>,
    pub attempts: Option<u32>,
    pub interval: Option<RawDuration>,
    pub timeout: Option<RawDuration>,
    pub phase: Option<Phase>,
    #[serde(default)]
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Against the new release, before the switch: a failure stops the deploy, nothing switches.
    PreSwitch,
    /// After the switch and the post-switch tasks: a failure rolls every host back.
    #[default]
    PostSwitch,
}

/// `[watch]` (or `[stages.NAME.watch]`) as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWatch {
    pub duration: Option<RawDuration>,
    pub interval: Option<RawDuration>,
    #[serde(default)]
    pub probe: Vec<RawProbe>,
}

/// One `[[watch.probe]]` as written; checked as it is read (exactly one of `http`, `command`,
/// `metric`), so that a bad one is pointed at with file:line:col.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawProbeFields")]
pub struct RawProbe {
    pub name: Option<String>,
    pub http: Option<String>,
    pub method: Option<String>,
    pub command: Option<String>,
    pub metric: Option<Metric>,
    pub critical: bool,
    pub max_error_rate: Option<RawRate>,
    pub max_p95_ms: Option<u64>,
    pub max_value: Option<f64>,
    pub timeout: Option<RawDuration>,
    pub roles: Vec<String>,
}

/// `RawProbe`'s fields before the check.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbeFields {
    pub name: Option<String>,
    pub http: Option<String>,
    pub method: Option<String>,
    pub command: Option<String>,
    pub metric: Option<Metric>,
    #[serde(default)]
    pub critical: bool,
    pub max_error_rate: Option<RawRate>,
    pub max_p95_ms: Option<u64>,
    pub max_value: Option<f64>,
    pub timeout: Option<RawDuration>,
    #[serde(default)]
    pub roles: Vec<String>,
}

impl TryFrom<RawProbeFields> for RawProbe {
    type Error = String;

    fn try_from(raw: RawProbeFields) -> Result<RawProbe, String> {
        let sources = [
            raw.http.is_some(),
            raw.command.is_some(),
            raw.metric.is_some(),
        ];
        let named = raw
            .name
            .as_deref()
            .map_or(String::new(), |n| format!(" `{n}`"));
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err(format!(
                "watch probe{named} needs exactly one of `http`, `command` or `metric`"
            ));
        }
        if raw.method.is_some() && raw.http.is_none() {
            return Err(format!(
                "watch probe{named}: `method` goes with `http` only"
            ));
        }
        if raw.max_p95_ms.is_some() && raw.metric.is_some() {
            return Err(format!(
                "watch probe{named}: a metric has `max_value`, not `max_p95_ms`"
            ));
        }
        if let Some(method) = &raw.method {
            let known = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
            if !known.contains(&method.to_ascii_uppercase().as_str()) {
                return Err(format!(
                    "watch probe{named}: `method` must be one of {}, not `{method}`",
                    known.join(", ")
                ));
            }
        }
        if raw.max_value.is_some_and(|v| !v.is_finite()) {
            return Err(format!("watch probe{named}: `max_value` must be a number"));
        }
        Ok(RawProbe {
            name: raw.name,
            http: raw.http,
            method: raw.method,
            command: raw.command,
            metric: raw.metric,
            critical: raw.critical,
            max_error_rate: raw.max_error_rate,
            max_p95_ms: raw.max_p95_ms,
            max_value: raw.max_value,
            timeout: raw.timeout,
            roles: raw.roles,
        })
    }
}

/// A host figure dep reads itself (from /proc and df), without an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// CPU busy, in percent, over a quarter of a second.
    Cpu,
    /// Memory in use (not available), in percent.
    Memory,
    /// The one-minute load average.
    Load,
    /// Disk in use on the deploy path's filesystem, in percent.
    Disk,
}

/// A share written as a percentage: `"1%"`, `"0.5%"`; checked as it is read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawRate(pub f64);

impl<'de> Deserialize<'de> for RawRate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RawRate;

            fn expecting(&self, f: &mut Formatter<'_>) -> fmt::Result {
                f.write_str("a percentage such as \"1%\"")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<RawRate, E> {
                parse_rate(text).map(RawRate).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// `"1%"` as the share 0.01; between 0% and 100%.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let invalid = || format!("`{text}` is not a percentage (e.g. \"1%\", \"0.5%\")");
    let number = text.trim().strip_suffix('%').ok_or_else(invalid)?;
    let percent: f64 = number.trim().parse().map_err(|_| invalid())?;
    if !(0.0..=100.0).contains(&percent) {
        return Err(format!("`{text}` is not between 0% and 100%"));
    }
    Ok(percent / 100.0)
}

/// One `[[notify]]` table as written in the Deployfile.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    /// The URL, a template: `"{{ slack_webhook }}"` reads `DEP_SLACK_WEBHOOK` from the environment.
    pub webhook: String,
    /// The payload format; `json` when absent.
    #[serde(default)]
    pub kind: Kind,
    /// The events this hook hears about; every trigger when absent.
    #[serde(default = "all_triggers")]
    pub on: Vec<Trigger>,
    /// Seconds one POST may take; 5 when absent.
    pub timeout: Option<u64>,
}

/// The payload format a webhook expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Slack incoming webhook (also Mattermost and Rocket.Chat): `{"text": …}`.
    Slack,
    /// Microsoft Teams connector: a MessageCard.
    Teams,
    /// A plain JSON object with an `event` field, like `--json` output.
    #[default]
    Json,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Slack => "slack",
            Kind::Teams => "teams",
            Kind::Json => "json",
        }
    }
}

impl Display for Kind {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The moments of a deploy that can be notified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// The deploy began (after the lock was taken).
    Start,
    /// The new release is live everywhere and healthy.
    Success,
    /// The deploy failed before going live; nothing switched.
    Failure,
    /// A release was rolled back: after a failed health check, or by `dep rollback`.
    Rollback,
    /// The watch window kept the release, but a performance threshold was breached.
    Alert,
    /// The watch window saw every probe within its thresholds.
    Normal,
}

impl Trigger {
    pub const ALL: [Trigger; 6] = [
        Trigger::Start,
        Trigger::Success,
        Trigger::Failure,
        Trigger::Rollback,
        Trigger::Alert,
        Trigger::Normal,
    ];

    /// The `event` field of the JSON payload, named like SPEC's `--json` events.
    pub fn event(self) -> &'static str {
        match self {
            Trigger::Start => "deploy_started",
            Trigger::Success => "deploy_succeeded",
            Trigger::Failure => "deploy_failed",
            Trigger::Rollback => "deploy_rolled_back",
            Trigger::Alert => "watch_alert",
            Trigger::Normal => "watch_normal",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Trigger::Start => "start",
            Trigger::Success => "success",
            Trigger::Failure => "failure",
            Trigger::Rollback => "rollback",
            Trigger::Alert => "alert",
            Trigger::Normal => "normal",
        }
    }
}

impl Display for Trigger {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn all_triggers() -> Vec<Trigger> {
    Trigger::ALL.to_vec()
}

/// Parse `text` (read from `path`) strictly; errors point at file:line:col with the line and carets.
pub fn parse(path: &Path, text: &str) -> Result<RawFile> {
    toml::from_str(text).map_err(|error| {
        let (line, column, snippet) = match error.span() {
            Some(span) => pointed_snippet(text, span),
            None => (1, 1, String::new()),
        };
        Error::Toml {
            path: path.to_path_buf(),
            line,
            column,
            message: error.message().trim().to_string(),
            snippet,
        }
    })
}

/// Line and column (1-based) of `span.start`, and the source line in a gutter with carets.
pub fn pointed_snippet(text: &str, span: std::ops::Range<usize>) -> (usize, usize, String) {
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line = text[..start].matches('\n').count() + 1;
    let column = text[line_start..start].chars().count() + 1;
    let source_line = &text[line_start..line_end];
    let width = text[start..span.end.min(line_end).max(start)]
        .chars()
        .count()
        .max(1);
    let gutter = " ".repeat(line.to_string().len());
    let snippet = format!(
        "{gutter} |\n{line} | {source_line}\n{gutter} | {}{}",
        " ".repeat(column - 1),
        "^".repeat(width)
    );
    (line, column, snippet)
}

/// The names in a top-level `secrets = ["A", "B"]` of a Deployfile that may not parse: its
/// error must not show their values either (the snippet under it quotes the file).
pub fn secret_names_in(text: &str) -> Vec<String> {
    // Top level only: before the first table header.
    let top = text
        .lines()
        .take_while(|l| !l.trim_start().starts_with('['));
    let mut list = String::new();
    let mut inside = false;
    for line in top {
        if !inside {
            let Some(rest) = line.trim_start().strip_prefix("secrets") else {
                continue;
            };
            let Some(value) = rest.trim_start().strip_prefix('=') else {
                continue;
            };
            let Some(items) = value.trim_start().strip_prefix('[') else {
                return Vec::new();
            };
            inside = true;
            list.push_str(items);
        } else {
            list.push_str(line);
        }
        list.push('\n');
        if list.contains(']') {
            break;
        }
    }
    let list = list.split(']').next().unwrap_or_default();
    list.split(',')
        .map(|item| item.trim().trim_matches(|c| c == '"' || c == '\''))
        .filter(|name| !name.is_empty() && !name.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The Deployfile's name, looked for in a directory.
pub const FILE_NAME: &str = "Deployfile.toml";

/// Find `Deployfile.toml` in `start` or its parents.
pub fn find(start: &Path) -> Result<PathBuf> {
    let mut dir = Some(start);
    while let Some(current) = dir {
        let candidate = current.join(FILE_NAME);
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = current.parent();
    }
    Err(Error::DeployfileNotFound(start.to_path_buf()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn secret_names_are_read_from_a_file_that_does_not_parse() {
        use super::secret_names_in;
        assert_eq!(
            secret_names_in("secrets = [\"DB_PASSWORD\", \"MAIL_PASSWORD\"]\n[config\n"),
            ["DB_PASSWORD", "MAIL_PASSWORD"]
        );
        assert_eq!(
            secret_names_in(
                "import = [\"laravel\"]\nsecrets = [\n  \"A\",\n  \"B\",\n]\nx = \"C\"\n"
            ),
            ["A", "B"]
        );
        assert!(secret_names_in("[config]\nsecretsauce = 1\n").is_empty());
        assert_eq!(secret_names_in("secrets = ['A', \"B\"]\n"), ["A", "B"]);
        // Only the top level's: not a table's key, not a value that is no list.
        assert!(secret_names_in("[config]\nsecrets = [\"X\"]\n").is_empty());
        assert!(secret_names_in("secrets = \"A\"\n[hosts.x]\n").is_empty());
    }

    use super::*;

    #[test]
    fn syntax_error_points_at_line_and_column() {
        let text = "[config]\napplication = \"x\"\ndeploy_path = /var/www\n";
        let error = parse(Path::new("Deployfile.toml"), text).unwrap_err();
        let Error::Toml {
            line,
            column,
            snippet,
            ..
        } = error
        else {
            panic!("{error}")
        };
        assert_eq!((line, column), (3, 15));
        assert!(snippet.contains("3 | deploy_path = /var/www"), "{snippet}");
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_place() {
        let text = "[hosts.web1]\nhostname = \"a\"\nrole = [\"web\"]\n";
        let error = parse(Path::new("Deployfile.toml"), text).unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("Deployfile.toml:3:1: unknown field `role`"),
            "{message}"
        );
    }

    #[test]
    fn durations() {
        let cases: &[(&str, Option<Duration>)] = &[
            ("30s", Some(Duration::from_secs(30))),
            ("30", Some(Duration::from_secs(30))),
            (" 5m ", Some(Duration::from_secs(300))),
            ("1h", Some(Duration::from_secs(3600))),
            ("250ms", Some(Duration::from_millis(250))),
            ("1.5s", Some(Duration::from_millis(1500))),
            ("100000h", Some(MAX_DURATION)),
            ("soon", None),
            ("5d", None),
            ("", None),
            ("-5s", None),
            ("100001h", None),
            ("99999999999999999999h", None),
            (&"9".repeat(400), None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text).ok(), *expected, "{text:?}");
        }
        assert_eq!(
            parse_duration("5d").unwrap_err().to_string(),
            "`5d` is not a duration (e.g. \"30s\", \"5m\")"
        );
        assert_eq!(
            parse_duration("99999999999999999999h")
                .unwrap_err()
                .to_string(),
            "`99999999999999999999h` is too long a duration (at most 100000h)"
        );
    }

    #[test]
    fn a_bad_duration_is_pointed_at() {
        let cases = [
            (
                "timeout = \"99999999999999999999h\"",
                "3:11: `99999999999999999999h` is too long a duration (at most 100000h)",
            ),
            (
                "timeout = 360000001",
                "3:11: `360000001` is too long a duration (at most 100000h)",
            ),
            ("timeout = -1", "3:11: `-1` is not a duration"),
            (
                "timeout = true",
                "3:11: invalid type: boolean `true`, expected a duration",
            ),
        ];
        for (line, expected) in cases {
            let text = format!("[tasks.t]\nrun = \"true\"\n{line}\n");
            let message = parse(Path::new("D.toml"), &text).unwrap_err().to_string();
            assert!(
                message.starts_with(&format!("D.toml:{expected}")),
                "{message}"
            );
        }
        let text = "[tasks.t]\nrun = \"true\"\ntimeout = \"90s\"\n";
        let file = parse(Path::new("D.toml"), text).unwrap();
        assert_eq!(
            file.tasks["t"].timeout,
            Some(RawDuration(Duration::from_secs(90)))
        );
    }
}
