//! Variables: SPEC's precedence applied to the configuration layers (with figment), and
//! rendering templates against them, with dynamic `{ run = "..." }` variables evaluated per host.

use std::collections::{BTreeMap, HashMap};

use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};
use minijinja::value::Value;

use crate::config::deployfile::RawConfig;
use crate::suggestion::suggest;

/// Why a variable or a template could not be rendered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VarError {
    #[error("undefined variable `{name}`{}", did_you_mean(.suggestion))]
    Undefined {
        name: String,
        /// The closest defined name, when one is close enough to be a likely typo.
        suggestion: Option<String>,
    },
    /// The whole circle, the first name repeated at its end.
    #[error("variables refer to each other in a circle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    #[error("{0}")]
    Template(TemplateError),
    #[error("dynamic variable `{0}` was used before it was evaluated")]
    NotEvaluated(String),
    #[error("`{0}` is not a dynamic variable")]
    NotDynamic(String),
    #[error("cannot merge configuration: {0}")]
    Merge(String),
    /// A rendered value that is not JSON (never seen in practice: values come from TOML).
    #[error("{0}")]
    Json(String),
}

impl VarError {
    /// The name of the undefined variable, when that is what went wrong.
    pub fn undefined_variable(&self) -> Option<&str> {
        match self {
            VarError::Undefined { name, .. } => Some(name),
            _ => None,
        }
    }
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

/// A template minijinja refused: the kind of error, its detail, and the line in the template.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind}{}{}", .detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default(), .line.map(|l| format!(" (template line {l})")).unwrap_or_default())]
pub struct TemplateError {
    pub kind: String,
    pub detail: Option<String>,
    pub line: Option<usize>,
}

impl From<&minijinja::Error> for TemplateError {
    fn from(error: &minijinja::Error) -> TemplateError {
        let kind = match error.kind() {
            minijinja::ErrorKind::SyntaxError => "template syntax error".to_string(),
            minijinja::ErrorKind::UndefinedError => "undefined value".to_string(),
            other => other.to_string(),
        };
        TemplateError {
            kind,
            detail: error.detail().map(str::to_string),
            line: error.line(),
        }
    }
}

pub use crate::error::OverrideError;

/// One layer of configuration, named for `dep config` ("recipe common", "stage production", …).
#[derive(Debug, Clone)]
pub struct Layer {
    pub name: String,
    pub values: RawConfig,
}

impl Layer {
    pub fn new(name: impl Into<String>, values: RawConfig) -> Layer {
        Layer {
            name: name.into(),
            values,
        }
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        figment::providers::Serialized::defaults(&self.values).data()
    }
}

/// The environment layer: every `DEP_NAME=value` becomes variable `name`, as a string. dep's
/// own settings (`DEP_SSH_*`, such as the key passphrase, and `DEP_NOW`) never become variables.
pub fn environment_layer(env: impl IntoIterator<Item = (String, String)>) -> Layer {
    let values = env
        .into_iter()
        .filter(|(key, _)| !key.starts_with("DEP_SSH_") && key != "DEP_NOW")
        .filter_map(|(key, value)| {
            let name = key.strip_prefix("DEP_")?.to_ascii_lowercase();
            (!name.is_empty()).then_some((name, serde_json::Value::String(value)))
        })
        .collect();
    Layer::new("environment (DEP_*)", values)
}

/// The `-o name=value` layer; the value is everything after the first `=`.
pub fn override_layer(overrides: &[String]) -> Result<Layer, OverrideError> {
    let mut values = RawConfig::new();
    for text in overrides {
        let (name, value) = text
            .split_once('=')
            .ok_or_else(|| OverrideError::NoEquals(text.clone()))?;
        if name.trim().is_empty() {
            return Err(OverrideError::EmptyName(text.clone()));
        }
        values.insert(
            name.trim().to_string(),
            serde_json::Value::String(value.to_string()),
        );
    }
    Ok(Layer::new("-o", values))
}

/// A variable's definition after layering.
#[derive(Debug, Clone, PartialEq)]
pub enum Var {
    /// A plain value; strings (also inside lists and tables) are templates.
    Static(serde_json::Value),
    /// `{ run = "command" }`: evaluated on the host on first use, cached per host.
    Dynamic(String),
}

/// The variables of one host, with where each came from, and the values of dynamic ones so far.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    vars: BTreeMap<String, Var>,
    origin: BTreeMap<String, String>,
    dynamic: HashMap<String, String>,
    /// Render dynamic variables not yet evaluated as `<name>` (validation and dry runs).
    placeholders: bool,
}

impl Vars {
    /// Apply precedence: later layers win (SPEC: recipes < [config] < stage < host < env < -o).
    pub fn layered(layers: &[Layer]) -> Result<Vars, VarError> {
        let mut figment = Figment::new();
        for layer in layers {
            figment = figment.merge(layer.clone());
        }
        let merged: BTreeMap<String, serde_json::Value> = figment
            .extract()
            .map_err(|e| VarError::Merge(e.to_string()))?;
        let mut vars = Vars::default();
        for (name, value) in merged {
            let origin = figment
                .find_metadata(&name)
                .map(|m| m.name.to_string())
                .unwrap_or_default();
            vars.origin.insert(name.clone(), origin);
            vars.vars.insert(name, classify(value));
        }
        Ok(vars)
    }

    /// Set a value the engine provides (release_name, host, …), above every layer.
    pub fn set(&mut self, name: &str, value: impl Into<serde_json::Value>) {
        self.vars
            .insert(name.to_string(), Var::Static(value.into()));
        self.origin.insert(name.to_string(), "built-in".to_string());
    }

    pub fn get(&self, name: &str) -> Option<&Var> {
        self.vars.get(name)
    }

    pub fn origin(&self, name: &str) -> &str {
        self.origin.get(name).map(String::as_str).unwrap_or("")
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.vars.keys()
    }

    pub fn set_placeholders(&mut self, on: bool) {
        self.placeholders = on;
    }

    pub fn set_dynamic(&mut self, name: &str, value: String) {
        self.dynamic.insert(name.to_string(), value);
    }

    pub fn dynamic_value(&self, name: &str) -> Option<&str> {
        self.dynamic.get(name).map(String::as_str)
    }

    /// Render `src` (labelled `label` in errors). Dynamic variables it needs must be evaluated
    /// first (see [`Vars::dynamic_needed`]) unless placeholders are on.
    pub fn render(&self, label: &str, src: &str) -> Result<String, VarError> {
        if !is_template(src) {
            return Ok(src.to_string());
        }
        self.render_with(label, src, &mut Vec::new())
    }

    /// Render a variable's value to a string (lists joined by spaces).
    pub fn value_string(&self, name: &str) -> Result<String, VarError> {
        let value = self
            .resolve(name, &mut Vec::new())?
            .ok_or_else(|| self.undefined(name))?;
        Ok(match value.as_str() {
            Some(s) => s.to_string(),
            None => value.to_string(),
        })
    }

    /// Render a variable's value as a JSON value (lists stay lists), for templates and `dep config`.
    pub fn value_json(&self, name: &str) -> Result<serde_json::Value, VarError> {
        let value = self
            .resolve(name, &mut Vec::new())?
            .ok_or_else(|| self.undefined(name))?;
        serde_json::to_value(&value).map_err(|e| VarError::Json(e.to_string()))
    }

    /// The dynamic variables `src` needs that are not evaluated yet, dependencies first.
    pub fn dynamic_needed(&self, src: &str) -> Result<Vec<String>, VarError> {
        let mut needed = Vec::new();
        self.collect_dynamic(src, &mut needed, &mut Vec::new())?;
        Ok(needed)
    }

    /// The command of dynamic variable `name`, rendered.
    pub fn dynamic_command(&self, name: &str) -> Result<String, VarError> {
        match self.vars.get(name) {
            Some(Var::Dynamic(command)) => self.render(&format!("variable `{name}`"), command),
            _ => Err(VarError::NotDynamic(name.to_string())),
        }
    }

    fn collect_dynamic(
        &self,
        src: &str,
        needed: &mut Vec<String>,
        stack: &mut Vec<String>,
    ) -> Result<(), VarError> {
        if !is_template(src) {
            return Ok(());
        }
        for name in undeclared(src)? {
            if stack.contains(&name) {
                return Err(cycle(stack, &name));
            }
            stack.push(name.clone());
            match self.vars.get(&name) {
                Some(Var::Static(value)) => {
                    for text in strings_in(value) {
                        self.collect_dynamic(text, needed, stack)?;
                    }
                }
                Some(Var::Dynamic(command)) => {
                    self.collect_dynamic(command, needed, stack)?;
                    if !self.dynamic.contains_key(&name) && !needed.contains(&name) {
                        needed.push(name.clone());
                    }
                }
                None => {}
            }
            stack.pop();
        }
        Ok(())
    }

    fn render_with(
        &self,
        label: &str,
        src: &str,
        stack: &mut Vec<String>,
    ) -> Result<String, VarError> {
        let env = crate::config::template::environment();
        let template = env
            .template_from_named_str(label, src)
            .map_err(|e| VarError::Template((&e).into()))?;
        let mut context = BTreeMap::new();
        let mut unknown = Vec::new();
        for name in template.undeclared_variables(false) {
            match self.resolve(&name, stack)? {
                Some(value) => {
                    context.insert(name, value);
                }
                None => unknown.push(name),
            }
        }
        template.render(&context).map_err(|e| {
            if e.kind() == minijinja::ErrorKind::UndefinedError && !unknown.is_empty() {
                unknown.sort();
                self.undefined(&unknown[0])
            } else {
                VarError::Template((&e).into())
            }
        })
    }

    fn resolve(&self, name: &str, stack: &mut Vec<String>) -> Result<Option<Value>, VarError> {
        if stack.iter().any(|n| n == name) {
            return Err(cycle(stack, name));
        }
        let Some(var) = self.vars.get(name) else {
            return Ok(None);
        };
        stack.push(name.to_string());
        let value = match var {
            Var::Static(value) => self
                .render_json(name, value, stack)
                .map(|v| Value::from_serialize(&v)),
            Var::Dynamic(_) => match self.dynamic.get(name) {
                Some(value) => Ok(Value::from(value.clone())),
                None if self.placeholders => Ok(Value::from(format!("<{name}>"))),
                None => Err(VarError::NotEvaluated(name.to_string())),
            },
        };
        stack.pop();
        value.map(Some)
    }

    fn render_json(
        &self,
        name: &str,
        value: &serde_json::Value,
        stack: &mut Vec<String>,
    ) -> Result<serde_json::Value, VarError> {
        use serde_json::Value as J;
        Ok(match value {
            J::String(text) if is_template(text) => {
                J::String(self.render_with(&format!("variable `{name}`"), text, stack)?)
            }
            J::Array(items) => J::Array(
                items
                    .iter()
                    .map(|i| self.render_json(name, i, stack))
                    .collect::<Result<_, _>>()?,
            ),
            J::Object(map) => J::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), self.render_json(name, v, stack)?)))
                    .collect::<Result<_, VarError>>()?,
            ),
            other => other.clone(),
        })
    }

    fn undefined(&self, name: &str) -> VarError {
        VarError::Undefined {
            name: name.to_string(),
            suggestion: suggest(name, self.vars.keys().map(String::as_str)).map(str::to_string),
        }
    }
}

fn classify(value: serde_json::Value) -> Var {
    if let serde_json::Value::Object(map) = &value {
        if map.len() == 1 {
            if let Some(serde_json::Value::String(command)) = map.get("run") {
                return Var::Dynamic(command.clone());
            }
        }
    }
    Var::Static(value)
}

fn is_template(src: &str) -> bool {
    src.contains("{{") || src.contains("{%") || src.contains("{#")
}

fn undeclared(src: &str) -> Result<Vec<String>, VarError> {
    let env = crate::config::template::environment();
    let template = env
        .template_from_str(src)
        .map_err(|e| VarError::Template((&e).into()))?;
    let mut names: Vec<String> = template.undeclared_variables(false).into_iter().collect();
    names.sort();
    Ok(names)
}

fn strings_in(value: &serde_json::Value) -> Vec<&str> {
    match value {
        serde_json::Value::String(s) => vec![s.as_str()],
        serde_json::Value::Array(items) => items.iter().flat_map(strings_in).collect(),
        serde_json::Value::Object(map) => map.values().flat_map(strings_in).collect(),
        _ => Vec::new(),
    }
}

/// The circle from `name`'s first place on `stack` back to `name`.
fn cycle(stack: &[String], name: &str) -> VarError {
    let start = stack.iter().position(|n| n == name).unwrap_or(0);
    let mut circle = stack[start..].to_vec();
    circle.push(name.to_string());
    VarError::Cycle(circle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn layer(name: &str, pairs: &[(&str, serde_json::Value)]) -> Layer {
        Layer::new(
            name,
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn precedence_is_recipes_config_stage_host_env_override() {
        let names = [
            "recipe common",
            "Deployfile.toml",
            "stage production",
            "host web1",
            "environment (DEP_*)",
            "-o",
        ];
        // Variable `vN` is set by the first N+1 layers: the last of them must win.
        let layers: Vec<Layer> = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let pairs: Vec<(String, serde_json::Value)> = (i..names.len())
                    .map(|v| (format!("v{v}"), json!(format!("from {name}"))))
                    .collect();
                Layer::new(*name, pairs.into_iter().collect())
            })
            .collect();
        let vars = Vars::layered(&layers).unwrap();
        for (i, name) in names.iter().enumerate() {
            assert_eq!(
                vars.value_string(&format!("v{i}")).unwrap(),
                format!("from {name}")
            );
            assert_eq!(vars.origin(&format!("v{i}")), *name);
        }
    }

    #[test]
    fn overrides_keep_values_with_equals_signs_whole() {
        let layer = override_layer(&["dsn=mysql://u:p@h/db?x=1".into()]).unwrap();
        assert_eq!(layer.values["dsn"], json!("mysql://u:p@h/db?x=1"));
        let errors = [
            ("novalue", "`-o novalue`: expected `name=value`"),
            (" =x", "`-o  =x`: the variable name is empty"),
        ];
        for (text, message) in errors {
            let error = override_layer(&[text.into()]).unwrap_err();
            assert_eq!(error.to_string(), message);
        }
        let layer = override_layer(&[" a =1".into(), "b=".into(), "a=2".into()]).unwrap();
        assert_eq!(layer.values["a"], json!("2"));
        assert_eq!(layer.values["b"], json!(""));
        let env = environment_layer([
            ("DEP_BRANCH".into(), "1.0".into()),
            ("PATH".into(), "/bin".into()),
        ]);
        assert_eq!(env.values.len(), 1);
        assert_eq!(env.values["branch"], json!("1.0"));
    }

    #[test]
    fn templates_resolve_through_other_variables() {
        let vars = Vars::layered(&[layer(
            "c",
            &[
                ("application", json!("shop")),
                ("deploy_path", json!("/var/www/{{ application }}")),
                ("release_path", json!("{{ deploy_path }}/releases/1")),
                ("dirs", json!(["{{ application }}/a", "b"])),
            ],
        )])
        .unwrap();
        assert_eq!(
            vars.render("t", "cd {{ release_path|quote }}").unwrap(),
            "cd /var/www/shop/releases/1"
        );
        assert_eq!(vars.render("t", "{{ dirs|quote }}").unwrap(), "shop/a b");
        let error = vars.render("t", "{{ aplication }}").unwrap_err();
        assert_eq!(
            error.to_string(),
            "undefined variable `aplication` (did you mean `application`?)"
        );
        assert_eq!(error.undefined_variable(), Some("aplication"));
    }

    #[test]
    fn cycles_and_dynamic_variables() {
        let mut vars = Vars::layered(&[layer(
            "c",
            &[
                ("a", json!("{{ b }}")),
                ("b", json!("{{ a }}")),
                ("bin_php", json!({"run": "command -v {{ php_name }}"})),
                ("php_name", json!("php")),
                ("artisan", json!("{{ bin_php }} artisan")),
            ],
        )])
        .unwrap();
        let error = vars.render("t", "{{ a }}").unwrap_err();
        assert_eq!(
            error.to_string(),
            "variables refer to each other in a circle: a -> b -> a"
        );
        assert_eq!(error.undefined_variable(), None);
        assert_eq!(
            vars.dynamic_needed("{{ artisan }} migrate").unwrap(),
            vec!["bin_php"]
        );
        assert_eq!(vars.dynamic_command("bin_php").unwrap(), "command -v php");
        vars.set_dynamic("bin_php", "/usr/bin/php".into());
        assert!(vars.dynamic_needed("{{ artisan }}").unwrap().is_empty());
        assert_eq!(
            vars.render("t", "{{ artisan }} migrate").unwrap(),
            "/usr/bin/php artisan migrate"
        );
    }
}
