//! Aligned text tables (releases, hosts, config, the deploy summary).

/// Rows as columns padded to the widest cell, two spaces apart, each line prefixed by `indent`.
pub fn render<const N: usize>(rows: &[[String; N]], indent: &str) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::from(indent);
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < N {
                line.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_align_and_trailing_space_is_trimmed() {
        let rows = [
            ["HOST", "RESULT"].map(String::from),
            ["web10", ""].map(String::from),
        ];
        assert_eq!(super::render(&rows, "  "), "  HOST   RESULT\n  web10\n");
    }
}
