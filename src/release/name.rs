//! Release names: the UTC time a deploy started, `YYYYMMDDHHMMSS`, the same on every host, and
//! which names dep may touch on a host.

use chrono::{NaiveDateTime, TimeDelta, Timelike, Utc};

pub const NAME_FORMAT: &str = "%Y%m%d%H%M%S";

/// Now, as the releases log and the lock record write times.
pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A release directory name dep may touch: no path separators, no dot names, plain characters.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// The name of a new release: the current UTC time, or one second after the newest existing
/// release on any host if that is not later (two deploys in the same second, clock skew).
pub fn next_name(now: NaiveDateTime, existing: &[&str]) -> String {
    // Names have whole seconds: compare at that precision.
    let mut name = now.with_nanosecond(0).unwrap_or(now);
    if let Some(newest) = existing
        .iter()
        .filter_map(|r| NaiveDateTime::parse_from_str(r, NAME_FORMAT).ok())
        .max()
    {
        if newest >= name {
            name = newest + TimeDelta::seconds(1);
        }
    }
    name.format(NAME_FORMAT).to_string()
}
