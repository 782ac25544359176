//! `.env` files as Laravel's dotenv (vlucas/phpdotenv 5) reads them: parsing (quotes, escapes,
//! multi-line double-quoted values, `${NAME}` references), layering (`.env.example` <
//! `.env.<stage>` < environment), and writing values back so that dotenv reads what was meant.

/// A value as dotenv reads it: literal text and `${NAME}` references, which dotenv replaces as it
/// loads the file (with a variable set above in the file, or in the environment).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Value(Vec<Part>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    Reference(String),
}

impl Value {
    /// A value taken as it is (from the environment): a `${…}` in it is text, not a reference.
    pub fn literal(text: impl Into<String>) -> Value {
        let text = text.into();
        Value(if text.is_empty() {
            Vec::new()
        } else {
            vec![Part::Text(text)]
        })
    }

    pub fn parts(&self) -> &[Part] {
        &self.0
    }

    fn push_text(&mut self, text: &str) {
        match self.0.last_mut() {
            Some(Part::Text(last)) => last.push_str(text),
            _ if text.is_empty() => {}
            _ => self.0.push(Part::Text(text.to_string())),
        }
    }
}

/// A line of a `.env` file that Laravel's dotenv would refuse (it then reads none of the file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} in `{text}` (Laravel's dotenv cannot read it)")]
pub struct ParseError {
    pub line: usize,
    pub reason: &'static str,
    /// The entry's first line.
    pub text: String,
}

/// `KEY=value` entries in file order, as dotenv reads them: comments and blank lines skipped,
/// `export ` and quoted names, single quotes (literal), double quotes (escapes, references,
/// line breaks), unquoted values (references, ending at whitespace or `#`).
pub fn parse(text: &str) -> Result<Vec<(String, Value)>, ParseError> {
    let mut entries = Vec::new();
    for (line, raw) in entries_of(text)? {
        let error = |reason| ParseError {
            line,
            reason,
            text: raw.lines().next().unwrap_or_default().to_string(),
        };
        // A name alone (no `=`) unsets a variable in dotenv: there is nothing to layer.
        let Some((name, value)) = raw.split_once('=') else {
            parse_name(&raw).ok_or_else(|| error("an invalid name"))?;
            continue;
        };
        let name = name.trim_matches(PHP_TRIM);
        if name.is_empty() {
            return Err(error("an unexpected equals"));
        }
        let name = parse_name(name).ok_or_else(|| error("an invalid name"))?;
        let value = parse_value(value.trim_matches(PHP_TRIM)).map_err(error)?;
        entries.push((name, value));
    }
    Ok(entries)
}

/// What PHP's `trim` removes.
const PHP_TRIM: &[char] = &[' ', '\t', '\n', '\r', '\0', '\x0b'];

/// `ctype_space` (and PCRE's `\s`).
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// The file's entries with the line each starts on: lines split at any line break, a
/// double-quoted value left open on its line joined with the lines up to its end (dotenv's
/// `Lines::process`, quirks included), comments and blank lines dropped.
fn entries_of(text: &str) -> Result<Vec<(usize, String)>, ParseError> {
    let lines: Vec<&str> = text
        .split("\r\n")
        .flat_map(|l| l.split(['\n', '\r']))
        .collect();
    let mut entries = Vec::new();
    let mut open: Option<(usize, Vec<&str>)> = None;
    for (index, line) in lines.iter().enumerate() {
        let started = looks_like_multiline_start(line);
        let (first, mut buffer) = match open.take() {
            Some(open) => open,
            None if started => (index + 1, Vec::new()),
            None => {
                push_entry(&mut entries, index + 1, line.to_string());
                continue;
            }
        };
        buffer.push(line);
        if looks_like_multiline_stop(line, started) {
            push_entry(&mut entries, first, buffer.join("\n"));
        } else {
            open = Some((first, buffer));
        }
    }
    // dotenv silently drops a value never closed, and everything after it: refuse it instead.
    match open {
        Some((line, buffer)) => Err(ParseError {
            line,
            reason: "a missing closing quote",
            text: buffer[0].to_string(),
        }),
        None => Ok(entries),
    }
}

fn push_entry(entries: &mut Vec<(usize, String)>, line: usize, text: String) {
    let trimmed = text.trim_matches(PHP_TRIM);
    if !trimmed.is_empty() && !trimmed.starts_with('#') {
        entries.push((line, text));
    }
}

/// A line with `="` whose double quotes do not close on it.
fn looks_like_multiline_start(line: &str) -> bool {
    line.contains("=\"") && !looks_like_multiline_stop(line, true)
}

/// A line that ends a multi-line value: `"` alone, or one with a `"` not after a backslash
/// (two, on the line the value starts), counted after removing `\\` pairs, as dotenv does.
fn looks_like_multiline_stop(line: &str, started: bool) -> bool {
    if line == "\"" {
        return true;
    }
    let line = line.replace("\\\\", "");
    let bytes = line.as_bytes();
    let quotes = bytes
        .windows(2)
        .filter(|pair| pair[0] != b'\\' && pair[1] == b'"')
        .count();
    if started {
        quotes > 1
    } else {
        quotes >= 1
    }
}

/// `export NAME`, `"NAME"`, `'NAME'` or `NAME`, of `[A-Za-z0-9_.]`.
fn parse_name(name: &str) -> Option<String> {
    let mut name = name;
    if name.len() > 8 && name.starts_with("export") && name[6..].starts_with(is_space) {
        name = name[6..].trim_start_matches(PHP_TRIM);
    }
    let quoted = name.len() >= 3
        && ((name.starts_with('"') && name.ends_with('"'))
            || (name.starts_with('\'') && name.ends_with('\'')));
    if quoted {
        name = &name[1..name.len() - 1];
    }
    is_name(name).then(|| name.to_string())
}

fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Initial,
    Unquoted,
    Single,
    Double,
    Escape,
    Whitespace,
    Comment,
}

/// dotenv's value automaton (`EntryParser::parseValue`): the characters read, and where a `$`
/// may start a reference (unquoted or double-quoted, not escaped).
fn parse_value(value: &str) -> Result<Value, &'static str> {
    let mut chars = String::new();
    let mut dollars = Vec::new();
    let mut state = State::Initial;
    for c in value.chars() {
        state = match (state, c) {
            (State::Initial, '\'') => State::Single,
            (State::Initial, '"') => State::Double,
            (State::Initial | State::Unquoted | State::Whitespace, '#') => State::Comment,
            (State::Unquoted, c) if is_space(c) => State::Whitespace,
            (State::Initial | State::Unquoted, c) => {
                if c == '$' {
                    dollars.push(chars.len());
                }
                chars.push(c);
                State::Unquoted
            }
            (State::Single, '\'') | (State::Double, '"') => State::Whitespace,
            (State::Single, c) => {
                chars.push(c);
                State::Single
            }
            (State::Double, '\\') => State::Escape,
            (State::Double, c) => {
                if c == '$' {
                    dollars.push(chars.len());
                }
                chars.push(c);
                State::Double
            }
            (State::Escape, c) => {
                chars.push(match c {
                    '"' | '\\' | '$' => c,
                    'f' => '\x0c',
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'v' => '\x0b',
                    _ => return Err("an unexpected escape sequence"),
                });
                State::Double
            }
            (State::Whitespace, c) if is_space(c) => State::Whitespace,
            (State::Whitespace, _) => return Err("unexpected whitespace"),
            (State::Comment, _) => State::Comment,
        };
    }
    if matches!(state, State::Single | State::Double | State::Escape) {
        return Err("a missing closing quote");
    }
    Ok(references(&chars, &dollars))
}

/// Split the characters read at the `${NAME}` that start at a reference's `$` (dotenv's
/// `Resolver`); any other `$` is text.
fn references(chars: &str, dollars: &[usize]) -> Value {
    let mut value = Value::default();
    let mut done = 0;
    for &at in dollars {
        if at < done {
            continue;
        }
        let Some(name) = chars[at..]
            .strip_prefix("${")
            .and_then(|rest| rest.split_once('}'))
            .map(|(name, _)| name)
            .filter(|name| is_name(name))
        else {
            continue;
        };
        value.push_text(&chars[done..at]);
        value.0.push(Part::Reference(name.to_string()));
        done = at + name.len() + 3;
    }
    value.push_text(&chars[done..]);
    value
}

/// Lay `over` on top of `base`: a key keeps its place and takes the new value; new keys follow.
pub fn layer(base: &mut Vec<(String, Value)>, over: impl IntoIterator<Item = (String, Value)>) {
    for (key, value) in over {
        match base.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => base.push((key, value)),
        }
    }
}

/// Whether dotenv accepts `name` as a variable's name.
pub fn valid_name(name: &str) -> bool {
    is_name(name)
}

/// The file text: one `KEY=value` a line, each value in the form dotenv reads back as it is:
/// bare when it is plain, single-quoted when it can be (nothing in it is special), else
/// double-quoted with escapes; a value with references is double-quoted, references intact.
pub fn render(entries: &[(String, Value)]) -> String {
    let mut text = String::new();
    for (key, value) in entries {
        text.push_str(key);
        text.push('=');
        text.push_str(&quote(key, value));
        text.push('\n');
    }
    text
}

fn quote(key: &str, value: &Value) -> String {
    let literal = match value.parts() {
        [] => Some(""),
        [Part::Text(text)] => Some(text.as_str()),
        _ => None,
    };
    if let Some(text) = literal {
        let plain = text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:@,+%^*~=".contains(&b));
        if plain {
            return text.to_string();
        }
        // Single quotes keep everything but `'` and line breaks; a `="` in them would make
        // dotenv take the line for the start of a multi-line value.
        let single = format!("'{text}'");
        if !text.contains(['\'', '\n', '\r'])
            && !looks_like_multiline_start(&format!("{key}={single}"))
        {
            return single;
        }
    }
    let mut quoted = String::from("\"");
    for part in value.parts() {
        match part {
            Part::Text(text) => quoted.push_str(&escape(text)),
            Part::Reference(name) => quoted.push_str(&format!("${{{name}}}")),
        }
    }
    quoted.push('"');
    quoted
}

/// Text inside double quotes: what dotenv would take for an escape, a reference, the end of the
/// value or of the line is escaped.
pub fn escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('$', "\\$")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Value {
        Value::literal(s)
    }

    fn reference(name: &str) -> Part {
        Part::Reference(name.to_string())
    }

    fn entries(pairs: &[(&str, Value)]) -> Vec<(String, Value)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn parse_layer_render() {
        let example = "# app\nAPP_NAME=Shop\nAPP_ENV=local\nDB_PASSWORD=\nexport MAIL='a b'\nNOTE=\"say \\\"hi\\\"\" \nX=1 # comment\n";
        let mut env = parse(example).unwrap();
        assert_eq!(
            env,
            entries(&[
                ("APP_NAME", text("Shop")),
                ("APP_ENV", text("local")),
                ("DB_PASSWORD", text("")),
                ("MAIL", text("a b")),
                ("NOTE", text("say \"hi\"")),
                ("X", text("1")),
            ])
        );
        layer(
            &mut env,
            parse("APP_ENV=production\nCACHE=redis\n").unwrap(),
        );
        layer(&mut env, [("DB_PASSWORD".to_string(), text("p@ss w0rd$1"))]);
        let written = render(&env);
        assert_eq!(
            written,
            "APP_NAME=Shop\nAPP_ENV=production\nDB_PASSWORD='p@ss w0rd$1'\nMAIL='a b'\nNOTE='say \"hi\"'\nX=1\nCACHE=redis\n"
        );
        // What we write reads back as the same values.
        assert_eq!(parse(&written).unwrap(), env);
    }

    /// Issue 11: a reference stays a reference (double-quoted, as Laravel expands it), and a
    /// literal `${…}` (single-quoted, escaped, or from the environment) stays text.
    #[test]
    fn references_are_kept_as_dotenv_reads_them() {
        let file = "APP_NAME=\"My Shop\"\nVITE_APP_NAME=\"${APP_NAME}\"\nURL=${APP_URL}/api\n\
                    LITERAL='${APP_NAME}'\nESCAPED=\"\\${APP_NAME}\"\nBARE=$HOME\nODD=\"${not-a-name}\"\n\
                    BOTH=\"${A}-${B}x\"\n";
        let env = parse(file).unwrap();
        let value = |key: &str| env.iter().find(|(k, _)| k == key).unwrap().1.clone();
        assert_eq!(value("VITE_APP_NAME").parts(), [reference("APP_NAME")]);
        assert_eq!(
            value("URL").parts(),
            [reference("APP_URL"), Part::Text("/api".into())]
        );
        assert_eq!(value("LITERAL"), text("${APP_NAME}"));
        assert_eq!(value("ESCAPED"), text("${APP_NAME}"));
        assert_eq!(value("BARE"), text("$HOME"));
        assert_eq!(value("ODD"), text("${not-a-name}"));
        assert_eq!(
            value("BOTH").parts(),
            [
                reference("A"),
                Part::Text("-".into()),
                reference("B"),
                Part::Text("x".into())
            ]
        );
        let written = render(&env);
        assert_eq!(
            written,
            "APP_NAME='My Shop'\nVITE_APP_NAME=\"${APP_NAME}\"\nURL=\"${APP_URL}/api\"\n\
             LITERAL='${APP_NAME}'\nESCAPED='${APP_NAME}'\nBARE='$HOME'\nODD='${not-a-name}'\n\
             BOTH=\"${A}-${B}x\"\n"
        );
        assert_eq!(parse(&written).unwrap(), env);
    }

    #[test]
    fn multi_line_double_quoted_values() {
        let file = "KEY=\"-----BEGIN KEY-----\nabc\\\"def\n-----END KEY-----\"\nNEXT=1\n\
                    EMPTY_START=\"\nx\"\nMIXED=\"a ${B}\n$c\"   # note\n";
        let env = parse(file).unwrap();
        assert_eq!(
            env,
            entries(&[
                (
                    "KEY",
                    text("-----BEGIN KEY-----\nabc\"def\n-----END KEY-----")
                ),
                ("NEXT", text("1")),
                ("EMPTY_START", text("\nx")),
                (
                    "MIXED",
                    Value(vec![
                        Part::Text("a ".into()),
                        reference("B"),
                        Part::Text("\n$c".into())
                    ])
                ),
            ])
        );
        let written = render(&env);
        assert_eq!(
            written,
            "KEY=\"-----BEGIN KEY-----\\nabc\\\"def\\n-----END KEY-----\"\nNEXT=1\n\
             EMPTY_START=\"\\nx\"\nMIXED=\"a ${B}\\n\\$c\"\n"
        );
        assert_eq!(parse(&written).unwrap(), env);
        // Single quotes do not span lines in dotenv.
        assert_eq!(
            parse("A='one\ntwo'\n").unwrap_err().to_string(),
            "a missing closing quote in `A='one` (Laravel's dotenv cannot read it)"
        );
    }

    #[test]
    fn what_dotenv_refuses_is_refused_with_its_line() {
        let cases = [
            ("A=1\nB=two words\n", 2, "unexpected whitespace"),
            ("A=\"unterminated\nB=1\n", 1, "a missing closing quote"),
            ("A=1\n\nC=\"\\u00e9\"\n", 3, "an unexpected escape sequence"),
            ("=1\n", 1, "an unexpected equals"),
            ("A-B=1\n", 1, "an invalid name"),
            ("hello world\n", 1, "an invalid name"),
            ("A='x' y\n", 1, "unexpected whitespace"),
        ];
        for (file, line, reason) in cases {
            let error = parse(file).unwrap_err();
            assert_eq!((error.line, error.reason), (line, reason), "{file:?}");
        }
    }

    #[test]
    fn every_value_reads_back_as_written() {
        let values = [
            "",
            "plain",
            "it's $HOME\\x",
            "a=\"b",
            "quote\" and 'single'",
            "tab\there",
            "cr\r\nlf",
            "# not a comment",
            "trailing space ",
            " leading",
            "${NOT_A_REF}",
            "\\$",
            "ünïcode ✓",
            "\"",
        ];
        for value in values {
            let env = vec![("K".to_string(), text(value))];
            let written = render(&env);
            assert_eq!(parse(&written).unwrap(), env, "{value:?} as {written:?}");
            assert_eq!(written.lines().count(), 1, "{written:?}");
        }
    }

    #[test]
    fn names_as_dotenv_takes_them() {
        let env = parse("export AB=1\n\"B\"=2\n'C.D'=3\nexport=4\nE\n").unwrap();
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["AB", "B", "C.D", "export"]);
        // dotenv strips `export ` only from a name longer than 8 characters with it.
        assert_eq!(parse("export A=1\n").unwrap_err().reason, "an invalid name");
    }
}
