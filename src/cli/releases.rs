//! `dep releases`: each host's releases, marking current and previous, as a table or JSON lines.

use crate::cli::Session;
use crate::error::Result;
use crate::release::HostState;

pub async fn releases(session: Session<'_>, selector: Option<String>, json: bool) -> Result<()> {
    let reporter = session.reporter;
    let mut engine = session.engine(selector.as_deref())?;
    engine.read_states().await?;
    let mut out = String::new();
    // Blue-green: the color the routers send the traffic to.
    let live = engine.hosts().iter().find_map(|h| h.state.live_color);
    if let Some(color) = live {
        out.push_str(&format!("live color: {color}\n"));
    }
    for host in engine.hosts() {
        if json {
            // One object per host and line: its links and its releases, newest first.
            let statuses = host.state.statuses();
            let releases: Vec<serde_json::Value> = host
                .state
                .releases
                .iter()
                .rev()
                .map(|release| {
                    let entry = statuses.get(release.as_str());
                    serde_json::json!({
                        "release": release,
                        "status": entry.map(|e| e.status.as_str()),
                        "revision": entry.and_then(|e| e.revision.clone()),
                        "user": entry.map(|e| e.user.clone()),
                        "finished_at": entry.and_then(|e| e.finished_at.clone()),
                        "sha256": entry.and_then(|e| e.sha256.clone()),
                        "promoted_from": entry.and_then(|e| e.promoted_from.clone()),
                    })
                })
                .collect();
            let line = serde_json::json!({
                "host": host.host.name,
                "deploy_path": host.deploy_path,
                "current": host.state.current,
                "previous": host.state.previous,
                "color": host.host.color.map(|c| c.name()),
                "live_color": host.state.live_color.map(|c| c.name()),
                "releases": releases,
            });
            out.push_str(&format!("{line}\n"));
            continue;
        }
        out.push_str(&format!("{} ({})", host.host.name, host.deploy_path));
        match (host.host.color, host.state.live_color) {
            (Some(color), _) => {
                let live = match live {
                    Some(live) if live == color => "live",
                    Some(_) => "standby",
                    None => "idle",
                };
                out.push_str(&format!(" {color}, {live}\n"));
                out.push_str(&releases_table(&host.state));
            }
            // A router: no releases of its own, only where it sends the traffic.
            (None, Some(color)) => out.push_str(&format!(" routes traffic to {color}\n")),
            (None, None) => {
                out.push('\n');
                out.push_str(&releases_table(&host.state));
            }
        }
    }
    print!("{}", reporter.mask(&out));
    Ok(())
}

/// The releases of one host as an aligned table, newest first.
pub fn releases_table(state: &HostState) -> String {
    if state.releases.is_empty() {
        return "  (no releases)\n".to_string();
    }
    let statuses = state.statuses();
    let mut rows = vec![["RELEASE", "STATUS", "REVISION", "WHO", "WHEN", ""].map(String::from)];
    for release in state.releases.iter().rev() {
        let entry = statuses.get(release.as_str());
        let mark = if state.current.as_deref() == Some(release) {
            "current"
        } else if state.previous.as_deref() == Some(release) {
            "previous"
        } else {
            ""
        };
        rows.push([
            release.clone(),
            entry.map_or("unknown", |e| e.status.as_str()).to_string(),
            entry
                .and_then(|e| e.revision.clone())
                .map(|r| r.chars().take(10).collect())
                .unwrap_or_default(),
            entry.map(|e| e.user.clone()).unwrap_or_default(),
            entry
                .map(|e| {
                    e.finished_at
                        .clone()
                        .unwrap_or_else(|| e.started_at.clone())
                })
                .unwrap_or_default(),
            mark.to_string(),
        ]);
    }
    crate::report::table::render(&rows, "  ")
}
