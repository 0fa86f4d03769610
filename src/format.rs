//! Human output helpers: sizes, counts, durations, plain tables.

use std::time::Duration;

const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];

/// Formats a byte count with binary multiples and one decimal: `0 B`, `512 B`,
/// `1.5 KB`, `40.0 GB`. Values past 1024 TB stay in TB.
pub fn bytes(n: u64) -> String {
    bytes_with_precision(n, 1)
}

/// Like [`bytes`] with `precision` decimals (whole bytes never get decimals).
pub fn bytes_with_precision(n: u64, precision: usize) -> String {
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    // Rounding can carry into the next unit (1023.96 KB -> "1024.0 KB").
    let rounded = format!("{value:.precision$}");
    if rounded.parse::<f64>().unwrap_or(value) >= 1024.0 && unit < UNITS.len() - 1 {
        return format!("{:.precision$} {}", value / 1024.0, UNITS[unit + 1]);
    }
    format!("{rounded} {}", UNITS[unit])
}

/// Signed sizes (e.g. a change in size).
pub fn bytes_signed(n: i64) -> String {
    if n < 0 {
        format!("-{}", bytes(n.unsigned_abs()))
    } else {
        bytes(n as u64)
    }
}

/// `1234567` -> `1,234,567`.
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `950 ms`, `12.3 s`, `4m 05s`, `2h 03m`.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms} ms");
    }
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        return format!("{secs:.1} s");
    }
    let s = d.as_secs();
    if s < 3600 {
        return format!("{}m {:02}s", s / 60, s % 60);
    }
    format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
}

/// How log lines are written on stderr (`--log-format`, `STRATA_LOG_FORMAT`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human lines; coloured only on a terminal and without `NO_COLOR`.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Whether stderr output may carry ANSI colours: only on a terminal, and
/// never when `NO_COLOR` is set to anything but the empty string
/// (<https://no-color.org>).
pub fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// The width tables must fit: `COLUMNS` when set, else the terminal's when
/// stdout is one; `None` (no limit) when piped, so scripts get every character.
pub fn output_width() -> Option<usize> {
    use std::io::IsTerminal;
    if let Some(n) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
    {
        return Some(n).filter(|n| *n > 0);
    }
    if !std::io::stdout().is_terminal() {
        return None;
    }
    console::Term::stdout()
        .size_checked()
        .map(|(_rows, cols)| usize::from(cols))
}

/// Narrowest a text column is cut to when fitting a table.
const MIN_CUT_WIDTH: usize = 12;
const COLUMN_GAP: usize = 2;

/// A plain left/right-aligned text table, fitted to [`output_width`].
/// Columns whose header starts with `>` are right-aligned (the `>` is not
/// printed).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    table_within(headers, rows, output_width())
}

/// Column widths within `limit`: the widest text (left-aligned) columns are
/// cut first, never below their header or [`MIN_CUT_WIDTH`]; numbers
/// (right-aligned) are never cut. A table that cannot fit stays as narrow
/// as those floors allow.
fn fit(widths: &mut [usize], headers: &[&str], right: &[bool], limit: usize) {
    let total = |w: &[usize]| w.iter().sum::<usize>() + COLUMN_GAP * w.len().saturating_sub(1);
    while total(widths) > limit {
        let floor = |i: usize| headers[i].chars().count().max(MIN_CUT_WIDTH);
        let Some(i) = (0..widths.len())
            .filter(|&i| !right[i] && widths[i] > floor(i))
            .max_by_key(|&i| widths[i])
        else {
            return;
        };
        let excess = total(widths) - limit;
        widths[i] = widths[i].saturating_sub(excess).max(floor(i));
    }
}

/// `cell` cut to `width` characters, ending in `…` when cut.
fn cut(cell: &str, width: usize) -> std::borrow::Cow<'_, str> {
    if cell.chars().count() <= width {
        return cell.into();
    }
    let kept: String = cell.chars().take(width.saturating_sub(1)).collect();
    format!("{kept}…").into()
}

/// [`table`] for a given width (`None`: no limit).
pub fn table_within(headers: &[&str], rows: &[Vec<String>], limit: Option<usize>) -> String {
    let right: Vec<bool> = headers.iter().map(|h| h.starts_with('>')).collect();
    let headers: Vec<&str> = headers.iter().map(|h| h.trim_start_matches('>')).collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    if let Some(limit) = limit {
        fit(&mut widths, &headers, &right, limit);
    }
    let line = |cells: Vec<&str>| -> String {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let c = cut(c, widths[i]);
                let pad = widths[i].saturating_sub(c.chars().count());
                if right[i] {
                    format!("{}{c}", " ".repeat(pad))
                } else {
                    format!("{c}{}", " ".repeat(pad))
                }
            })
            .collect();
        parts.join(&" ".repeat(COLUMN_GAP)).trim_end().to_string()
    };
    let mut out = line(headers.clone());
    out.push('\n');
    let rules: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&line(rules.iter().map(String::as_str).collect()));
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(|s| s.as_str()).collect()));
    }
    out
}

/// Text as one POSIX shell word: left bare when it holds only characters no
/// shell treats specially, else single-quoted.
pub fn shell_word(text: &str) -> String {
    let bare = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:@,".contains(c));
    if bare {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_and_small_sizes_are_whole_bytes() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1), "1 B");
        assert_eq!(bytes(1023), "1023 B");
    }

    #[test]
    fn each_unit() {
        assert_eq!(bytes(1024), "1.0 KB");
        assert_eq!(bytes(1536), "1.5 KB");
        assert_eq!(bytes(5 * 1024 * 1024), "5.0 MB");
        assert_eq!(bytes(40 * 1024 * 1024 * 1024), "40.0 GB");
        assert_eq!(bytes(3 * 1024u64.pow(4)), "3.0 TB");
        assert_eq!(bytes(5000 * 1024u64.pow(4)), "5000.0 TB");
    }

    #[test]
    fn precision_and_rounding_carry() {
        assert_eq!(bytes_with_precision(1536, 2), "1.50 KB");
        assert_eq!(bytes_with_precision(480 * 1024u64.pow(3), 2), "480.00 GB");
        assert_eq!(bytes_with_precision(1234567, 0), "1 MB");
        // 1048575 bytes is 1023.999 KB: it must not print as "1024.0 KB".
        assert_eq!(bytes(1048575), "1.0 MB");
    }

    #[test]
    fn signed_sizes() {
        assert_eq!(bytes_signed(-2048), "-2.0 KB");
        assert_eq!(bytes_signed(10), "10 B");
    }

    #[test]
    fn counts_get_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1234567), "1,234,567");
    }

    #[test]
    fn durations_pick_a_unit() {
        assert_eq!(duration(Duration::from_millis(950)), "950 ms");
        assert_eq!(duration(Duration::from_millis(12_340)), "12.3 s");
        assert_eq!(duration(Duration::from_secs(245)), "4m 05s");
        assert_eq!(duration(Duration::from_secs(7380)), "2h 03m");
    }

    #[test]
    fn tables_align() {
        let t = table(
            &["name", ">rows"],
            &[
                vec!["a".into(), "1".into()],
                vec!["bbb".into(), "1,000".into()],
            ],
        );
        assert_eq!(t, "name   rows\n----  -----\na         1\nbbb   1,000");
    }

    #[test]
    fn tables_fit_the_width_by_cutting_text_not_numbers() {
        let long = "SELECT * FROM audit_logs WHERE user_id = $1 AND created_at >= $2 ORDER BY created_at DESC";
        let rows = vec![vec![long.to_string(), "1,234,567".into(), "x".into()]];
        let headers = ["query", ">calls", "note"];
        let wide = table_within(&headers, &rows, None);
        assert!(wide.contains(long), "no limit keeps everything: {wide}");
        let narrow = table_within(&headers, &rows, Some(40));
        for line in narrow.lines() {
            assert!(line.chars().count() <= 40, "{line:?} in\n{narrow}");
        }
        assert!(narrow.contains("1,234,567"), "{narrow}");
        assert!(narrow.contains("SELECT * FROM audit_lo…"), "{narrow}");
        // Too narrow to fit: text stops at its floor, numbers stay whole.
        let tiny = table_within(&headers, &rows, Some(5));
        assert!(
            tiny.contains("1,234,567") && tiny.contains("SELECT * FR…"),
            "{tiny}"
        );
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(super::shell_word("/srv/app/.strata"), "/srv/app/.strata");
        assert_eq!(super::shell_word("/my dir/x"), "'/my dir/x'");
        assert_eq!(super::shell_word("it's"), "'it'\\''s'");
        assert_eq!(super::shell_word("$(rm -rf ~)"), "'$(rm -rf ~)'");
        assert_eq!(super::shell_word(""), "''");
    }
}
