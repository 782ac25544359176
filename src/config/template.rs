//! The minijinja environment: strict undefined, the `quote` and `relpath` filters.

use minijinja::value::{Value, ValueKind};
use minijinja::{Environment, ErrorKind, UndefinedBehavior};

/// A template environment with dep's filters. Undefined variables are errors, never empty.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    // `{% for %}` and `{% if %}` lines leave no blank lines behind in rendered commands.
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.add_filter("quote", quote_filter);
    env.add_filter("relpath", relpath_filter);
    env
}

/// `{{ value|quote }}`: a POSIX-shell-quoted word; a list becomes quoted words joined by spaces.
fn quote_filter(value: Value) -> Result<String, minijinja::Error> {
    match value.kind() {
        ValueKind::Undefined => Err(minijinja::Error::new(
            ErrorKind::UndefinedError,
            "cannot quote an undefined value",
        )),
        ValueKind::None => Ok("''".to_string()),
        ValueKind::Seq => {
            let mut words = Vec::new();
            for item in value.try_iter()? {
                words.push(crate::quote::quote(&scalar(&item)));
            }
            Ok(words.join(" "))
        }
        _ => Ok(crate::quote::quote(&scalar(&value))),
    }
}

/// `{{ dir|relpath }}`: a path inside the release; absolute paths and `..` are refused, so a
/// shared or writable entry can never reach outside the deploy path.
fn relpath_filter(value: String) -> Result<String, minijinja::Error> {
    let trimmed = value.trim_end_matches('/');
    let bad = trimmed.is_empty()
        || trimmed.starts_with('/')
        || trimmed
            .split('/')
            .any(|part| part == ".." || part == "." || part.is_empty());
    if bad {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("`{value}` must be a relative path inside the release, without `..`"),
        ));
    }
    Ok(trimmed.to_string())
}

fn scalar(value: &Value) -> String {
    match value.as_str() {
        Some(s) => s.to_string(),
        None => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        let env = environment();
        let render = |src: &str, ctx: Value| env.render_str(src, ctx);
        let ctx = Value::from_serialize(serde_json::json!({
            "branch": "x; rm -rf /", "dirs": ["a b", "c"], "n": 5, "up": "../etc"
        }));
        assert_eq!(
            render("git checkout {{ branch|quote }}", ctx.clone()).unwrap(),
            "git checkout 'x; rm -rf /'"
        );
        assert_eq!(render("{{ dirs|quote }}", ctx.clone()).unwrap(), "'a b' c");
        assert_eq!(render("{{ n|quote }}", ctx.clone()).unwrap(), "5");
        assert!(render("{{ up|relpath }}", ctx.clone()).is_err());
        assert!(render("{{ missing }}", ctx).is_err());
    }
}
