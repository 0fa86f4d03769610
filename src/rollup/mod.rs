//! Rollups: continuous aggregates of a managed table that never return a
//! stale number.
//!
//! Each rollup keeps partial state (a count, optionally an hll sketch of
//! `user_id`) per time bucket and dimension values in a table of the
//! `strata` schema. Statement triggers with transition tables on the table
//! and on each of its partitions log the touched time range of every write
//! below the invalidation threshold; strata's own partition DDL (retention
//! detach/drop, restores, attaches) logs through [`invalidate_range`]. The
//! view `<table>_<rollup>` reads materialized buckets below the watermark
//! that no pending invalidation covers, plus a live aggregate of the base
//! rows above the watermark and in the invalidated ranges. A refresh
//! ([`refresh`], the `RollupRefresh` operation) folds both back into the
//! materialized state in short transactions.

mod apply;
mod invalidate;
mod layout;
mod list;
mod refresh;
mod summary;
mod triggers;
mod view;

pub use apply::{apply, ApplyOutcome};
pub use invalidate::invalidate_range;
pub use layout::Layout;
pub use list::{list, RollupStatus};
pub use refresh::{refresh, RefreshOutcome, RollupRefreshed};
pub use summary::{severity_counts, SeverityCount, Source};
pub use triggers::cover_new_partitions;
