//! `.env` files: parsing, layering (`.env.example` < `.env.<stage>` < environment), and writing
//! values back so that Laravel's dotenv reads exactly what was meant.

/// `KEY=value` pairs in file order. Comments, blank lines and `export ` prefixes are handled;
/// quoted values are unquoted.
pub fn parse(text: &str) -> Vec<(String, String)> {
    let mut entries = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        {
            continue;
        }
        entries.push((key.to_string(), unquote(value.trim())));
    }
    entries
}

fn unquote(value: &str) -> String {
    if value.len() >= 2 && value.starts_with('\'') && value.ends_with('\'') {
        return value[1..value.len() - 1].to_string();
    }
    if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
        let inner = &value[1..value.len() - 1];
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => out.push('\n'),
                    Some(other) => out.push(other),
                    None => out.push('\\'),
                }
            } else {
                out.push(c);
            }
        }
        return out;
    }
    // An unquoted value ends at an inline comment.
    match value.find(" #") {
        Some(at) => value[..at].trim_end().to_string(),
        None => value.to_string(),
    }
}

/// Lay `over` on top of `base`: a key keeps its place and takes the new value; new keys follow.
pub fn layer(base: &mut Vec<(String, String)>, over: impl IntoIterator<Item = (String, String)>) {
    for (key, value) in over {
        match base.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => base.push((key, value)),
        }
    }
}

/// The file text: one `KEY=value` a line; values that need it are quoted (single quotes where
/// possible, since dotenv expands `${…}` inside double quotes).
pub fn render(entries: &[(String, String)]) -> String {
    let mut text = String::new();
    for (key, value) in entries {
        text.push_str(key);
        text.push('=');
        text.push_str(&quote(value));
        text.push('\n');
    }
    text
}

fn quote(value: &str) -> String {
    let plain = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_./:@,+%^*~=".contains(&b));
    if plain {
        value.to_string()
    } else if !value.contains('\'') && !value.contains('\n') {
        format!("'{value}'")
    } else {
        let escaped = value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
            .replace('$', "\\$");
        format!("\"{escaped}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_layer_render() {
        let example = "# app\nAPP_NAME=Shop\nAPP_ENV=local\nDB_PASSWORD=\nexport MAIL='a b'\nNOTE=\"say \\\"hi\\\"\" \nX=1 # comment\n";
        let mut env = parse(example);
        assert_eq!(
            env,
            vec![
                ("APP_NAME".into(), "Shop".into()),
                ("APP_ENV".into(), "local".into()),
                ("DB_PASSWORD".into(), "".into()),
                ("MAIL".into(), "a b".into()),
                ("NOTE".into(), "say \"hi\"".into()),
                ("X".into(), "1".into()),
            ]
        );
        layer(&mut env, parse("APP_ENV=production\nCACHE=redis\n"));
        layer(
            &mut env,
            [("DB_PASSWORD".to_string(), "p@ss w0rd$1".to_string())],
        );
        let text = render(&env);
        assert_eq!(
            text,
            "APP_NAME=Shop\nAPP_ENV=production\nDB_PASSWORD='p@ss w0rd$1'\nMAIL='a b'\nNOTE='say \"hi\"'\nX=1\nCACHE=redis\n"
        );
        // What we write reads back as the same values.
        assert_eq!(parse(&text), env);
        let tricky = vec![("K".to_string(), "it's $HOME\\x".to_string())];
        assert_eq!(parse(&render(&tricky)), tricky);
    }
}
