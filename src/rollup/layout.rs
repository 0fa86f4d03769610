//! Where a rollup lives and the SQL text of its aggregate, built from
//! quoted identifiers only.

use crate::config::{Measure, RollupSpec, TableSpec};
use crate::db::{Ident, QualifiedName};
use crate::ops::OpError;

/// Column names of the storage table and the view besides the dimensions.
pub const RESERVED_COLUMNS: &[&str] = &["bucket", "count", "distinct_user_id"];

/// The measured column of `distinct user_id`.
pub const USER_COLUMN: &str = "user_id";

/// A rollup of one table, with every name it needs resolved and quoted.
#[derive(Clone, Debug)]
pub struct Layout {
    pub table: QualifiedName,
    pub time_column: Ident,
    pub spec: RollupSpec,
    /// `strata.<table>_<rollup>` (schema-prefixed outside `public`).
    pub storage: QualifiedName,
    /// `<schema>.<table>_<rollup>`, what readers query.
    pub view: QualifiedName,
    /// Schema of the hll extension, when a measure needs it.
    pub hll: Option<Ident>,
}

impl Layout {
    pub fn new(
        table: &TableSpec,
        spec: &RollupSpec,
        hll: Option<Ident>,
    ) -> Result<Layout, OpError> {
        let base = format!("{}_{}", table.name.name.as_str(), spec.name.as_str());
        let stored = if table.name.schema.as_str() == "public" {
            base.clone()
        } else {
            format!("{}_{base}", table.name.schema.as_str())
        };
        let too_long = |e: crate::db::IdentError| {
            OpError::Usage(format!(
                "rollup {} of {}: {e}; choose a shorter rollup name",
                spec.name.as_str(),
                table.name.display_unquoted()
            ))
        };
        Ok(Layout {
            table: table.name.clone(),
            time_column: table.time_column.clone(),
            spec: spec.clone(),
            storage: QualifiedName::new("strata", &stored).map_err(too_long)?,
            view: table.name.sibling(&base).map_err(too_long)?,
            hll,
        })
    }

    fn trunc(&self, expr: &str) -> String {
        format!(
            "date_trunc('{}', {expr}, 'UTC')",
            self.spec.bucket.keyword()
        )
    }

    /// `date_trunc(bucket, expr)` in UTC, so buckets never follow a
    /// session's TimeZone.
    pub fn bucket_of(&self, expr: &str) -> String {
        self.trunc(expr)
    }

    /// The start of the bucket after the one holding `expr`.
    pub fn bucket_end(&self, expr: &str) -> String {
        format!(
            "({} + interval '{}')",
            self.trunc(expr),
            self.spec.bucket.interval()
        )
    }

    /// `a.dim1, a.dim2` (empty without dimensions), prefixed by `alias.`.
    pub fn dims(&self, alias: &str) -> String {
        self.spec
            .dimensions
            .iter()
            .map(|d| format!("{alias}.{d}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `dim1, dim2` unqualified.
    pub fn dims_bare(&self) -> String {
        self.spec
            .dimensions
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The columns of the storage table and the view, in order.
    pub fn columns(&self) -> String {
        let mut cols = vec!["bucket".to_string()];
        cols.extend(self.spec.dimensions.iter().map(|d| d.to_string()));
        cols.push("count".into());
        if self.spec.has(Measure::DistinctUserId) {
            cols.push("distinct_user_id".into());
        }
        cols.join(", ")
    }

    /// The aggregate of the base table's rows `FROM {from} WHERE {filter}`,
    /// where `from` names the base table as `a` (and may join more).
    pub fn aggregate(&self, from: &str, filter: &str) -> String {
        let mut select = vec![format!(
            "{} AS bucket",
            self.trunc(&format!("a.{}", self.time_column))
        )];
        select.extend(self.spec.dimensions.iter().map(|d| format!("a.{d} AS {d}")));
        select.push("count(*)::bigint AS count".into());
        if let (true, Some(h)) = (self.spec.has(Measure::DistinctUserId), &self.hll) {
            let user = Ident::new(USER_COLUMN).expect("static name");
            select.push(format!(
                "{h}.hll_add_agg({h}.hll_hash_bigint(a.{user})) AS distinct_user_id"
            ));
        }
        let groups: Vec<String> = (1..=self.spec.dimensions.len() + 1)
            .map(|i| i.to_string())
            .collect();
        format!(
            "SELECT {} FROM {from} WHERE {filter} GROUP BY {}",
            select.join(", "),
            groups.join(", ")
        )
    }

    /// The base table aliased `a`.
    pub fn base(&self) -> String {
        format!("{} a", self.table)
    }

    /// `a.<time column>`.
    pub fn time(&self) -> String {
        format!("a.{}", self.time_column)
    }
}
