//! The three layouts, built from one load of generated rows.
//!
//! Only the strata copy is loaded through COPY (strata's own loader, heap
//! only); the plain copies are filled from it with `INSERT … SELECT`, so the
//! generator runs once and all three hold the same ids and rows in the same
//! (time) order. Indexes are built after the load: on a fresh table that is the
//! faster honest path, and each build is timed.

use std::collections::HashMap;
use std::time::Instant;

use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use super::scratch::Scratch;
use super::{phase, BenchError, Options, PLAIN_INDEXED, SEED, SEED_BEFORE, STRATA};
use crate::config::{MaintenanceConfig, TableSpec};
use crate::db::{DbError, Ident, QualifiedName};
use crate::index::{self, IndexDef, Method};
use crate::load::{self, COPY_COLUMNS};
use crate::stats::{self, IndexSize};
use crate::{partition, schema};

/// Schemas of the plain copies; their tables are named like strata's, so the
/// workload SQL is the same text for every layout (chosen by search_path).
const SEED_SCHEMA: &str = "bench_seed_before";
const PLAIN_SCHEMA: &str = "bench_plain_indexed";

/// The keys of the B-trees the seed-before copy keeps (the seed's, minus time).
const SEED_BTREES: [&str; 3] = ["user_id", "action", "severity"];

/// One layout: where its table is and what it is called in the output.
#[derive(Clone, Debug)]
pub struct Layout {
    pub key: &'static str,
    pub table: QualifiedName,
}

impl Layout {
    pub fn schema(&self) -> &Ident {
        &self.table.schema
    }
}

/// Which rows and which query parameters.
#[derive(Clone, Debug, Serialize)]
pub struct DataShape {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub query_month: (DateTime<Utc>, DateTime<Utc>),
    pub query_day: (DateTime<Utc>, DateTime<Utc>),
    pub retention_month: (DateTime<Utc>, DateTime<Utc>),
    pub partitions_total: usize,
    pub heavy_user: i64,
    pub typical_user: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct BuildStep {
    pub what: String,
    pub ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct LayoutInfo {
    pub key: &'static str,
    pub table: String,
    pub how_built: String,
    pub steps: Vec<BuildStep>,
    pub table_bytes: i64,
    pub index_bytes: i64,
    pub indexes: Vec<IndexSize>,
}

/// A timed build of one index, alone on the server.
#[derive(Clone, Debug, Serialize)]
pub struct TimedIndex {
    pub layout: &'static str,
    pub index: String,
    pub ms: f64,
    pub bytes: i64,
}

pub struct Built {
    pub layouts: Vec<Layout>,
    pub shape: DataShape,
    pub infos: Vec<LayoutInfo>,
    pub spec: TableSpec,
    /// Partition index name -> parent index name, to name indexes in plans.
    pub parent_index: HashMap<String, String>,
    pub partitions: Vec<String>,
    pub btree_created_at: TimedIndex,
    pub brin_strata: TimedIndex,
    pub brin_plain: TimedIndex,
}

impl Built {
    pub fn layout(&self, key: &str) -> &Layout {
        self.layouts
            .iter()
            .find(|l| l.key == key)
            .expect("known layout")
    }
}

fn utc(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0)
        .single()
        .expect("valid date")
}

/// 18 whole months, as in BASELINES.md; the workloads look at November 2025.
fn shape() -> DataShape {
    DataShape {
        from: utc(2025, 1, 1),
        to: utc(2026, 7, 1),
        query_month: (utc(2025, 11, 1), utc(2025, 12, 1)),
        query_day: (utc(2025, 11, 15), utc(2025, 11, 16)),
        retention_month: (utc(2025, 1, 1), utc(2025, 2, 1)),
        partitions_total: 0,
        heavy_user: 1,
        typical_user: 1234,
    }
}

async fn exec(client: &Client, sql: &str, what: &str) -> Result<f64, BenchError> {
    let t = Instant::now();
    client
        .batch_execute(sql)
        .await
        .map_err(DbError::query(what.to_string()))?;
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

fn create_index(def: &IndexDef, table: &QualifiedName) -> Result<String, BenchError> {
    Ok(format!(
        "CREATE INDEX {} ON {table} {}",
        Ident::new(def.name.clone())?,
        def.body()
    ))
}

/// strata's schema as `strata migrate` makes it, minus its indexes, so that
/// the load writes heap only; the partitions come from the partition engine.
async fn strata_schema(client: &mut Client, spec: &TableSpec) -> Result<(), BenchError> {
    schema::migrate(client, false).await?;
    let parent = spec.name.to_string();
    let drops = client
        .query(include_str!("strata_indexes.sql"), &[&parent])
        .await
        .map_err(DbError::query("listing strata's indexes"))?;
    for row in drops {
        let (name, constraint): (String, Option<String>) = (row.get(0), row.get(1));
        let sql = match constraint {
            Some(c) => format!("ALTER TABLE {parent} DROP CONSTRAINT {}", Ident::new(c)?),
            None => format!("DROP INDEX {}", spec.name.sibling(&name)?),
        };
        exec(client, &sql, "dropping an index before the load").await?;
    }
    // Partitions as of mid-June 2026: every month of the data plus premake.
    let now = utc(2026, 6, 15);
    partition::maintain(client, spec, now, &MaintenanceConfig::default(), |_| {}).await?;
    Ok(())
}

/// Builds all three layouts and times each step.
pub async fn build(
    scratch: &Scratch,
    opts: &Options,
    started: Instant,
) -> Result<Built, BenchError> {
    let p = opts.progress;
    let spec = TableSpec::seed_default();
    let mut shape = shape();
    let mut a = scratch.connect().await?;
    let b = scratch.connect().await?;
    let strata = Layout {
        key: STRATA,
        table: spec.name.clone(),
    };
    let seed = Layout {
        key: SEED_BEFORE,
        table: QualifiedName::new(SEED_SCHEMA, spec.name.name.as_str())?,
    };
    let plain = Layout {
        key: PLAIN_INDEXED,
        table: QualifiedName::new(PLAIN_SCHEMA, spec.name.name.as_str())?,
    };
    let mut steps: HashMap<&str, Vec<BuildStep>> = HashMap::new();
    let mut step = |key: &'static str, what: String, ms: f64| {
        steps.entry(key).or_default().push(BuildStep { what, ms })
    };

    phase(p, started, "strata schema and partitions");
    let t = Instant::now();
    strata_schema(&mut a, &spec).await?;
    step(
        STRATA,
        "migrate, then partitions by the partition engine".into(),
        ms(t),
    );

    phase(p, started, "loading the strata copy with COPY (heap only)");
    let what = load::Generate {
        rows: opts.rows,
        from: shape.from,
        to: shape.to,
        seed: SEED,
        batch_rows: load::DEFAULT_BATCH_ROWS,
    };
    let strata_load = load::load_generated(&a, &strata.table, what, p).await?;
    step(
        STRATA,
        format!(
            "COPY of {} generated rows (seed {SEED}), {:.0} rows/s",
            strata_load.rows, strata_load.rows_per_sec
        ),
        strata_load.elapsed_ms as f64,
    );

    phase(
        p,
        started,
        "copying into the two plain tables (INSERT … SELECT, in parallel)",
    );
    for l in [&seed, &plain] {
        let sql = format!(
            "CREATE SCHEMA {schema}; CREATE TABLE {table} (LIKE {src} INCLUDING DEFAULTS INCLUDING GENERATED \
             INCLUDING STORAGE INCLUDING COMPRESSION)",
            schema = l.schema(),
            table = l.table,
            src = strata.table
        );
        exec(&a, &sql, "creating a plain table").await?;
    }
    let copy = |l: &Layout| {
        format!(
            "INSERT INTO {} (id, {COPY_COLUMNS}) SELECT id, {COPY_COLUMNS} FROM {}",
            l.table, strata.table
        )
    };
    let (copy_seed, copy_plain) = (copy(&seed), copy(&plain));
    let (x, y) = tokio::join!(
        exec(&a, &copy_seed, "copying rows into seed-before"),
        exec(&b, &copy_plain, "copying rows into plain-indexed")
    );
    let note = "INSERT … SELECT from the strata copy (in parallel with the other plain copy)";
    step(SEED_BEFORE, note.into(), x?);
    step(PLAIN_INDEXED, note.into(), y?);

    phase(p, started, "VACUUM (ANALYZE) of each copy");
    let vac = |l: &Layout| format!("VACUUM (ANALYZE) {}", l.table);
    let vac_strata = vac(&strata);
    let (x, y) = tokio::join!(exec(&a, &vac_strata, "vacuuming strata"), async {
        let s = exec(&b, &vac(&plain), "vacuuming plain-indexed").await?;
        Ok::<_, BenchError>((s, exec(&b, &vac(&seed), "vacuuming seed-before").await?))
    });
    step(STRATA, "VACUUM (ANALYZE) (in parallel)".into(), x?);
    let (s1, s2) = y?;
    step(PLAIN_INDEXED, "VACUUM (ANALYZE) (in parallel)".into(), s1);
    step(SEED_BEFORE, "VACUUM (ANALYZE) (in parallel)".into(), s2);

    for c in [&a, &b] {
        exec(
            c,
            &format!("SET maintenance_work_mem = '{BUILD_MEMORY}'"),
            "setting memory",
        )
        .await?;
    }
    phase(p, started, "timing the created_at indexes, one at a time");
    let wanted = index::wanted(&spec);
    let brin = wanted
        .iter()
        .find(|d| d.method == Method::Brin)
        .expect("strata's set has a BRIN")
        .clone();
    let btree_time = IndexDef {
        name: format!("idx_{}_created_at", spec.name.name.as_str()),
        method: Method::Btree,
        keys: spec.time_column.to_string(),
        columns: vec![spec.time_column.as_str().into()],
        with: vec![],
        opclass: None,
        expression: false,
    };
    let brin_strata = timed(&a, STRATA, &brin, &strata.table).await?;
    let btree_created_at = timed(&a, PLAIN_INDEXED, &btree_time, &plain.table).await?;
    let brin_plain = timed(&a, SEED_BEFORE, &brin, &seed.table).await?;
    // Only for the size comparison: the seed-before layout has no time index.
    exec(
        &a,
        &format!("DROP INDEX {}", seed.table.sibling(&brin.name)?),
        "dropping the comparison BRIN",
    )
    .await?;
    step(
        STRATA,
        format!("index {} (alone)", brin.name),
        brin_strata.ms,
    );
    step(
        PLAIN_INDEXED,
        format!("index {} (alone)", btree_time.name),
        btree_created_at.ms,
    );

    phase(
        p,
        started,
        "building the other indexes (two sessions in parallel)",
    );
    let rest: Vec<IndexDef> = wanted
        .iter()
        .filter(|d| d.method != Method::Brin)
        .cloned()
        .collect();
    let seed_set: Vec<IndexDef> = rest
        .iter()
        .filter(|d| d.columns.len() == 1 && SEED_BTREES.contains(&d.columns[0].as_str()))
        .cloned()
        .collect();
    let (x, y) = tokio::join!(build_set(&a, &strata, "(id, created_at)", &rest), async {
        let s = build_set(&b, &plain, "(id)", &rest).await?;
        Ok::<_, BenchError>((s, build_set(&b, &seed, "(id)", &seed_set).await?))
    });
    for (what, ms) in x? {
        step(STRATA, what, ms);
    }
    let (s1, s2) = y?;
    for (what, ms) in s1 {
        step(PLAIN_INDEXED, what, ms);
    }
    for (what, ms) in s2 {
        step(SEED_BEFORE, what, ms);
    }

    let partitions = partition_names(&a, &strata.table).await?;
    shape.partitions_total = partitions.len();
    let parent_index = parent_indexes(&a).await?;
    let layouts = vec![seed, plain, strata];
    let mut infos = Vec::new();
    for l in &layouts {
        infos.push(info(&a, l, steps.remove(l.key).unwrap_or_default(), &shape).await?);
    }
    Ok(Built {
        layouts,
        shape,
        infos,
        spec,
        parent_index,
        partitions,
        btree_created_at,
        brin_strata,
        brin_plain,
    })
}

/// `maintenance_work_mem` for the builds, as strata's index module uses.
const BUILD_MEMORY: &str = "256MB";

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

async fn timed(
    client: &Client,
    layout: &'static str,
    def: &IndexDef,
    table: &QualifiedName,
) -> Result<TimedIndex, BenchError> {
    let ms = exec(
        client,
        &create_index(def, table)?,
        "building a created_at index",
    )
    .await?;
    let sizes = stats::index_sizes(client, table).await?;
    let bytes = sizes
        .iter()
        .find(|s| s.name == def.name)
        .map_or(0, |s| s.bytes);
    Ok(TimedIndex {
        layout,
        index: def.name.clone(),
        ms,
        bytes,
    })
}

async fn build_set(
    client: &Client,
    layout: &Layout,
    pk: &str,
    defs: &[IndexDef],
) -> Result<Vec<(String, f64)>, BenchError> {
    let mut out = Vec::new();
    let sql = format!("ALTER TABLE {} ADD PRIMARY KEY {pk}", layout.table);
    out.push((
        format!("PRIMARY KEY {pk}"),
        exec(client, &sql, "adding the primary key").await?,
    ));
    for def in defs {
        let ms = exec(
            client,
            &create_index(def, &layout.table)?,
            "building an index",
        )
        .await?;
        out.push((format!("index {} ({})", def.name, def.body()), ms));
    }
    Ok(out)
}

async fn partition_names(
    client: &Client,
    parent: &QualifiedName,
) -> Result<Vec<String>, BenchError> {
    Ok(client
        .query(include_str!("partitions.sql"), &[&parent.to_string()])
        .await
        .map_err(DbError::query("listing partitions"))?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

async fn parent_indexes(client: &Client) -> Result<HashMap<String, String>, BenchError> {
    Ok(client
        .query(include_str!("index_parents.sql"), &[])
        .await
        .map_err(DbError::query("listing partition indexes"))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

async fn info(
    client: &Client,
    l: &Layout,
    steps: Vec<BuildStep>,
    shape: &DataShape,
) -> Result<LayoutInfo, BenchError> {
    let row = client
        .query_one(include_str!("sizes.sql"), &[&l.table.to_string()])
        .await
        .map_err(DbError::query("reading table sizes"))?;
    let how_built = match l.key {
        SEED_BEFORE => "plain table (LIKE strata's audit_logs: same columns, stored search_vector), rows by \
                        INSERT … SELECT from the strata copy (same ids, time order), VACUUM (ANALYZE), then \
                        PRIMARY KEY (id) and B-trees on user_id, action, severity. No index on created_at, \
                        details or search_vector."
            .to_string(),
        PLAIN_INDEXED => "plain table built like seed-before, then PRIMARY KEY (id), a B-tree on created_at and \
                          strata's other indexes: B-trees on user_id, action, severity, (user_id, created_at \
                          DESC), GIN on details (jsonb_path_ops) and on search_vector."
            .to_string(),
        _ => format!(
            "strata's schema (strata migrate); {} monthly partitions plus the default one made by the partition \
             engine as of 2026-06-15 (premake 6); rows by strata's COPY loader with no index present; then \
             VACUUM (ANALYZE), PRIMARY KEY (id, created_at) and strata's index set (BRIN on created_at, B-trees, \
             GINs) built on the parent, which builds each partition's index.",
            shape.partitions_total.saturating_sub(1)
        ),
    };
    Ok(LayoutInfo {
        key: l.key,
        table: l.table.display_unquoted(),
        how_built,
        steps,
        table_bytes: row.get(0),
        index_bytes: row.get(1),
        indexes: stats::index_sizes(client, &l.table).await?,
    })
}
