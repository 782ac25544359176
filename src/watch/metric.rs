//! The host metrics a probe reads without an agent: CPU and memory from /proc, the load
//! average, the deploy path's disk; each a short POSIX shell command that prints one number.

use crate::quote::quote;

use super::Metric;

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::Cpu => "cpu",
            Metric::Memory => "memory",
            Metric::Load => "load",
            Metric::Disk => "disk",
        }
    }

    /// The limit a metric probe has when it names no `max_value` (the load average depends on
    /// the number of cores: none).
    pub fn default_max(self) -> Option<f64> {
        match self {
            Metric::Cpu => Some(80.0),
            Metric::Memory | Metric::Disk => Some(90.0),
            Metric::Load => None,
        }
    }

    /// The command that prints the metric's value on a Linux host.
    pub fn command(self, deploy_path: &str) -> String {
        match self {
            // Busy share of the jiffies of a quarter of a second: (user nice system irq softirq
            // steal) against those plus (idle iowait).
            Metric::Cpu => concat!(
                "read -r _ u n s i w q sq st _ < /proc/stat; sleep 0.25; ",
                "read -r _ u2 n2 s2 i2 w2 q2 sq2 st2 _ < /proc/stat; ",
                "busy=$(( (u2+n2+s2+q2+sq2+st2) - (u+n+s+q+sq+st) )); idle=$(( (i2+w2) - (i+w) )); ",
                "awk -v b=\"$busy\" -v i=\"$idle\" 'BEGIN { t = b + i; printf \"%.1f\\n\", (t > 0 ? 100 * b / t : 0) }'"
            )
            .to_string(),
            Metric::Memory => concat!(
                "awk '/^MemTotal:/ { t = $2 } /^MemAvailable:/ { a = $2 } ",
                "END { if (t > 0) printf \"%.1f\\n\", 100 * (t - a) / t; else exit 1 }' /proc/meminfo"
            )
            .to_string(),
            Metric::Load => "cut -d ' ' -f 1 /proc/loadavg".to_string(),
            Metric::Disk => format!(
                "df -P {} | awk 'NR == 2 {{ sub(\"%\", \"\", $5); print $5 }}'",
                quote(deploy_path)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_prints_a_number_here() {
        let dir = std::env::temp_dir().display().to_string();
        for metric in [Metric::Cpu, Metric::Memory, Metric::Load, Metric::Disk] {
            let output = std::process::Command::new("sh")
                .arg("-c")
                .arg(metric.command(&dir))
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&output.stdout);
            let value: f64 = text
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("{}: {text:?}", metric.name()));
            assert!(value >= 0.0, "{}: {value}", metric.name());
            if metric != Metric::Load {
                assert!(value <= 100.0, "{}: {value}", metric.name());
            }
        }
    }
}
