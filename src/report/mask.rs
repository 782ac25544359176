//! Secret masking, in one place: every line any format prints passes through [`Mask`], so no
//! output path can forget a secret.

/// The secrets to hide, in every form they can take in output, longest first.
#[derive(Debug, Clone, Default)]
pub struct Mask {
    secrets: Vec<String>,
}

impl Mask {
    /// A mask for `secrets` (values shorter than 3 characters are not masked: they would hide
    /// ordinary text).
    pub fn new(secrets: Vec<String>) -> Mask {
        // A secret reaches output as written, or escaped on its way into a shell command or a
        // .env file: mask every form it can take.
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .filter(|s| s.len() >= 3)
            .flat_map(|s| secret_forms(&s))
            .collect();
        secrets.sort();
        secrets.dedup();
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Mask { secrets }
    }

    /// `text` with every secret replaced by `****`.
    pub fn text(&self, text: &str) -> String {
        let mut masked = text.to_string();
        for secret in &self.secrets {
            if masked.contains(secret.as_str()) {
                masked = masked.replace(secret.as_str(), "****");
            }
        }
        masked
    }

    /// Every string inside `value` masked, before JSON escaping could hide a secret from the mask.
    pub fn json(&self, value: serde_json::Value) -> serde_json::Value {
        use serde_json::Value as J;
        match value {
            J::String(s) => J::String(self.text(&s)),
            J::Array(items) => J::Array(items.into_iter().map(|v| self.json(v)).collect()),
            J::Object(map) => J::Object(map.into_iter().map(|(k, v)| (k, self.json(v))).collect()),
            other => other,
        }
    }
}

/// The forms a secret takes in output: raw, inside single shell quotes, escaped for a
/// double-quoted .env value, that escaped form inside single shell quotes, and encoded in a
/// GitHub annotation.
fn secret_forms(secret: &str) -> Vec<String> {
    let shell = |s: &str| s.replace('\'', "'\\''");
    // As `config::dotenv::escape` writes it.
    let dotenv = secret
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('$', "\\$")
        .replace('\n', "\\n")
        .replace('\r', "\\r");
    let github = super::ci::escape_data(secret);
    vec![
        secret.to_string(),
        shell(secret),
        shell(&dotenv),
        dotenv,
        github,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_longest_first() {
        let mask = Mask::new(vec![
            "hunter2".into(),
            "hunter2-extended".into(),
            "x".into(),
        ]);
        assert_eq!(
            mask.text("pw=hunter2-extended and hunter2 x"),
            "pw=**** and **** x"
        );
        // Escaped on the way into a shell command or a .env file, it is still masked.
        let mask = Mask::new(vec!["it's $HOME".into()]);
        let shown = format!("printf %s {}", crate::quote::quote("P=\"it's \\$HOME\"\n"));
        assert_eq!(mask.text(&shown), "printf %s 'P=\"****\"\n'");
        assert_eq!(mask.text("X='it'\\''s $HOME'"), "X='****'");
        // Encoded in a GitHub annotation too.
        let mask = Mask::new(vec!["50%\noff".into()]);
        assert_eq!(
            mask.text("::error title=t::x%0A50%25%0Aoff"),
            "::error title=t::x%0A****"
        );
    }

    #[test]
    fn json_is_masked_value_by_value() {
        let mask = Mask::new(vec!["a\"b".into()]);
        let value = serde_json::json!({"line": "pw a\"b", "list": ["a\"b"], "n": 1});
        assert_eq!(
            mask.json(value).to_string(),
            r#"{"line":"pw ****","list":["****"],"n":1}"#
        );
    }
}
