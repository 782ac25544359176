//! The task compiler: validates every task, wires hooks, expands groups into the flat list of
//! steps a run executes, and reports unknown names ("did you mean") and cycles (the whole circle).

pub mod task;

use std::collections::HashMap;
use std::sync::Arc;

use indexmap::IndexMap;

use crate::config::project::Project;
use crate::error::{Error, Result};
use crate::plan::task::{Action, Builtin, Task};
use crate::suggestion::suggest;

/// All tasks of a project, validated, with hooks indexed by the task they attach to.
#[derive(Debug)]
pub struct TaskSet {
    tasks: IndexMap<String, Arc<Task>>,
    before: HashMap<String, Vec<String>>,
    after: HashMap<String, Vec<String>>,
}

impl TaskSet {
    pub fn compile(project: &Project) -> Result<TaskSet> {
        let mut tasks = IndexMap::new();
        for (name, source) in &project.tasks {
            tasks.insert(name.clone(), Arc::new(Task::from_source(name, source)?));
        }
        let mut before: HashMap<String, Vec<String>> = HashMap::new();
        let mut after: HashMap<String, Vec<String>> = HashMap::new();
        let mut set = TaskSet {
            tasks,
            before: HashMap::new(),
            after: HashMap::new(),
        };
        for task in set.tasks.values() {
            for (targets, index) in [(&task.before, &mut before), (&task.after, &mut after)] {
                for target in targets {
                    if !set.tasks.contains_key(target) {
                        return Err(set.unknown(target, Some(task)));
                    }
                    index
                        .entry(target.clone())
                        .or_default()
                        .push(task.name.clone());
                }
            }
            if let Action::Steps(steps) = &task.action {
                for step in steps {
                    if !set.tasks.contains_key(step) {
                        return Err(set.unknown(step, Some(task)));
                    }
                }
            }
        }
        set.before = before;
        set.after = after;
        // Expanding every task finds every cycle before anything runs.
        for name in set.tasks.keys() {
            set.expand(name)?;
        }
        Ok(set)
    }

    pub fn get(&self, name: &str) -> Result<&Arc<Task>> {
        self.tasks.get(name).ok_or_else(|| self.unknown(name, None))
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<Task>> {
        self.tasks.values()
    }

    pub fn hooks_before(&self, name: &str) -> &[String] {
        self.before.get(name).map(Vec::as_slice).unwrap_or_default()
    }

    pub fn hooks_after(&self, name: &str) -> &[String] {
        self.after.get(name).map(Vec::as_slice).unwrap_or_default()
    }

    /// The leaf tasks `name` runs, in order: before-hooks, the task (a group's steps), after-hooks.
    pub fn expand(&self, name: &str) -> Result<Vec<Arc<Task>>> {
        let mut steps = Vec::new();
        self.expand_into(name, &mut Vec::new(), &mut steps)?;
        Ok(steps)
    }

    fn expand_into(
        &self,
        name: &str,
        stack: &mut Vec<String>,
        out: &mut Vec<Arc<Task>>,
    ) -> Result<()> {
        if let Some(start) = stack.iter().position(|n| n == name) {
            let mut circle = stack[start..].to_vec();
            circle.push(name.to_string());
            return Err(Error::TaskCycle(circle));
        }
        let task = self.get(name)?.clone();
        stack.push(name.to_string());
        for hook in self.hooks_before(name) {
            self.expand_into(hook, stack, out)?;
        }
        match &task.action {
            Action::Steps(steps) => {
                for step in steps {
                    self.expand_into(step, stack, out)?;
                }
            }
            _ => out.push(task.clone()),
        }
        for hook in self.hooks_after(name) {
            self.expand_into(hook, stack, out)?;
        }
        stack.pop();
        Ok(())
    }

    /// The tasks that follow the switch in a deploy (up to the unlock), such as php-fpm reloads:
    /// re-run after a rollback.
    pub fn post_switch(&self) -> Result<Vec<Arc<Task>>> {
        let deploy = self.expand("deploy")?;
        let Some(switch) = deploy
            .iter()
            .position(|t| t.action == Action::Builtin(Builtin::Symlink))
        else {
            return Ok(Vec::new());
        };
        Ok(deploy[switch + 1..]
            .iter()
            .take_while(|t| {
                !matches!(
                    t.action,
                    Action::Builtin(Builtin::Unlock | Builtin::Cleanup)
                )
            })
            // Host-side work only: a local task (a tag, a notification) belongs to the deploy.
            .filter(|t| !matches!(t.action, Action::Builtin(_)) && !t.local)
            .cloned()
            .collect())
    }

    /// `dep tree`: the task with its hooks and steps, drawn as a tree.
    pub fn tree(&self, name: &str) -> Result<String> {
        self.get(name)?;
        let mut out = String::new();
        self.draw(name, "", "", &mut out);
        Ok(out)
    }

    fn draw(&self, name: &str, prefix: &str, label: &str, out: &mut String) {
        let Some(task) = self.tasks.get(name) else {
            return;
        };
        let mut marks = Vec::new();
        if task.once {
            marks.push("once");
        }
        if task.local {
            marks.push("local");
        }
        if task.barrier {
            marks.push("barrier");
        }
        let marks = if marks.is_empty() {
            String::new()
        } else {
            format!(" [{}]", marks.join(", "))
        };
        out.push_str(&format!("{label}{name}{marks}\n"));
        let mut children: Vec<(String, &str)> = Vec::new();
        for hook in self.hooks_before(name) {
            children.push((hook.clone(), "before: "));
        }
        if let Action::Steps(steps) = &task.action {
            for step in steps {
                children.push((step.clone(), ""));
            }
        }
        for hook in self.hooks_after(name) {
            children.push((hook.clone(), "after: "));
        }
        let count = children.len();
        for (i, (child, kind)) in children.into_iter().enumerate() {
            let last = i + 1 == count;
            let branch = if last { "└── " } else { "├── " };
            let next = format!("{prefix}{}", if last { "    " } else { "│   " });
            let mut line = String::new();
            line.push_str(prefix);
            line.push_str(branch);
            line.push_str(kind);
            self.draw(&child, &next, &line, out);
        }
    }

    fn unknown(&self, name: &str, referenced_by: Option<&Task>) -> Error {
        Error::UnknownTask {
            name: name.to_string(),
            referenced_by: referenced_by.map(|t| (t.name.clone(), t.file.clone())),
            suggestion: suggest(name, self.tasks.keys().map(String::as_str)).map(str::to_string),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The task set of a Deployfile with these `[tasks]` (the `common` recipe comes too). A task's
    /// `before = "x"` runs it before `x`.
    fn compile(tasks: &str) -> Result<TaskSet> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Deployfile.toml");
        std::fs::write(&path, tasks).unwrap();
        TaskSet::compile(&Project::load(&path)?)
    }

    const TASKS: &str = r#"
[tasks.build]
run = "make"
[tasks.lint]
run = "make lint"
before = "build"
[tasks.ship]
steps = ["build", "upload"]
[tasks.upload]
run = "rsync"
once = true
[tasks.announce]
run = "curl"
local = true
after = "ship"
"#;

    #[test]
    fn expansion_runs_hooks_around_steps() {
        let set = compile(TASKS).unwrap();
        let cases: &[(&str, &[&str])] = &[
            ("build", &["lint", "build"]),
            ("lint", &["lint"]),
            ("upload", &["upload"]),
            ("ship", &["lint", "build", "upload", "announce"]),
        ];
        for (name, expected) in cases {
            let names: Vec<String> = set
                .expand(name)
                .unwrap()
                .iter()
                .map(|t| t.name.clone())
                .collect();
            assert_eq!(names, *expected, "expand({name})");
        }
        assert_eq!(set.hooks_before("build"), ["lint"]);
        assert_eq!(set.hooks_after("ship"), ["announce"]);
        assert!(set.hooks_before("ship").is_empty());
    }

    #[test]
    fn tree_draws_steps_hooks_and_marks() {
        let set = compile(TASKS).unwrap();
        assert_eq!(
            set.tree("ship").unwrap(),
            "ship\n\
             ├── build\n\
             │   └── before: lint\n\
             ├── upload [once]\n\
             └── after: announce [local]\n"
        );
    }

    #[test]
    fn unknown_names_and_cycles_are_reported_whole() {
        let cases: &[(&str, &str)] = &[
            (
                "[tasks.a]\nsteps = [\"b\"]\n[tasks.b]\nsteps = [\"a\"]\n",
                "tasks form a cycle: a -> b -> a",
            ),
            (
                "[tasks.a]\nrun = \"x\"\nbefore = \"a\"\n",
                "tasks form a cycle: a -> a",
            ),
            (
                "[tasks.build]\nrun = \"make\"\n[tasks.all]\nsteps = [\"buidl\"]\n",
                "unknown task `buidl` (referenced by task `all` in {file})\n  did you mean `build`?",
            ),
        ];
        for (tasks, expected) in cases {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("Deployfile.toml");
            std::fs::write(&path, tasks).unwrap();
            let error = Project::load(&path)
                .and_then(|p| TaskSet::compile(&p))
                .unwrap_err();
            let expected = expected.replace("{file}", &path.display().to_string());
            assert_eq!(error.to_string(), expected);
        }
        let set = compile(TASKS).unwrap();
        assert_eq!(
            set.get("shipp").unwrap_err().to_string(),
            "unknown task `shipp`\n  did you mean `ship`?"
        );
    }
}
