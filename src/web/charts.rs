//! Charts as inline SVG, drawn on the server: no script, no external
//! library. Colours come from classes in `app.css` (the CSP allows no
//! inline style); each mark has a `<title>` for its exact figures and each
//! chart an accessible name.

use crate::html;

use super::html::Html;

/// Where a partition sits in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    Past,
    Current,
    /// Made ahead of time (premake).
    Ahead,
    Default,
}

impl Period {
    fn class(self) -> &'static str {
        match self {
            Period::Past => "past",
            Period::Current => "current",
            Period::Ahead => "ahead",
            Period::Default => "default",
        }
    }
}

/// One column of a timeline.
#[derive(Clone, Debug)]
pub struct Column {
    pub label: String,
    pub rows: i64,
    pub bytes: i64,
    pub period: Period,
    /// The previous partition does not end where this one starts.
    pub gap_before: bool,
    /// Hot / sealed / archived, when those exist.
    pub tier: Option<String>,
}

const HEIGHT: f64 = 160.0;
const HALF: f64 = 70.0;
const STEP: f64 = 14.0;
const BAR: f64 = 10.0;

fn scale(v: i64, max: i64) -> f64 {
    if v <= 0 || max <= 0 {
        return 0.0;
    }
    // Square root, so small months stay visible beside a huge one.
    ((v as f64).sqrt() / (max as f64).sqrt() * (HALF - 2.0)).max(1.5)
}

/// Rows (up) and bytes (down) per partition, in time order, with the
/// current period marked, premade ones hatched, gaps flagged and the
/// default partition last.
pub fn timeline(table: &str, columns: &[Column]) -> Html {
    let max_rows = columns.iter().map(|c| c.rows).max().unwrap_or(0);
    let max_bytes = columns.iter().map(|c| c.bytes).max().unwrap_or(0);
    let width = (columns.len() as f64 * STEP + 20.0).max(200.0);
    let mid = HALF + 10.0;
    let mut h = Html::new();
    html!(
        h,
        "<svg class=\"chart timeline\" role=\"img\" viewBox=\"0 0 {} {}\" width=\"{}\" height=\"{}\" \
         aria-label=\"Timeline of {}: {} partitions, rows above the line and bytes below\">",
        width,
        HEIGHT,
        width,
        HEIGHT,
        table,
        columns.len()
    );
    html!(
        h,
        "<line class=\"axis\" x1=\"0\" y1=\"{}\" x2=\"{}\" y2=\"{}\"></line>",
        mid,
        width,
        mid
    );
    for (i, c) in columns.iter().enumerate() {
        let x = 10.0 + i as f64 * STEP;
        let r = scale(c.rows, max_rows);
        let b = scale(c.bytes, max_bytes);
        let tier = c.tier.as_deref().unwrap_or("hot");
        html!(
            h,
            "<g class=\"col {} tier-{}\"><title>{}: {} rows, {} ({}{})</title>",
            c.period.class(),
            tier,
            c.label,
            crate::format::count(c.rows.max(0) as u64),
            crate::format::bytes(c.bytes.max(0) as u64),
            c.period.class(),
            if c.tier.is_some() {
                format!(", {tier}")
            } else {
                String::new()
            }
        );
        html!(
            h,
            "<rect class=\"slot\" x=\"{}\" y=\"10\" width=\"{}\" height=\"{}\"></rect>",
            x,
            BAR,
            2.0 * HALF
        );
        html!(
            h,
            "<rect class=\"rows\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"></rect>",
            x,
            format!("{:.1}", mid - r),
            BAR,
            format!("{r:.1}")
        );
        html!(
            h,
            "<rect class=\"bytes\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"></rect>",
            x,
            mid,
            BAR,
            format!("{b:.1}")
        );
        if c.gap_before {
            html!(
                h,
                "<line class=\"gap\" x1=\"{}\" y1=\"4\" x2=\"{}\" y2=\"{}\"></line>",
                x - 2.0,
                x - 2.0,
                HEIGHT - 4.0
            );
        }
        if tier != "hot" {
            // A strip along the top: sealed and archived periods stand out
            // without hiding the rows and bytes below.
            html!(
                h,
                "<rect class=\"tier\" x=\"{}\" y=\"2\" width=\"{}\" height=\"5\"></rect>",
                x,
                BAR
            );
        }
        if c.period == Period::Current {
            html!(
                h,
                "<path class=\"now\" d=\"M{} {} l4 -6 l-8 0 z\"></path>",
                x + BAR / 2.0 + 4.0 - 4.0,
                HEIGHT - 2.0
            );
        }
        html!(h, "</g>");
    }
    html!(h, "</svg>");
    h
}

/// A bar per item (growth per period, events per bucket).
pub fn bars(name: &str, items: &[(String, f64)], unit: fn(f64) -> String) -> Html {
    let max = items.iter().map(|(_, v)| *v).fold(0.0, f64::max);
    let width = (items.len() as f64 * STEP + 20.0).max(200.0);
    let mut h = Html::new();
    html!(
        h,
        "<svg class=\"chart bars\" role=\"img\" viewBox=\"0 0 {} {}\" width=\"{}\" height=\"{}\" aria-label=\"{}\">",
        width,
        HEIGHT,
        width,
        HEIGHT,
        name
    );
    html!(
        h,
        "<line class=\"axis\" x1=\"0\" y1=\"{}\" x2=\"{}\" y2=\"{}\"></line>",
        HEIGHT - 10.0,
        width,
        HEIGHT - 10.0
    );
    for (i, (label, v)) in items.iter().enumerate() {
        let x = 10.0 + i as f64 * STEP;
        let bh = if max > 0.0 && *v > 0.0 {
            (v / max * (HEIGHT - 20.0)).max(1.5)
        } else {
            0.0
        };
        html!(
            h,
            "<rect class=\"bar\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>{}: {}</title></rect>",
            x,
            format!("{:.1}", HEIGHT - 10.0 - bh),
            BAR,
            format!("{bh:.1}"),
            label,
            unit(*v)
        );
    }
    html!(h, "</svg>");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(label: &str, rows: i64, period: Period, gap: bool) -> Column {
        Column {
            label: label.into(),
            rows,
            bytes: rows * 100,
            period,
            gap_before: gap,
            tier: None,
        }
    }

    #[test]
    fn timeline_marks_current_gaps_and_escapes_labels() {
        let svg = timeline(
            "audit<logs>",
            &[
                col("p1", 10, Period::Past, false),
                col("p<2>", 0, Period::Current, true),
                col("p3", 0, Period::Ahead, false),
            ],
        )
        .into_string();
        assert!(svg.contains("aria-label=\"Timeline of audit&lt;logs&gt;: 3 partitions"));
        assert!(svg.contains("p&lt;2&gt;: 0 rows"));
        assert_eq!(svg.matches("class=\"gap\"").count(), 1);
        assert_eq!(svg.matches("class=\"now\"").count(), 1);
        assert!(svg.contains("class=\"col ahead tier-hot\""));
        assert!(!svg.contains("style="), "the CSP allows no inline style");
    }

    #[test]
    fn bars_scale_to_the_largest() {
        let svg = bars(
            "x",
            &[("a".into(), 1.0), ("b".into(), 4.0), ("c".into(), 0.0)],
            |v| format!("{v}"),
        )
        .into_string();
        assert!(
            svg.contains("height=\"140.0\"><title>b: 4</title>"),
            "{svg}"
        );
        assert!(svg.contains("height=\"0.0\"><title>c: 0</title>"));
    }
}
