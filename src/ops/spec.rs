//! The stored table spec is the source of truth.
//!
//! Once `strata.managed_tables` holds a table's spec, every run uses it. A
//! configuration that says something else is refused, naming each key and
//! both values, until `strata config apply` stores it; a run without a
//! configuration (another directory, a cron job without the file) uses the
//! stored spec, never the defaults. Before anything is stored, the
//! configuration (or the defaults) is what the first `maintain` registers.

use serde::Serialize;
use serde_json::{json, Value};
use tokio_postgres::Client;

use super::OpError;
use crate::config::{Config, TableSpec};
use crate::db::DbError;

/// One key on which the configuration and the stored spec differ.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SpecDiff {
    pub table: String,
    pub key: String,
    pub stored: String,
    pub configured: String,
}

impl SpecDiff {
    pub fn message(diffs: &[SpecDiff]) -> String {
        let lines: Vec<String> = diffs
            .iter()
            .map(|d| {
                format!(
                    "{}: {} is {} in the database but {} in the configuration",
                    d.table, d.key, d.stored, d.configured
                )
            })
            .collect();
        format!(
            "the configuration differs from the table spec stored in the database (the source of truth): {}; \
             run `strata config apply` to store the configuration, or change it back",
            lines.join("; ")
        )
    }
}

/// Specs as `strata.managed_tables` holds them (empty before migration 1).
pub async fn stored_specs(client: &Client) -> Result<Vec<TableSpec>, OpError> {
    let present: bool = client
        .query_one(
            "SELECT to_regclass('strata.managed_tables') IS NOT NULL",
            &[],
        )
        .await
        .map_err(DbError::query("looking for strata.managed_tables"))?
        .get(0);
    if !present {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT schema_name, table_name, spec FROM strata.managed_tables ORDER BY registered_at, schema_name, table_name",
            &[],
        )
        .await
        .map_err(DbError::query("reading the stored table specs"))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let value: Value = r.get(2);
        let spec: TableSpec = serde_json::from_value(value).map_err(|e| {
            OpError::Failed(format!(
                "the stored spec of {}.{} cannot be read ({e}); fix it with `strata config apply`",
                r.get::<_, String>(0),
                r.get::<_, String>(1)
            ))
        })?;
        out.push(spec);
    }
    Ok(out)
}

/// Keys on which `configured` differs from `stored`, with both values.
pub fn diff(stored: &TableSpec, configured: &TableSpec) -> Vec<SpecDiff> {
    let (a, b) = (
        serde_json::to_value(stored).expect("spec serializes"),
        serde_json::to_value(configured).expect("spec serializes"),
    );
    let (Value::Object(a), Value::Object(b)) = (a, b) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, sv) in &a {
        let cv = b.get(key).cloned().unwrap_or(Value::Null);
        if *sv != cv {
            out.push(SpecDiff {
                table: stored.name.display_unquoted(),
                key: key.clone(),
                stored: show(sv),
                configured: show(&cv),
            });
        }
    }
    out
}

fn show(v: &Value) -> String {
    match v {
        Value::Null => "none".into(),
        Value::Object(m) if m.contains_key("unit") => {
            let count = m.get("count").and_then(Value::as_u64).unwrap_or(0);
            let unit = m.get("unit").and_then(Value::as_str).unwrap_or("");
            // "1 month", not "1 months"; the stored unit is plural.
            let unit = if count == 1 {
                unit.trim_end_matches('s')
            } else {
                unit
            };
            format!("\"{count} {unit}\"")
        }
        Value::Object(m) if m.contains_key("schema") => format!(
            "{}.{}",
            m.get("schema").and_then(Value::as_str).unwrap_or(""),
            m.get("name").and_then(Value::as_str).unwrap_or("")
        ),
        other => other.to_string(),
    }
}

/// The specs in effect: stored ones win; a written configuration must agree
/// with them (else [`OpError::SpecDiffers`]); tables configured but not yet
/// stored come from the configuration; with nothing stored and nothing
/// written, the defaults.
pub async fn effective_specs(client: &Client, config: &Config) -> Result<Vec<TableSpec>, OpError> {
    let stored = stored_specs(client).await?;
    effective(&stored, config)
}

/// [`effective_specs`] without the database, for tests.
pub fn effective(stored: &[TableSpec], config: &Config) -> Result<Vec<TableSpec>, OpError> {
    if stored.is_empty() {
        return Ok(config.tables.clone());
    }
    if !config.tables_explicit {
        return Ok(stored.to_vec());
    }
    let mut diffs = Vec::new();
    let mut out = Vec::new();
    for c in &config.tables {
        match stored.iter().find(|s| s.name == c.name) {
            Some(s) => {
                diffs.extend(diff(s, c));
                out.push(s.clone());
            }
            None => out.push(c.clone()),
        }
    }
    if !diffs.is_empty() {
        return Err(OpError::SpecDiffers(diffs));
    }
    // Stored tables the configuration does not name stay managed.
    for s in stored {
        if !out.iter().any(|o| o.name == s.name) {
            out.push(s.clone());
        }
    }
    Ok(out)
}

/// `strata config apply`: stores the configuration's spec of one table (the
/// job records both versions).
pub async fn apply(client: &Client, config: &Config, table: &TableSpec) -> Result<Value, OpError> {
    if !config.tables_explicit {
        return Err(OpError::Usage(
            "no table configuration to apply: write a [[table]] in strata.toml (or pass --config FILE)".into(),
        ));
    }
    let configured = config
        .tables
        .iter()
        .find(|t| t.name == table.name)
        .cloned()
        .unwrap_or_else(|| table.clone());
    let stored = stored_specs(client)
        .await?
        .into_iter()
        .find(|s| s.name == configured.name);
    let changes = stored
        .as_ref()
        .map(|s| diff(s, &configured))
        .unwrap_or_default();
    let json = serde_json::to_value(&configured).expect("spec serializes");
    client
        .execute(
            "INSERT INTO strata.managed_tables (schema_name, table_name, spec) VALUES ($1, $2, $3)
             ON CONFLICT (schema_name, table_name) DO UPDATE SET spec = EXCLUDED.spec, updated_at = now()",
            &[&configured.name.schema.as_str(), &configured.name.name.as_str(), &json],
        )
        .await
        .map_err(DbError::query("storing the table spec"))?;
    Ok(json!({
        "table": configured.name.display_unquoted(),
        "previous": stored,
        "stored": configured,
        "changes": changes,
    }))
}

/// One value of the spec in effect and where it came from.
#[derive(Clone, Debug, Serialize)]
pub struct Shown {
    pub table: String,
    pub key: String,
    pub value: String,
    /// `database`, `configuration` (a file or `STRATA_*`), or `default`.
    pub source: &'static str,
    /// The configuration's value when it differs from the stored one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<String>,
}

/// `strata config show`: every key of every table spec in effect, with its
/// source, and what `config apply` would change.
pub async fn show_specs(client: &Client, config: &Config) -> Result<Vec<Shown>, OpError> {
    let stored = stored_specs(client).await?;
    let mut out = Vec::new();
    let mut names: Vec<TableSpec> = stored.clone();
    for c in &config.tables {
        if !names.iter().any(|s| s.name == c.name) && (config.tables_explicit || stored.is_empty())
        {
            names.push(c.clone());
        }
    }
    for spec in names {
        let s = stored.iter().find(|s| s.name == spec.name);
        let c = config
            .tables
            .iter()
            .find(|c| c.name == spec.name && config.tables_explicit);
        let value = serde_json::to_value(&spec).expect("spec serializes");
        let Value::Object(map) = value else { continue };
        for (key, v) in map {
            let pending = match (s, c) {
                (Some(s), Some(c)) => diff(s, c)
                    .into_iter()
                    .find(|d| d.key == key)
                    .map(|d| d.configured),
                _ => None,
            };
            out.push(Shown {
                table: spec.name.display_unquoted(),
                key,
                value: show(&v),
                source: match (s, c) {
                    (Some(_), _) => "database",
                    (None, Some(_)) => "configuration",
                    (None, None) => "default",
                },
                pending,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Retention;

    #[test]
    fn no_configuration_means_the_stored_spec() {
        let mut stored = TableSpec::seed_default();
        stored.retention = Some(Retention::Months(24));
        let config = Config::default();
        assert!(!config.tables_explicit);
        let got = effective(std::slice::from_ref(&stored), &config).unwrap();
        assert_eq!(got, vec![stored]);
    }

    #[test]
    fn a_differing_configuration_is_refused_naming_key_and_values() {
        let mut stored = TableSpec::seed_default();
        stored.retention = Some(Retention::Months(24));
        let config = Config::from_toml("[[table]]\nname = \"audit_logs\"\npremake = 3\n").unwrap();
        let Err(OpError::SpecDiffers(d)) = effective(&[stored], &config) else {
            panic!("expected a refusal");
        };
        let keys: Vec<&str> = d.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, ["premake", "retention"]);
        let msg = SpecDiff::message(&d);
        assert!(msg.contains("premake is 6 in the database but 3"), "{msg}");
        assert!(
            msg.contains("retention is \"24 months\" in the database but none"),
            "{msg}"
        );
        assert!(msg.contains("strata config apply"), "{msg}");
    }

    #[test]
    fn nothing_stored_uses_the_configuration() {
        let config = Config::from_toml("[[table]]\nname = \"audit_logs\"\npremake = 3\n").unwrap();
        let got = effective(&[], &config).unwrap();
        assert_eq!(got[0].premake, 3);
    }
}
