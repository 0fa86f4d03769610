//! strata's index set for a managed table.
//!
//! The seed's set (BRIN on the time column, B-trees on user_id, action and
//! severity, GIN on details and search_vector) plus a B-tree on
//! (user_id, time DESC): without it "latest events of a heavy user" is ~60x
//! slower partitioned than on a plain table with a time B-tree (BASELINES.md
//! Q5: 139 ms vs 2.3 ms; with it 1.8 ms through an ordered Append).

use serde::Serialize;

use crate::config::TableSpec;
use crate::db::Ident;

/// Index access methods strata creates (keywords come from here, never from input).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Btree,
    Brin,
    Gin,
}

impl Method {
    pub fn keyword(self) -> &'static str {
        match self {
            Method::Btree => "btree",
            Method::Brin => "brin",
            Method::Gin => "gin",
        }
    }
}

/// One wanted index of the parent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IndexDef {
    /// Name on the parent, e.g. `idx_audit_logs_user_id`.
    pub name: String,
    pub method: Method,
    /// Key columns, each quoted, with ordering or operator class.
    pub keys: String,
    /// Columns the index needs (it is skipped when the table lacks one).
    pub columns: Vec<String>,
    /// Storage parameters, `key = value` pairs of fixed keywords.
    pub with: Vec<(String, String)>,
    /// Operator class of the first key, when it matters.
    pub opclass: Option<String>,
    /// The key is an expression (the catalog lists it as `expression`).
    pub expression: bool,
}

impl IndexDef {
    /// Key columns as the catalog lists them (`parent_indexes.sql`).
    pub fn catalog_columns(&self) -> Vec<String> {
        if self.expression {
            vec!["expression".into()]
        } else {
            self.columns.clone()
        }
    }

    /// `USING method (keys) WITH (...)`, the part after `ON table`.
    pub fn body(&self) -> String {
        let with = if self.with.is_empty() {
            String::new()
        } else {
            let params: Vec<String> = self
                .with
                .iter()
                .map(|(k, v)| format!("{k} = {v}"))
                .collect();
            format!(" WITH ({})", params.join(", "))
        };
        format!("USING {} ({}){with}", self.method.keyword(), self.keys)
    }
}

fn ident(s: &str) -> String {
    Ident::new(s).expect("static column name").to_string()
}

/// The index set for `spec`'s table.
pub fn wanted(spec: &TableSpec) -> Vec<IndexDef> {
    let table = spec.name.name.as_str();
    let time = spec.time_column.to_string();
    let name = |suffix: &str| fit_name(&format!("idx_{table}_{suffix}"));
    let btree = |suffix: &str, col: &str| IndexDef {
        name: name(suffix),
        method: Method::Btree,
        keys: ident(col),
        columns: vec![col.into()],
        with: vec![],
        opclass: None,
        expression: false,
    };
    vec![
        IndexDef {
            name: name(&format!("{}_brin", spec.time_column.as_str())),
            method: Method::Brin,
            keys: time.clone(),
            columns: vec![spec.time_column.as_str().into()],
            with: vec![
                (
                    "pages_per_range".into(),
                    spec.brin_pages_per_range.to_string(),
                ),
                ("autosummarize".into(), "on".into()),
            ],
            opclass: None,
            expression: false,
        },
        btree("user_id", "user_id"),
        btree("action", "action"),
        btree("severity", "severity"),
        IndexDef {
            name: name(&format!("user_id_{}", spec.time_column.as_str())),
            method: Method::Btree,
            keys: format!("{}, {time} DESC", ident("user_id")),
            columns: vec!["user_id".into(), spec.time_column.as_str().into()],
            with: vec![],
            opclass: None,
            expression: false,
        },
        IndexDef {
            name: name("details_gin"),
            method: Method::Gin,
            keys: format!("{} {}", ident("details"), spec.details_opclass.keyword()),
            columns: vec!["details".into()],
            with: vec![("fastupdate".into(), "on".into())],
            opclass: Some(spec.details_opclass.keyword().into()),
            expression: false,
        },
        IndexDef {
            name: name("search_vector_gin"),
            method: Method::Gin,
            keys: ident("search_vector"),
            columns: vec!["search_vector".into()],
            with: vec![],
            opclass: None,
            expression: false,
        },
        // The words inside dotted, slashed, dashed and underscored tokens
        // (migration 4): what `GET /audit-logs?q=` searches.
        IndexDef {
            name: name("search_words_gin"),
            method: Method::Gin,
            keys: format!("strata.search_words({})", ident("search_vector")),
            columns: vec!["search_vector".into()],
            with: vec![],
            opclass: None,
            expression: true,
        },
    ]
}

/// Name of a partition's index for parent index `parent_index`: deterministic
/// (so an interrupted run finds its own leftovers) and within 63 bytes.
pub fn child_name(partition: &str, parent_index: &str, table: &str) -> String {
    let suffix = parent_index
        .strip_prefix(&format!("idx_{table}_"))
        .unwrap_or(parent_index);
    fit_name(&format!("{partition}_{suffix}"))
}

/// `full` if it fits an identifier (63 bytes), else a prefix of it plus a
/// short hash of the whole, so distinct long names stay distinct.
pub fn fit_name(full: &str) -> String {
    if full.len() <= crate::db::MAX_IDENT_BYTES {
        return full.to_string();
    }
    use sha2::{Digest, Sha256};
    let hash = hex::encode(&Sha256::digest(full.as_bytes())[..4]);
    let mut cut = crate::db::MAX_IDENT_BYTES - hash.len() - 1;
    while !full.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{hash}", &full[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_set_plus_the_composite() {
        let set = wanted(&TableSpec::seed_default());
        let names: Vec<&str> = set.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "idx_audit_logs_created_at_brin",
                "idx_audit_logs_user_id",
                "idx_audit_logs_action",
                "idx_audit_logs_severity",
                "idx_audit_logs_user_id_created_at",
                "idx_audit_logs_details_gin",
                "idx_audit_logs_search_vector_gin",
                "idx_audit_logs_search_words_gin",
            ]
        );
        assert_eq!(
            set[0].body(),
            "USING brin (\"created_at\") WITH (pages_per_range = 128, autosummarize = on)"
        );
        assert_eq!(
            set[4].body(),
            "USING btree (\"user_id\", \"created_at\" DESC)"
        );
    }

    #[test]
    fn brin_follows_the_config() {
        let mut spec = TableSpec::seed_default();
        spec.brin_pages_per_range = 32;
        assert!(wanted(&spec)[0].body().contains("pages_per_range = 32"));
    }

    #[test]
    fn child_names_fit_and_stay_distinct() {
        assert_eq!(
            child_name("audit_logs_2025_01", "idx_audit_logs_user_id", "audit_logs"),
            "audit_logs_2025_01_user_id"
        );
        let long = "p".repeat(60);
        let a = child_name(&long, "idx_audit_logs_user_id", "audit_logs");
        let b = child_name(&long, "idx_audit_logs_action", "audit_logs");
        assert!(a.len() <= 63 && b.len() <= 63);
        assert_ne!(a, b);
    }
}
