//! POSIX shell quoting: the one place where a value becomes a shell word.

/// Quote `value` so that a POSIX shell reads it back as exactly one word with the same bytes.
///
/// Plain words (letters, digits and `-_./:=@,+%^`) are left as they are so that commands stay
/// readable in `--dry-run` and `-v`; everything else is wrapped in single quotes, with each
/// single quote written as `'\''`.
pub fn quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,+%^".contains(&b));
    if plain {
        return value.to_string();
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for c in value.chars() {
        if c == '\'' {
            quoted.push_str("'\\''");
        } else {
            quoted.push(c);
        }
    }
    quoted.push('\'');
    quoted
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quoting_table() {
        let cases = [
            ("main", "main"),
            ("", "''"),
            ("feature/x-1.2", "feature/x-1.2"),
            ("a b", "'a b'"),
            ("it's", "'it'\\''s'"),
            ("$(rm -rf /)", "'$(rm -rf /)'"),
            ("`id`;echo", "'`id`;echo'"),
            ("a\nb", "'a\nb'"),
            ("~root", "'~root'"),
            ("*", "'*'"),
        ];
        for (input, expected) in cases {
            assert_eq!(quote(input), expected, "quote({input:?})");
        }
    }

    #[test]
    fn shell_reads_back_the_same_bytes() {
        for input in [
            "a b",
            "it's",
            "$(id) `id` ;|&<>",
            "tab\there",
            "new\nline",
            "'",
            "\\",
        ] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", quote(input)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), input);
        }
    }
}
