//! Dynamic variables (`{ run = "command -v php" }`) evaluated on a host: every variable a step
//! needs whose own inputs are known travels in ONE script, so a host pays one round trip per
//! layer of dependencies, not one per variable. Values are cached on the host's `Vars`.

use crate::config::vars::VarError;
use crate::error::StepFailure;
use crate::transport::script::token;
use crate::transport::Output;

use super::failure;
use super::host_run::HostRun;

/// Variables evaluated together, and those that wait for their values.
#[derive(Default)]
struct Batch {
    ready: Vec<(String, String)>,
    later: Vec<String>,
}

/// The marker byte that starts a control line (as in the step scripts).
const MARK: char = '\u{1e}';

impl HostRun {
    /// Evaluate dynamic variables `names` (in dependency order) on the host, caching each value;
    /// the first that fails, in that order, is the failure of `task`.
    pub async fn evaluate_dynamic(
        &mut self,
        task: &str,
        names: Vec<String>,
    ) -> Result<(), StepFailure> {
        // A dry run evaluates nothing: its templates show dynamic variables as `<name>`.
        if self.backend.is_dry_run() {
            return Ok(());
        }
        let mut remaining = names;
        while !remaining.is_empty() {
            let batch = self
                .next_batch(remaining)
                .map_err(|e| failure::before_running(self.name(), task, e.to_string()))?;
            self.evaluate_batch(task, &batch.ready).await?;
            remaining = batch.later;
        }
        Ok(())
    }

    /// The variables whose commands render now (what they use is evaluated), with their
    /// commands; and those that must wait for them.
    fn next_batch(&self, names: Vec<String>) -> Result<Batch, VarError> {
        let mut batch = Batch::default();
        for name in names {
            let inputs = self.vars.dynamic_needed(&format!("{{{{ {name} }}}}"))?;
            let waits = inputs.iter().any(|input| input != &name);
            if waits {
                batch.later.push(name);
                continue;
            }
            let command = self.vars.dynamic_command(&name)?;
            batch.ready.push((name, command));
        }
        Ok(batch)
    }

    async fn evaluate_batch(
        &mut self,
        task: &str,
        batch: &[(String, String)],
    ) -> Result<(), StepFailure> {
        if let [(name, command)] = batch {
            // One variable: its command as it is, nothing to split.
            let output = self.backend.capture(command).await;
            return self.take(task, name, command, output).map_or(Ok(()), Err);
        }
        let token = token();
        let commands: Vec<&str> = batch.iter().map(|(_, c)| c.as_str()).collect();
        let output = self.backend.capture(&batch_script(&token, &commands)).await;
        let mut parts = split(&token, batch.len(), &output);
        for ((name, command), part) in batch.iter().zip(parts.iter_mut()) {
            let part = part.take().unwrap_or_else(|| Output {
                // The script stopped before this one (the connection): its own output is none.
                status: output.status.filter(|s| *s != 0),
                reason: output.reason.clone(),
                unreachable: output.unreachable,
                ..Output::default()
            });
            if let Some(failure) = self.take(task, name, command, part) {
                return Err(failure);
            }
        }
        Ok(())
    }

    /// Cache one variable's value, or say why it has none.
    fn take(
        &mut self,
        task: &str,
        name: &str,
        command: &str,
        output: Output,
    ) -> Option<StepFailure> {
        if !output.success() {
            let mut failure = failure::of_capture(self.name(), task, command, &output);
            let why = failure
                .reason
                .take()
                .unwrap_or_else(|| format!("exit status {}", output.status.unwrap_or(-1)));
            failure.reason = Some(format!("dynamic variable `{name}` failed: {why}"));
            return Some(failure);
        }
        self.vars.set_dynamic(
            name,
            output.stdout.trim_end_matches(['\n', '\r']).to_string(),
        );
        None
    }
}

/// One script evaluating `commands` in order, each in a subshell with its output captured, each
/// value and stderr between markers; it stops at the first command that fails.
fn batch_script(token: &str, commands: &[&str]) -> String {
    let mut script = String::new();
    for (index, command) in commands.iter().enumerate() {
        script.push_str(&format!(
            "printf '{MARK}%s begin {index}\\n' {token} >&2\n\
             __dep_v=$( {{\n{command}\n}} </dev/null ); __dep_rc=$?\n\
             printf '{MARK}%s begin {index}\\n%s\\n{MARK}%s end {index} %s\\n' {token} \"$__dep_v\" {token} \"$__dep_rc\"\n\
             printf '\\n{MARK}%s end {index}\\n' {token} >&2\n\
             [ \"$__dep_rc\" -eq 0 ] || exit \"$__dep_rc\"\n",
            command = command.trim_end()
        ));
    }
    script
}

/// Each command's own output from the batch's: None for those the script never reached.
fn split(token: &str, count: usize, output: &Output) -> Vec<Option<Output>> {
    (0..count)
        .map(|index| {
            let begin = format!("{MARK}{token} begin {index}\n");
            let end = format!("\n{MARK}{token} end {index} ");
            let stdout = &output.stdout;
            let start = stdout.find(&begin)? + begin.len();
            let stop = start + stdout[start..].find(&end)?;
            let rest = &stdout[stop + end.len()..];
            let status = rest.split_whitespace().next()?.parse().ok()?;
            let stderr = between(
                &output.stderr,
                &begin,
                &format!("\n{MARK}{token} end {index}\n"),
            );
            Some(Output {
                status: Some(status),
                reason: None,
                stdout: stdout[start..stop].to_string(),
                // The end marker starts on a line of its own.
                stderr: stderr.strip_suffix('\n').unwrap_or(stderr).to_string(),
                unreachable: false,
            })
        })
        .collect()
}

/// The text between `begin` and `end` (to the end when `end` is missing), or "".
fn between<'t>(text: &'t str, begin: &str, end: &str) -> &'t str {
    let Some(at) = text.find(begin) else {
        return "";
    };
    let rest = &text[at + begin.len()..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(commands: &[&str]) -> Vec<Option<Output>> {
        let token = "t0k";
        let output = std::process::Command::new("bash")
            .arg("-c")
            .arg(batch_script(token, commands))
            .output()
            .unwrap();
        let output = Output {
            status: output.status.code(),
            reason: None,
            stdout: String::from_utf8(output.stdout).unwrap(),
            stderr: String::from_utf8(output.stderr).unwrap(),
            unreachable: false,
        };
        split(token, commands.len(), &output)
    }

    #[test]
    fn each_value_comes_back_on_its_own_with_its_status() {
        let parts = run(&[
            "command -v bash",
            "printf 'two\\nlines\\n'; echo noise >&2",
            "echo",
        ]);
        let values: Vec<(i32, String, String)> = parts
            .iter()
            .map(|p| {
                let p = p.as_ref().unwrap();
                (p.status.unwrap(), p.stdout.clone(), p.stderr.clone())
            })
            .collect();
        assert_eq!(values[0].0, 0);
        assert!(values[0].1.ends_with("/bash"), "{values:?}");
        assert_eq!(values[1], (0, "two\nlines".into(), "noise".into()));
        assert_eq!(values[2], (0, String::new(), String::new()));
    }

    #[test]
    fn the_first_failure_stops_the_batch_with_its_own_stderr() {
        let parts = run(&["echo ok", "echo why >&2; exit 3", "echo never"]);
        assert_eq!(parts[0].as_ref().unwrap().stdout, "ok");
        let failed = parts[1].as_ref().unwrap();
        assert_eq!(failed.status, Some(3));
        assert_eq!(failed.stderr, "why");
        assert!(parts[2].is_none());
    }

    #[test]
    fn a_command_cannot_read_the_script_or_forge_a_marker() {
        let parts = run(&["cat; echo done", "printf '\\036x begin 1\\nforged\\n'"]);
        assert_eq!(parts[0].as_ref().unwrap().stdout, "done");
        assert_eq!(parts[1].as_ref().unwrap().stdout, "\u{1e}x begin 1\nforged");
    }
}
