//! Overview: per managed table, the timeline of its periods, the
//! default partition, and the health checks and top recommendations with
//! their fix. Everything comes from `report::build` and `health::check`.

use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::api::AppState;
use crate::html;
use crate::stats::PartitionStats;
use crate::web::charts::{self, Column, Period};
use crate::web::html::{url_component, Html};
use crate::web::layout::{self, Nav, WebError};
use crate::web::session::Viewer;

use super::{badge, count};

/// Recommendations shown; the report has all of them.
const TOP: usize = 8;

pub async fn page(viewer: Viewer, State(state): State<AppState>) -> Response {
    let body = build(&viewer, &state).await;
    layout::render(&viewer, Nav::Overview, "Overview", body)
}

/// The columns of a table's timeline, in time order, the default last.
/// Periods whose partition was dropped after archiving keep a column
/// (no bytes in PostgreSQL, their rows in the store).
pub fn columns(p: &PartitionStats, now: DateTime<Utc>) -> Vec<Column> {
    type Bounds = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);
    let mut ranged: Vec<(Bounds, Column)> = p
        .partitions
        .iter()
        .filter(|s| !s.is_default)
        .map(|s| {
            let period = match (s.from, s.to) {
                (Some(f), _) if f > now => Period::Ahead,
                (Some(f), Some(t)) if f <= now && now < t => Period::Current,
                _ => Period::Past,
            };
            let col = Column {
                label: s.name.clone(),
                rows: s.estimated_rows,
                bytes: s.total_bytes,
                period,
                gap_before: false,
                tier: Some(s.tier.to_string()),
            };
            ((s.from, s.to), col)
        })
        .collect();
    for a in &p.archived_dropped {
        if ranged.iter().any(|((from, _), _)| *from == Some(a.from)) {
            continue;
        }
        ranged.push((
            (Some(a.from), Some(a.to)),
            Column {
                label: format!("{} (archived)", a.period),
                rows: a.rows,
                bytes: 0,
                period: Period::Past,
                gap_before: false,
                tier: Some("archived".into()),
            },
        ));
    }
    ranged.sort_by_key(|((from, _), _)| *from);
    let mut out = Vec::with_capacity(ranged.len() + 1);
    let mut prev_end = None;
    for ((from, to), mut col) in ranged {
        col.gap_before = prev_end.is_some() && prev_end != from;
        prev_end = to;
        out.push(col);
    }
    for s in p.partitions.iter().filter(|s| s.is_default) {
        out.push(Column {
            label: s.name.clone(),
            rows: p.default_partition_rows.unwrap_or(s.estimated_rows),
            bytes: s.total_bytes,
            period: Period::Default,
            gap_before: false,
            tier: None,
        });
    }
    out
}

fn table_section(out: &mut Html, p: &PartitionStats, now: DateTime<Utc>, admin: bool) {
    let cols = columns(p, now);
    let in_tier = |t: &str| cols.iter().filter(|c| c.tier.as_deref() == Some(t)).count();
    let ahead = cols.iter().filter(|c| c.period == Period::Ahead).count();
    let gaps = cols.iter().filter(|c| c.gap_before).count();
    let current = cols.iter().find(|c| c.period == Period::Current);
    html!(
        out,
        "<section class=\"table\" aria-labelledby=\"t-{}\"><h2 id=\"t-{}\">{}</h2><dl class=\"facts\">\
         <div><dt>Partitions</dt><dd data-testid=\"partition-count\">{}</dd></div>\
         <div><dt>Rows (estimate)</dt><dd>{}</dd></div><div><dt>Size</dt><dd>{}</dd></div>\
         <div><dt>Current</dt><dd>{}</dd></div><div><dt>Made ahead</dt><dd>{}</dd></div>\
         <div><dt>Gaps</dt><dd>{}</dd></div></dl>",
        url_component(&p.table),
        url_component(&p.table),
        p.table,
        p.partition_count,
        count(p.estimated_rows),
        p.total_size_pretty,
        current.map(|c| c.label.as_str()).unwrap_or("none — no partition covers now"),
        ahead,
        gaps
    );
    match p.default_partition_rows {
        Some(n) if n > 0 => {
            html!(
                out,
                "<div class=\"warning\" role=\"status\" data-testid=\"default-warning\"><p><strong>{} rows \
                 in the default partition.</strong> Rows land there when no partition covers their time, \
                 and every query that reads the default partition scans them. \
                 <code>strata maintain --table {}</code> moves the rows whose period it may create; \
                 the <code>default_partition_rows</code> health check below says what to do with the rest.</p>",
                count(n),
                p.table
            );
            if admin {
                html!(
                    out,
                    "<p><a class=\"button\" href=\"/jobs/confirm?action=maintain&amp;table={}\">Run maintain…</a></p>",
                    url_component(&p.table)
                );
            }
            html!(out, "</div>");
        }
        Some(_) => html!(out, "<p>The default partition is empty.</p>"),
        None => html!(out, "<p>No default partition.</p>"),
    }
    out.push(&charts::timeline(&p.table, &cols));
    html!(
        out,
        "<p class=\"legend\"><span class=\"key past\"></span> past <span class=\"key current\"></span> current \
         <span class=\"key ahead\"></span> made ahead <span class=\"key default\"></span> default \
         <span class=\"key gap\"></span> gap · rows above the line, bytes below (square-root scale) · \
         tiers: <span data-testid=\"tier-hot\">{}</span> hot, \
         <span class=\"key sealed\"></span> <span data-testid=\"tier-sealed\">{}</span> sealed, \
         <span class=\"key archived\"></span> <span data-testid=\"tier-archived\">{}</span> archived \
         (a strip along the top)</p></section>",
        in_tier("hot"),
        in_tier("sealed"),
        in_tier("archived")
    );
}

fn checks(out: &mut Html, health: &Value) {
    html!(
        out,
        "<section aria-labelledby=\"health\"><h2 id=\"health\">Health: "
    );
    badge(out, health["status"].as_str().unwrap_or("unknown"));
    html!(
        out,
        "</h2><table><caption class=\"sr-only\">Health checks</caption><thead><tr>\
         <th scope=\"col\">Check</th><th scope=\"col\">Table</th><th scope=\"col\">Status</th>\
         <th scope=\"col\">Finding</th><th scope=\"col\">Fix</th></tr></thead><tbody>"
    );
    for c in health["checks"].as_array().into_iter().flatten() {
        html!(
            out,
            "<tr><td>{}</td><td>{}</td><td>",
            c["name"].as_str().unwrap_or(""),
            c["table"].as_str().unwrap_or("server")
        );
        badge(out, c["status"].as_str().unwrap_or(""));
        html!(
            out,
            "</td><td>{}</td><td>",
            c["message"].as_str().unwrap_or("")
        );
        if let Some(fix) = c["fix"].as_str() {
            html!(out, "<code>{}</code>", fix);
        }
        html!(out, "</td></tr>");
    }
    html!(out, "</tbody></table></section>");
}

fn recommendations(out: &mut Html, recs: &Value) {
    let mut recs: Vec<&Value> = recs.as_array().into_iter().flatten().collect();
    let rank = |r: &Value| match r["severity"].as_str() {
        Some("critical") => 0,
        Some("warning") => 1,
        _ => 2,
    };
    recs.sort_by_key(|r| rank(r));
    html!(
        out,
        "<section aria-labelledby=\"recs\"><h2 id=\"recs\">Top recommendations</h2>"
    );
    if recs.is_empty() {
        html!(out, "<p>None: the report found nothing to change.</p>");
    } else {
        html!(out, "<ol class=\"recs\">");
        for r in recs.iter().take(TOP) {
            html!(out, "<li>");
            badge(out, r["severity"].as_str().unwrap_or("info"));
            html!(
                out,
                " <strong>{}</strong> {} — {}<br>Fix: <code>{}</code></li>",
                r["rule"].as_str().unwrap_or(""),
                r["table"].as_str().unwrap_or(""),
                r["message"].as_str().unwrap_or(""),
                r["fix"].as_str().unwrap_or("")
            );
        }
        html!(out, "</ol>");
        if recs.len() > TOP {
            html!(
                out,
                "<p>{} more in <code>strata report</code>.</p>",
                recs.len() - TOP
            );
        }
    }
}

async fn build(viewer: &Viewer, state: &AppState) -> Result<Html, WebError> {
    let now = Utc::now();
    let mut client = state.pool.get().await?;
    // The health checks on a second connection at the same time, so the
    // server works on both in parallel; only if one is free right now
    // (waiting for it could wait forever with a pool of one).
    let mut no_wait = state.pool.timeouts();
    no_wait.wait = Some(std::time::Duration::ZERO);
    let (report, health) = match state.pool.timeout_get(&no_wait).await {
        Ok(mut second) => {
            tokio::join!(
                crate::report::build(
                    &mut client,
                    &state.config.tables,
                    now,
                    7,
                    state.config.seal.after
                ),
                crate::health::check(&mut second, &state.config.tables, &state.config.health, now)
            )
        }
        Err(_) => (
            crate::report::build(
                &mut client,
                &state.config.tables,
                now,
                7,
                state.config.seal.after,
            )
            .await,
            crate::health::check(&mut client, &state.config.tables, &state.config.health, now)
                .await,
        ),
    };
    let report = report.map_err(WebError::internal)?;
    let health = health.map_err(WebError::internal)?;
    let mut health = serde_json::to_value(health).map_err(WebError::internal)?;
    if !viewer.is_admin() {
        crate::api::redact::for_reader(&mut health);
    }
    let mut out = Html::new();
    html!(
        out,
        "<p class=\"meta\">Database <strong>{}</strong>, PostgreSQL {}, as of {} UTC.</p>",
        report.database,
        report.server_version,
        super::when(Some(now))
    );
    for t in &report.tables {
        table_section(&mut out, &t.partitions, now, viewer.is_admin());
    }
    checks(&mut out, &health);
    // As JSON, so a reader's copy loses SQL literals the same way the API's does.
    let mut recs = serde_json::to_value(&report.recommendations).map_err(WebError::internal)?;
    if !viewer.is_admin() {
        crate::api::redact::for_reader(&mut recs);
    }
    recommendations(&mut out, &recs);
    html!(out, "</section>");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::PartitionStat;
    use chrono::TimeZone;

    fn part(name: &str, from: Option<(i32, u32)>, to: Option<(i32, u32)>) -> PartitionStat {
        let at = |(y, m): (i32, u32)| Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).unwrap();
        PartitionStat {
            name: name.into(),
            relation: crate::db::QualifiedName::parse(name).unwrap(),
            from: from.map(at),
            to: to.map(at),
            is_default: from.is_none(),
            estimated_rows: 10,
            size_exact: true,
            table_bytes: 0,
            index_bytes: 0,
            toast_bytes: 0,
            total_bytes: 100,
            total_size_pretty: String::new(),
            dead_tuples: 0,
            last_vacuum: None,
            last_autovacuum: None,
            last_analyze: None,
            last_autoanalyze: None,
            fillfactor: 100,
            xid_age: 0,
            tier: "hot",
        }
    }

    fn stats(partitions: Vec<PartitionStat>, default_rows: Option<i64>) -> PartitionStats {
        PartitionStats {
            table: "audit_logs".into(),
            partition_count: partitions.len(),
            total_size_bytes: 0,
            total_size_pretty: String::new(),
            table_bytes: 0,
            index_bytes: 0,
            toast_bytes: 0,
            estimated_rows: 0,
            dead_tuples: 0,
            default_partition_rows: default_rows,
            partitions,
            archived_dropped: Vec::new(),
        }
    }

    #[test]
    fn columns_mark_current_ahead_gaps_and_the_default_last() {
        let stats = stats(
            vec![
                part("audit_logs_default", None, None),
                part("audit_logs_2025_04", Some((2025, 4)), Some((2025, 5))),
                part("audit_logs_2025_01", Some((2025, 1)), Some((2025, 2))),
                // 2025_03 is missing: a gap before 2025_04.
                part("audit_logs_2025_02", Some((2025, 2)), Some((2025, 3))),
            ],
            Some(37),
        );
        let now = Utc.with_ymd_and_hms(2025, 2, 10, 0, 0, 0).unwrap();
        let cols = columns(&stats, now);
        let names: Vec<&str> = cols.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(
            names,
            [
                "audit_logs_2025_01",
                "audit_logs_2025_02",
                "audit_logs_2025_04",
                "audit_logs_default"
            ]
        );
        let periods: Vec<Period> = cols.iter().map(|c| c.period).collect();
        assert_eq!(
            periods,
            [
                Period::Past,
                Period::Current,
                Period::Ahead,
                Period::Default
            ]
        );
        let gaps: Vec<bool> = cols.iter().map(|c| c.gap_before).collect();
        assert_eq!(gaps, [false, false, true, false]);
        assert_eq!(cols[3].rows, 37, "the default shows its exact count");
    }

    #[test]
    fn tiers_mark_sealed_archived_and_dropped_periods() {
        use crate::stats::TierMark;
        let at = |m: u32| Utc.with_ymd_and_hms(2025, m, 1, 0, 0, 0).unwrap();
        let stats = stats(
            vec![
                part("audit_logs_2025_02", Some((2025, 2)), Some((2025, 3))),
                part("audit_logs_2025_03", Some((2025, 3)), Some((2025, 4))),
                part("audit_logs_2025_04", Some((2025, 4)), Some((2025, 5))),
            ],
            None,
        );
        let mark = |m: u32, tier: &'static str, dropped: bool| TierMark {
            start: at(m),
            end: at(m + 1),
            period: format!("2025-{m:02}"),
            tier,
            dropped,
            rows: 500,
        };
        let tiers = [
            mark(1, "sealed", false),
            mark(1, "archived", true),
            mark(2, "sealed", false),
            mark(3, "sealed", false),
            mark(3, "archived", false),
        ];
        // What stats::partitions makes of those marks.
        let mut stats = stats;
        for p in stats.partitions.iter_mut() {
            p.tier = crate::stats::tier_of(&tiers, p.from);
        }
        stats.archived_dropped = tiers
            .iter()
            .filter(|t| t.dropped)
            .map(|t| crate::stats::ArchivedPeriod {
                period: t.period.clone(),
                from: t.start,
                to: t.end,
                rows: t.rows,
            })
            .collect();
        let now = Utc.with_ymd_and_hms(2025, 4, 10, 0, 0, 0).unwrap();
        let cols = columns(&stats, now);
        let seen: Vec<(&str, &str, i64)> = cols
            .iter()
            .map(|c| (c.label.as_str(), c.tier.as_deref().unwrap(), c.bytes))
            .collect();
        assert_eq!(
            seen,
            [
                ("2025-01 (archived)", "archived", 0),
                ("audit_logs_2025_02", "sealed", 100),
                ("audit_logs_2025_03", "archived", 100),
                ("audit_logs_2025_04", "hot", 100),
            ]
        );
        assert_eq!(
            cols[0].rows, 500,
            "a dropped period shows the archive's rows"
        );
        assert!(cols.iter().all(|c| !c.gap_before), "{cols:?}");
    }
}
