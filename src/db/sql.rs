//! Typed pieces of SQL text that are not plain identifiers: dollar-quoted
//! bodies and multi-statement steps.
//!
//! A dollar quote ends at the first occurrence of its tag, and an identifier
//! may contain `$`: a column named `a$strata$b` inside a body quoted with
//! `$strata$` would end the body early and run the rest as SQL. So the tag is
//! chosen per body, provably absent from it.

use std::fmt;

/// A body (plpgsql function, `DO` block) wrapped in a dollar quote whose tag
/// does not occur in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DollarQuoted {
    tag: String,
    body: String,
}

impl DollarQuoted {
    pub fn new(body: impl Into<String>) -> Self {
        let body = body.into();
        let mut n = 0u32;
        let tag = loop {
            let tag = if n == 0 {
                "$strata$".to_string()
            } else {
                format!("$strata_{n}$")
            };
            if !body.contains(&tag) {
                break tag;
            }
            n += 1;
        };
        DollarQuoted { tag, body }
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }
}

impl fmt::Display for DollarQuoted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.tag, self.body, self.tag)
    }
}

/// One statement of a step, or the boundary of a transaction. Steps are
/// `Vec<Statement>`, so no code writes `"BEGIN"` / `"COMMIT"` strings and no
/// value has to be formatted into SQL to group statements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Statement {
    Begin,
    Commit,
    Sql(String),
}

impl fmt::Display for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Statement::Begin => f.write_str("BEGIN"),
            Statement::Commit => f.write_str("COMMIT"),
            Statement::Sql(s) => f.write_str(s),
        }
    }
}

/// Runs a step's statements in order. A failure inside `Begin … Commit`
/// rolls the transaction back, so a timed-out attempt leaves nothing half
/// made; the error names the statement.
pub async fn run_statements(
    client: &tokio_postgres::Client,
    stmts: &[Statement],
) -> Result<(), super::DbError> {
    let mut in_tx = false;
    for s in stmts {
        if let Err(e) = client.batch_execute(&s.to_string()).await {
            if in_tx {
                let _ = client.batch_execute("ROLLBACK").await;
            }
            let text = s.to_string();
            let shown: String = text.chars().take(160).collect();
            return Err(super::DbError::query(format!("running `{shown}`"))(e));
        }
        match s {
            Statement::Begin => in_tx = true,
            Statement::Commit => in_tx = false,
            Statement::Sql(_) => {}
        }
    }
    Ok(())
}

impl From<String> for Statement {
    /// Text steps of older builders: `BEGIN` and `COMMIT` become the typed
    /// boundaries, anything else one statement.
    fn from(s: String) -> Statement {
        match s.as_str() {
            "BEGIN" => Statement::Begin,
            "COMMIT" => Statement::Commit,
            _ => Statement::Sql(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_never_occurs_in_the_body() {
        let q = DollarQuoted::new("BEGIN NEW.\"a$strata$b\" := 1; END");
        assert_eq!(q.tag(), "$strata_1$");
        let s = q.to_string();
        assert!(s.starts_with("$strata_1$BEGIN"));
        // The body contains the tag exactly at both ends, nowhere else.
        assert_eq!(s.matches("$strata_1$").count(), 2);

        let q = DollarQuoted::new("x $strata$ y $strata_1$ z");
        assert_eq!(q.tag(), "$strata_2$");
        assert_eq!(DollarQuoted::new("plain").tag(), "$strata$");
    }
}
