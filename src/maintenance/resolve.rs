//! Which relation a user's table name means, decided by comparing it with
//! the names the catalog lists: the managed tables of the configuration and
//! their partitions. The text itself is never sent to the server.

use tokio_postgres::Client;

use super::MaintenanceError;
use crate::config::TableSpec;
use crate::db::QualifiedName;
use crate::partition::{self, Bound};

/// A managed table or one of its partitions.
#[derive(Clone, Debug)]
pub struct MaintenanceTarget {
    /// The managed table's spec.
    pub spec: TableSpec,
    /// What the user named.
    pub relation: QualifiedName,
    pub is_parent: bool,
    /// The plain tables to work on: every partition for the parent, else
    /// just the partition.
    pub leaves: Vec<QualifiedName>,
}

/// Resolves `input` (`name`, `schema.name`, optionally with double quotes
/// around either part) among the managed tables and their partitions.
pub async fn resolve(
    client: &mut Client,
    tables: &[TableSpec],
    input: &str,
) -> Result<MaintenanceTarget, MaintenanceError> {
    let wanted = parse_name(input);
    let mut known = Vec::new();
    for spec in tables {
        let snap = match partition::snapshot(client, spec).await {
            Ok(s) => s,
            // A configured table that does not exist (yet) is not a target;
            // other configured tables still are.
            Err(partition::PartitionError::NotFound(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        let leaves: Vec<QualifiedName> = snap
            .partitions
            .iter()
            .filter(|p| !p.detach_pending || p.bound == Bound::Default)
            .map(|p| p.name.clone())
            .collect();
        known.push(format!(
            "{} ({} partitions)",
            spec.name.display_unquoted(),
            leaves.len()
        ));
        let matches = |q: &QualifiedName| match &wanted {
            Some((Some(schema), name)) => q.schema.as_str() == schema && q.name.as_str() == name,
            Some((None, name)) => q.name.as_str() == name,
            None => false,
        };
        if matches(&spec.name) {
            return Ok(MaintenanceTarget {
                spec: spec.clone(),
                relation: spec.name.clone(),
                is_parent: true,
                leaves,
            });
        }
        if let Some(part) = leaves.iter().find(|p| matches(p)) {
            return Ok(MaintenanceTarget {
                spec: spec.clone(),
                relation: part.clone(),
                is_parent: false,
                leaves: vec![part.clone()],
            });
        }
    }
    Err(MaintenanceError::UnknownTarget {
        input: input.to_string(),
        known: if known.is_empty() {
            "none (run `strata migrate` and `strata maintain`)".into()
        } else {
            known.join(", ")
        },
    })
}

/// Splits `schema.name` the way SQL would read it: unquoted parts are
/// folded to lower case, `"quoted"` parts are kept exactly (with `""` for a
/// quote). `None` when the text is not a name at all.
fn parse_name(input: &str) -> Option<(Option<String>, String)> {
    let mut parts = Vec::new();
    let mut chars = input.trim().chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    '"' => break,
                    c => part.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                if !(c.is_alphanumeric() || c == '_' || c == '$') {
                    return None;
                }
                part.extend(c.to_lowercase());
                chars.next();
            }
        }
        if part.is_empty() {
            return None;
        }
        parts.push(part);
        match chars.next() {
            None => break,
            Some('.') => continue,
            Some(_) => return None,
        }
    }
    match parts.len() {
        1 => Some((None, parts.pop()?)),
        2 => {
            let name = parts.pop()?;
            Some((parts.pop(), name))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::parse_name;

    #[test]
    fn names_parse_like_sql() {
        assert_eq!(parse_name("audit_logs"), Some((None, "audit_logs".into())));
        assert_eq!(
            parse_name("Public.Audit_Logs"),
            Some((Some("public".into()), "audit_logs".into()))
        );
        assert_eq!(
            parse_name(r#""My Schema"."Odd""Name""#),
            Some((Some("My Schema".into()), "Odd\"Name".into()))
        );
        for hostile in [
            "audit_logs; DROP TABLE x",
            "audit_logs'--",
            "a.b.c",
            "",
            "\"unterminated",
            "audit_logs)",
            ".audit_logs",
            "audit_logs.",
            "pg_sleep(10)",
        ] {
            assert_eq!(parse_name(hostile), None, "{hostile:?}");
        }
    }
}
