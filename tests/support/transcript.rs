//! The one place that says what in dep's output cannot be pinned, and how a transcript is
//! normalised before it is compared whole (`project::Run::stdout` / `stderr`):
//!
//! 1. **Temporary paths.** The project directory (as given and canonicalised) reads `[PROJECT]`.
//! 2. **Measured durations.** A number followed by `ms`, `s` or `m` (`12ms`, `0.3s`, `1.24s`,
//!    `2m`), where it stands alone (after a space, `(` or line start, before a space, `)`, `,`,
//!    `:` or line end), reads `[TIME]`. Spaces after it are kept or trimmed so that the next
//!    column of a table stays where it was (the width of the cell is kept, at least one space).
//!    So a pinned duration in a message (`timed out after 1s`) reads `[TIME]` too: state it in
//!    the test's own assertion on the raw output when it matters. A range (`1.8s–2.2s`, hosts
//!    that share a summary row) reads `[TIME]` as well: whether its ends differ is timing too.
//! 3. **Host interleaving.** Hosts run concurrently, so within each run of consecutive lines
//!    prefixed `[host] `, lines are ordered by host, each host's own lines keeping their order.
//!    Lines without a prefix (headers, the summary table, errors) keep their place.
//!
//! Everything else is pinned by the test: the release name through `DEP_NOW`, the hosts'
//! names, the Deployfile.

use std::path::Path;

/// `text` with the project directory, measured durations and host interleaving normalised.
pub fn normalize(text: &str, project: &Path) -> String {
    let mut text = text.to_string();
    let canonical = std::fs::canonicalize(project).unwrap_or_else(|_| project.to_path_buf());
    for dir in [canonical.as_path(), project] {
        text = text.replace(&dir.display().to_string(), "[PROJECT]");
    }
    let lines: Vec<String> = text.split_inclusive('\n').map(durations).collect();
    order_hosts(lines).concat()
}

/// One line with every duration replaced by `[TIME]`, keeping the width of table cells.
fn durations(line: &str) -> String {
    let bytes = line.as_bytes();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < bytes.len() {
        let starts = i == 0 || matches!(bytes[i - 1], b' ' | b'(');
        if starts && bytes[i].is_ascii_digit() {
            if let Some(end) = duration_end(bytes, i) {
                let mut spaces = 0;
                while bytes.get(end + spaces) == Some(&b' ') {
                    spaces += 1;
                }
                // Only a cell followed by two or more spaces is padded (a table column).
                let width = line[i..end].chars().count() + spaces;
                out.push_str("[TIME]");
                let pad = if spaces >= 2 {
                    width.saturating_sub("[TIME]".len()).max(1)
                } else {
                    spaces
                };
                out.push_str(&" ".repeat(pad));
                i = end + spaces;
                continue;
            }
        }
        let c = line[i..].chars().next().expect("inside the line");
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// Where the duration (or range of durations) starting at `start` ends (exclusive), if one
/// starts there.
fn duration_end(bytes: &[u8], start: usize) -> Option<usize> {
    let end = unit_end(bytes, start)?;
    let dash = "–".as_bytes();
    if bytes[end..].starts_with(dash) {
        if let Some(range_end) = unit_end(bytes, end + dash.len()).filter(|&e| ends_cell(bytes, e))
        {
            return Some(range_end);
        }
    }
    ends_cell(bytes, end).then_some(end)
}

/// Whether a duration ending at `end` stands alone there.
fn ends_cell(bytes: &[u8], end: usize) -> bool {
    matches!(
        bytes.get(end),
        None | Some(b' ' | b')' | b',' | b':' | b'\n' | b'\r')
    )
}

/// Where the number and unit starting at `start` end, if they do.
fn unit_end(bytes: &[u8], start: usize) -> Option<usize> {
    if !bytes.get(start).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let mut i = start;
    while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
        i += 1;
    }
    let unit = if bytes[i..].starts_with(b"ms") {
        2
    } else if bytes[i..].starts_with(b"s") || bytes[i..].starts_with(b"m") {
        1
    } else {
        return None;
    };
    Some(i + unit)
}

/// The host of a `[host] ...` line.
fn host_of(line: &str) -> Option<&str> {
    let rest = line.strip_prefix('[')?;
    let (host, _) = rest.split_once("] ")?;
    (!host.is_empty() && !host.contains(' ')).then_some(host)
}

/// Each run of consecutive host lines, stably ordered by host.
fn order_hosts(lines: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(lines.len());
    let mut run: Vec<String> = Vec::new();
    for line in lines {
        if host_of(&line).is_some() {
            run.push(line);
            continue;
        }
        run.sort_by(|a, b| host_of(a).cmp(&host_of(b)));
        out.append(&mut run);
        out.push(line);
    }
    run.sort_by(|a, b| host_of(a).cmp(&host_of(b)));
    out.append(&mut run);
    out
}

#[test]
fn durations_are_replaced_and_table_cells_keep_their_width() {
    let dir = Path::new("/nonexistent/dep-test-x");
    assert_eq!(
        normalize(
            "[h2] ✓ b (1ms)\n[h1] ✓ a (0.31s)\n[h2] ✓ c (12ms)\ndone after 54ms: ok\n\
             h1    live  24ms      deploy:lock (11ms)\nin /nonexistent/dep-test-x/hosts\n",
            dir
        ),
        "[h1] ✓ a ([TIME])\n[h2] ✓ b ([TIME])\n[h2] ✓ c ([TIME])\ndone after [TIME]: ok\n\
         h1    live  [TIME]    deploy:lock ([TIME])\nin [PROJECT]/hosts\n"
    );
    assert_eq!(
        normalize(
            "5 hosts  live  1.8s–2.24s  h3 build (1s)\nh4       live  12ms        b\n",
            dir
        ),
        "5 hosts  live  [TIME]      h3 build ([TIME])\nh4       live  [TIME]      b\n"
    );
}

#[test]
fn words_and_release_names_are_not_durations() {
    let dir = Path::new("/nonexistent");
    let text = "release 20250101100000 on 2 hosts: h1, h2 (3 steps)\nv2s 5xs\n";
    assert_eq!(normalize(text, dir), text);
}
