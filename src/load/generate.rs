//! Synthetic audit rows: skewed users, weighted actions and severities, a few
//! JSONB keys, IPv4/IPv6 and user agents, roughly in time order.
//!
//! [`SERVER_SIDE_SQL`] generates rows of the same shape inside PostgreSQL; the
//! loader's `--compare` runs it to measure the server-side ceiling.

use chrono::{DateTime, Duration, Utc};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::row::AuditRow;

pub const USERS: i64 = 5000;

/// (action, resource type). Forty actions over eight resource types.
const ACTIONS: [(&str, &str); 40] = [
    ("user.login", "user"),
    ("user.logout", "user"),
    ("user.login_failed", "user"),
    ("user.password_change", "user"),
    ("user.mfa_enabled", "user"),
    ("user.profile_update", "user"),
    ("user.create", "user"),
    ("user.delete", "user"),
    ("document.create", "document"),
    ("document.read", "document"),
    ("document.update", "document"),
    ("document.delete", "document"),
    ("document.share", "document"),
    ("document.export", "document"),
    ("project.create", "project"),
    ("project.update", "project"),
    ("project.archive", "project"),
    ("project.member_add", "project"),
    ("project.member_remove", "project"),
    ("api_key.create", "api_key"),
    ("api_key.revoke", "api_key"),
    ("api_key.use", "api_key"),
    ("billing.invoice_view", "billing"),
    ("billing.payment", "billing"),
    ("billing.plan_change", "billing"),
    ("billing.refund", "billing"),
    ("settings.update", "settings"),
    ("settings.sso_update", "settings"),
    ("settings.webhook_add", "settings"),
    ("settings.webhook_remove", "settings"),
    ("role.grant", "role"),
    ("role.revoke", "role"),
    ("role.create", "role"),
    ("role.delete", "role"),
    ("file.upload", "file"),
    ("file.download", "file"),
    ("file.delete", "file"),
    ("file.scan", "file"),
    ("admin.impersonate", "user"),
    ("admin.audit_export", "settings"),
];

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];
const REGIONS: [&str; 6] = [
    "us-east-1",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-south-1",
    "ap-northeast-1",
];
const AGENTS: [&str; 6] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "curl/8.5.0",
    "python-requests/2.32.3",
];

/// Deterministic generator of a slice of the rows: row `i` of `total` falls at
/// `from + (to - from) * i / total` plus up to a minute of jitter.
pub struct Generator {
    rng: SmallRng,
    from: DateTime<Utc>,
    span_us: i64,
    total: u64,
}

impl Generator {
    pub fn new(seed: u64, from: DateTime<Utc>, to: DateTime<Utc>, total: u64) -> Generator {
        Generator {
            rng: SmallRng::seed_from_u64(seed),
            from,
            span_us: (to - from).num_microseconds().unwrap_or(i64::MAX).max(1),
            total: total.max(1),
        }
    }

    pub fn row(&mut self, i: u64) -> AuditRow {
        let r = &mut self.rng;
        // Skewed: user 1 gets ~1.4% of rows, the long tail a few each.
        let u: f64 = r.gen();
        let user_id = 1 + (USERS as f64 * u * u) as i64;
        let (action, resource_type) = ACTIONS[weighted_action(r)];
        let severity = match r.gen_range(0..100) {
            0..=79 => "info",
            80..=94 => "warning",
            95..=98 => "error",
            _ => "critical",
        };
        let status = if r.gen_range(0..100) < 95 {
            "success"
        } else {
            "failure"
        };
        let details = serde_json::json!({
            "method": METHODS[r.gen_range(0..METHODS.len())],
            "region": REGIONS[r.gen_range(0..REGIONS.len())],
            "request_id": format!("{:016x}", r.gen::<u64>()),
            "path": format!("/api/v1/{resource_type}s/{}", r.gen_range(1..100_000)),
            "duration_ms": r.gen_range(1..2000),
        });
        let ip_address = if r.gen_range(0..10) == 0 {
            format!(
                "2001:db8:{:x}:{:x}::{:x}",
                r.gen::<u16>(),
                r.gen::<u16>(),
                r.gen::<u16>()
            )
        } else {
            format!(
                "{}.{}.{}.{}",
                r.gen_range(1..224),
                r.gen::<u8>(),
                r.gen::<u8>(),
                r.gen_range(1..255)
            )
        };
        let offset = (self.span_us as i128 * i as i128 / self.total as i128) as i64;
        let jitter = r
            .gen_range(0..60_000_000i64)
            .min(self.span_us - offset - 1)
            .max(0);
        AuditRow {
            user_id,
            action: action.to_string(),
            resource_type: Some(resource_type.to_string()),
            resource_id: Some(r.gen_range(1..1_000_000)),
            details: Some(details.to_string()),
            ip_address: Some(ip_address),
            user_agent: Some(AGENTS[r.gen_range(0..AGENTS.len())].to_string()),
            status: Some(status.to_string()),
            severity: Some(severity.to_string()),
            created_at: self.from + Duration::microseconds(offset + jitter),
        }
    }
}

/// Reads and logins dominate real audit logs; the rest share the remainder.
fn weighted_action(r: &mut SmallRng) -> usize {
    match r.gen_range(0..100) {
        0..=19 => 0,   // user.login
        20..=34 => 9,  // document.read
        35..=41 => 35, // file.download
        42..=46 => 21, // api_key.use
        _ => r.gen_range(0..ACTIONS.len()),
    }
}

/// The same distribution generated by the server: `$1` rows over `[$2, $3)`.
/// Used as the ceiling a client-side loader is measured against.
pub const SERVER_SIDE_SQL: &str = "
INSERT INTO public.audit_logs
    (user_id, action, resource_type, resource_id, details, ip_address, user_agent, status, severity, created_at)
SELECT 1 + floor(5000 * u * u)::bigint,
       a.action, a.rtype, 1 + floor(random() * 999999)::bigint,
       jsonb_build_object(
           'method', (ARRAY['GET','POST','PUT','PATCH','DELETE'])[1 + floor(random() * 5)::int],
           'region', (ARRAY['us-east-1','us-west-2','eu-west-1','eu-central-1','ap-south-1','ap-northeast-1'])[1 + floor(random() * 6)::int],
           'request_id', lpad(to_hex((random() * 9007199254740991)::bigint), 16, '0'),
           'path', '/api/v1/' || a.rtype || 's/' || (1 + floor(random() * 99999))::int,
           'duration_ms', 1 + floor(random() * 1999)::int),
       CASE WHEN random() < 0.1
            THEN ('2001:db8:' || to_hex(floor(random() * 65535)::int) || ':' || to_hex(floor(random() * 65535)::int) || '::' || to_hex(floor(random() * 65535)::int))::inet
            ELSE ((1 + floor(random() * 223))::int || '.' || floor(random() * 256)::int || '.' || floor(random() * 256)::int || '.' || (1 + floor(random() * 254))::int)::inet END,
       (ARRAY['Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36',
              'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15',
              'Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0',
              'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148',
              'curl/8.5.0', 'python-requests/2.32.3'])[1 + floor(random() * 6)::int],
       CASE WHEN random() < 0.95 THEN 'success' ELSE 'failure' END,
       CASE WHEN s < 0.80 THEN 'info' WHEN s < 0.95 THEN 'warning' WHEN s < 0.99 THEN 'error' ELSE 'critical' END,
       $2::timestamptz + ($3::timestamptz - $2::timestamptz) * (g::float8 / $1::int8) + random() * interval '60 seconds'
  FROM generate_series(0, $1::int8 - 1) AS g,
       LATERAL (SELECT random() AS u, random() AS s, floor(random() * 40)::int AS k, g AS keep) AS r,
       LATERAL (SELECT (ARRAY['user.login','user.logout','user.login_failed','user.password_change','user.mfa_enabled',
                              'user.profile_update','user.create','user.delete','document.create','document.read',
                              'document.update','document.delete','document.share','document.export','project.create',
                              'project.update','project.archive','project.member_add','project.member_remove',
                              'api_key.create','api_key.revoke','api_key.use','billing.invoice_view','billing.payment',
                              'billing.plan_change','billing.refund','settings.update','settings.sso_update',
                              'settings.webhook_add','settings.webhook_remove','role.grant','role.revoke','role.create',
                              'role.delete','file.upload','file.download','file.delete','file.scan',
                              'admin.impersonate','admin.audit_export'])[1 + r.k] AS action,
                       (ARRAY['user','user','user','user','user','user','user','user','document','document','document',
                              'document','document','document','project','project','project','project','project',
                              'api_key','api_key','api_key','billing','billing','billing','billing','settings',
                              'settings','settings','settings','role','role','role','role','file','file','file','file',
                              'user','settings'])[1 + r.k] AS rtype) AS a";

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn rows_stay_in_range_and_roughly_ordered() {
        let (from, to) = (ts("2025-01-01T00:00:00Z"), ts("2025-01-02T00:00:00Z"));
        let mut g = Generator::new(1, from, to, 1000);
        let rows: Vec<AuditRow> = (0..1000).map(|i| g.row(i)).collect();
        assert!(rows
            .iter()
            .all(|r| r.created_at >= from && r.created_at < to));
        assert!(rows[0].created_at < rows[999].created_at);
        assert!(rows.iter().all(|r| (1..=USERS).contains(&r.user_id)));
    }

    #[test]
    fn the_same_seed_gives_the_same_rows() {
        let (from, to) = (ts("2025-01-01T00:00:00Z"), ts("2025-02-01T00:00:00Z"));
        let a: Vec<AuditRow> = {
            let mut g = Generator::new(9, from, to, 10);
            (0..10).map(|i| g.row(i)).collect()
        };
        let b: Vec<AuditRow> = {
            let mut g = Generator::new(9, from, to, 10);
            (0..10).map(|i| g.row(i)).collect()
        };
        assert_eq!(a, b);
    }

    #[test]
    fn users_are_skewed() {
        let (from, to) = (ts("2025-01-01T00:00:00Z"), ts("2025-02-01T00:00:00Z"));
        let mut g = Generator::new(3, from, to, 100_000);
        let user1 = (0..100_000).filter(|i| g.row(*i).user_id == 1).count();
        // ~sqrt(1/5000) = 1.4% of rows for user 1, against 0.02% if uniform.
        assert!((800..2000).contains(&user1), "user 1 has {user1} rows");
    }
}
