//! The one identifier type: every name that reaches SQL text goes through here.
//!
//! PostgreSQL identifiers are quoted with `escape_identifier` (doubling inner
//! quotes), so a name with quotes, dots, uppercase or unicode stays one
//! identifier. Names longer than `NAMEDATALEN - 1` bytes would be truncated
//! silently by the server; we refuse them instead so two long names never
//! collide.

use std::fmt;

use serde::{Deserialize, Serialize};

/// PostgreSQL's `NAMEDATALEN - 1`.
pub const MAX_IDENT_BYTES: usize = 63;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentError {
    #[error("identifier is empty")]
    Empty,
    #[error(
        "identifier {name:?} is {len} bytes long; PostgreSQL allows at most {MAX_IDENT_BYTES}"
    )]
    TooLong { name: String, len: usize },
    #[error("identifier {0:?} contains a NUL byte")]
    Nul(String),
    #[error("{0:?} is not a schema-qualified name of the form schema.table")]
    NotQualified(String),
}

/// A single SQL identifier, quoted on display.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ident(String);

impl Ident {
    pub fn new(name: impl Into<String>) -> Result<Self, IdentError> {
        let name = name.into();
        if name.is_empty() {
            return Err(IdentError::Empty);
        }
        if name.contains('\0') {
            return Err(IdentError::Nul(name));
        }
        if name.len() > MAX_IDENT_BYTES {
            let len = name.len();
            return Err(IdentError::TooLong { name, len });
        }
        Ok(Ident(name))
    }

    /// The raw (unquoted) name, for use as a query parameter.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Ident {
    type Error = IdentError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Ident::new(s)
    }
}

impl From<Ident> for String {
    fn from(i: Ident) -> String {
        i.0
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&postgres_protocol::escape::escape_identifier(&self.0))
    }
}

/// `schema.name`, each part quoted separately.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QualifiedName {
    pub schema: Ident,
    pub name: Ident,
}

impl QualifiedName {
    pub fn new(schema: &str, name: &str) -> Result<Self, IdentError> {
        Ok(QualifiedName {
            schema: Ident::new(schema)?,
            name: Ident::new(name)?,
        })
    }

    /// Parses the unquoted form `schema.table` (or `table`, meaning `public.table`).
    ///
    /// This is for configuration values, which name tables the way a user types
    /// them; it does not accept quoted SQL syntax, and the result still has to be
    /// resolved against the catalog before it means anything.
    pub fn parse(text: &str) -> Result<Self, IdentError> {
        match text.split_once('.') {
            None => QualifiedName::new("public", text),
            Some((schema, name))
                if !schema.is_empty() && !name.is_empty() && !name.contains('.') =>
            {
                QualifiedName::new(schema, name)
            }
            Some(_) => Err(IdentError::NotQualified(text.to_string())),
        }
    }

    /// The same schema with another relation name.
    pub fn sibling(&self, name: &str) -> Result<Self, IdentError> {
        Ok(QualifiedName {
            schema: self.schema.clone(),
            name: Ident::new(name)?,
        })
    }

    /// Unquoted `schema.name`, for messages and for `$1::text::regclass` lookups
    /// (where it must be quoted: use [`QualifiedName::to_string`] there).
    pub fn display_unquoted(&self) -> String {
        format!("{}.{}", self.schema.as_str(), self.name.as_str())
    }
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// Quotes a string literal (for the few DDL places that cannot take parameters,
/// such as partition bounds and `COMMENT ON`).
pub fn literal(s: &str) -> String {
    postgres_protocol::escape::escape_literal(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_quoted() {
        assert_eq!(
            Ident::new("audit_logs").unwrap().to_string(),
            "\"audit_logs\""
        );
    }

    #[test]
    fn quotes_are_doubled() {
        let i = Ident::new("we\"ird").unwrap();
        assert_eq!(i.to_string(), "\"we\"\"ird\"");
        assert_eq!(i.as_str(), "we\"ird");
    }

    #[test]
    fn dots_and_case_stay_inside_one_identifier() {
        assert_eq!(Ident::new("a.b").unwrap().to_string(), "\"a.b\"");
        assert_eq!(
            Ident::new("AuditLogs").unwrap().to_string(),
            "\"AuditLogs\""
        );
    }

    #[test]
    fn unicode_is_kept_and_counted_in_bytes() {
        let name = "журнал"; // 12 bytes
        assert_eq!(Ident::new(name).unwrap().to_string(), "\"журнал\"");
        let long = "é".repeat(32); // 64 bytes, 32 chars
        assert!(matches!(
            Ident::new(long),
            Err(IdentError::TooLong { len: 64, .. })
        ));
    }

    #[test]
    fn the_63_byte_limit_is_exact() {
        assert!(Ident::new("a".repeat(63)).is_ok());
        assert!(matches!(
            Ident::new("a".repeat(64)),
            Err(IdentError::TooLong { len: 64, .. })
        ));
    }

    #[test]
    fn empty_and_nul_are_refused() {
        assert_eq!(Ident::new(""), Err(IdentError::Empty));
        assert!(matches!(Ident::new("a\0b"), Err(IdentError::Nul(_))));
    }

    #[test]
    fn semicolons_cannot_escape() {
        let i = Ident::new("x\"; DROP TABLE y; --").unwrap();
        assert_eq!(i.to_string(), "\"x\"\"; DROP TABLE y; --\"");
    }

    #[test]
    fn qualified_names_parse_and_quote_each_part() {
        let q = QualifiedName::parse("audit_logs").unwrap();
        assert_eq!(q.to_string(), "\"public\".\"audit_logs\"");
        let q = QualifiedName::parse("App.Logs").unwrap();
        assert_eq!(q.to_string(), "\"App\".\"Logs\"");
        assert!(QualifiedName::parse("a.b.c").is_err());
        assert!(QualifiedName::parse(".b").is_err());
        assert!(QualifiedName::parse("a.").is_err());
    }

    #[test]
    fn literals_are_escaped() {
        assert_eq!(literal("it's"), "'it''s'");
    }
}
