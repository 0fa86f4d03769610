//! One audit row as the loader sees it, validated and encoded for COPY.

use std::fmt::Write;
use std::net::IpAddr;

use chrono::{DateTime, Datelike, Utc};
use serde::Deserialize;

/// Columns the loader writes, in COPY order. `id` comes from the sequence and
/// `search_vector` is generated.
pub const COPY_COLUMNS: &str =
    "user_id, action, resource_type, resource_id, details, ip_address, user_agent, status, severity, created_at";

/// Column limits of the seed's schema.
pub const MAX_ACTION: usize = 100;
pub const MAX_RESOURCE_TYPE: usize = 50;
pub const MAX_STATUS: usize = 20;
pub const MAX_SEVERITY: usize = 20;

#[derive(Clone, Debug, PartialEq)]
pub struct AuditRow {
    pub user_id: i64,
    pub action: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<i64>,
    /// JSON text exactly as given: re-serialising through `serde_json::Value`
    /// would round large numbers to f64 and reorder nothing useful.
    pub details: Option<String>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub status: Option<String>,
    pub severity: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// The input shape of NDJSON lines and CSV records. `id` and `search_vector`
/// are accepted (exports contain them) and ignored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputRow {
    #[serde(default)]
    pub id: Option<serde_json::Value>,
    #[serde(default)]
    pub search_vector: Option<serde_json::Value>,
    pub user_id: Option<i64>,
    pub action: Option<String>,
    #[serde(default)]
    pub resource_type: Option<String>,
    #[serde(default)]
    pub resource_id: Option<i64>,
    #[serde(default)]
    pub details: Option<Box<serde_json::value::RawValue>>,
    #[serde(default)]
    pub ip_address: Option<String>,
    #[serde(default)]
    pub user_agent: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub severity: Option<String>,
    pub created_at: Option<String>,
}

fn check_len(field: &str, value: &Option<String>, max: usize) -> Result<(), String> {
    match value {
        Some(v) if v.chars().count() > max => Err(format!(
            "{field} is {} characters long; the column allows {max}",
            v.chars().count()
        )),
        Some(v) if v.contains('\0') => Err(format!("{field} contains a NUL character")),
        _ => Ok(()),
    }
}

/// Parses an `inet` value: an address with an optional prefix length.
pub fn valid_inet(s: &str) -> bool {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let Ok(ip) = addr.parse::<IpAddr>() else {
        return false;
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    // Digits only: `parse` would also take "+8", which inet refuses.
    prefix.is_none_or(|p| {
        !p.is_empty()
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u8>().is_ok_and(|p| p <= max)
    })
}

pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    let parsed = DateTime::parse_from_rfc3339(s).ok().or_else(|| {
        // PostgreSQL's own output format: "2025-03-01 12:00:00+00".
        ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%#z"]
            .iter()
            .find_map(|fmt| DateTime::parse_from_str(s, fmt).ok())
    });
    match parsed {
        // PostgreSQL has no year 0 (1 BC comes before 1 AD).
        Some(t) if t.with_timezone(&Utc).year() < 1 => {
            Err(format!("created_at {s:?} is before the year 1"))
        }
        Some(t) => Ok(t.with_timezone(&Utc)),
        None => Err(format!(
            "created_at {s:?} is not a timestamp with a time zone (e.g. 2025-03-01T12:00:00Z)"
        )),
    }
}

impl InputRow {
    pub fn validate(self) -> Result<AuditRow, String> {
        let user_id = self.user_id.ok_or("user_id is missing (it is NOT NULL)")?;
        let action = self.action.ok_or("action is missing (it is NOT NULL)")?;
        if action.is_empty() {
            return Err("action is empty".into());
        }
        check_len("action", &Some(action.clone()), MAX_ACTION)?;
        check_len("resource_type", &self.resource_type, MAX_RESOURCE_TYPE)?;
        check_len("status", &self.status, MAX_STATUS)?;
        check_len("severity", &self.severity, MAX_SEVERITY)?;
        check_len("user_agent", &self.user_agent, usize::MAX)?;
        if let Some(ip) = &self.ip_address {
            if !valid_inet(ip) {
                return Err(format!("ip_address {ip:?} is not an IPv4 or IPv6 address"));
            }
        }
        let created_at = match self.created_at {
            Some(s) => parse_time(&s)?,
            None => return Err("created_at is missing (it is NOT NULL)".into()),
        };
        let details = match self.details.as_deref().map(|raw| raw.get().trim()) {
            None | Some("null") => None,
            // CSV carries JSON as text, and so does NDJSON written by tools
            // that stringify nested objects.
            Some(text) if text.starts_with('"') => {
                let inner: String =
                    serde_json::from_str(text).map_err(|e| format!("details: {e}"))?;
                let inner = inner.trim();
                if inner.starts_with(['{', '[']) {
                    serde_json::from_str::<&serde_json::value::RawValue>(inner)
                        .map_err(|e| format!("details is not valid JSON: {e}"))?;
                    Some(inner.to_string())
                } else {
                    Some(text.to_string())
                }
            }
            Some(text) => Some(text.to_string()),
        };
        if let Some(d) = &details {
            if d.contains("\\u0000") {
                return Err("details contains a NUL character, which jsonb cannot store".into());
            }
        }
        Ok(AuditRow {
            user_id,
            action,
            resource_type: self.resource_type,
            resource_id: self.resource_id,
            details,
            ip_address: self.ip_address,
            user_agent: self.user_agent,
            status: self.status,
            severity: self.severity,
            created_at,
        })
    }
}

/// Appends `s` escaped for COPY's text format.
pub fn push_text(buf: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => buf.push_str("\\\\"),
            '\t' => buf.push_str("\\t"),
            '\n' => buf.push_str("\\n"),
            '\r' => buf.push_str("\\r"),
            c => buf.push(c),
        }
    }
}

fn push_opt(buf: &mut String, v: Option<&str>) {
    match v {
        Some(s) => push_text(buf, s),
        None => buf.push_str("\\N"),
    }
}

impl AuditRow {
    /// Appends the row as one line of COPY text format.
    pub fn encode(&self, buf: &mut String) {
        let _ = write!(buf, "{}\t", self.user_id);
        push_text(buf, &self.action);
        buf.push('\t');
        push_opt(buf, self.resource_type.as_deref());
        buf.push('\t');
        match self.resource_id {
            Some(id) => {
                let _ = write!(buf, "{id}");
            }
            None => buf.push_str("\\N"),
        }
        buf.push('\t');
        match &self.details {
            Some(d) => push_text(buf, d),
            None => buf.push_str("\\N"),
        }
        buf.push('\t');
        push_opt(buf, self.ip_address.as_deref());
        buf.push('\t');
        push_opt(buf, self.user_agent.as_deref());
        buf.push('\t');
        push_opt(buf, self.status.as_deref());
        buf.push('\t');
        push_opt(buf, self.severity.as_deref());
        buf.push('\t');
        let _ = write!(
            buf,
            "{}",
            self.created_at.format("%Y-%m-%d %H:%M:%S%.6f+00")
        );
        buf.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(json: &str) -> Result<AuditRow, String> {
        serde_json::from_str::<InputRow>(json)
            .map_err(|e| e.to_string())?
            .validate()
    }

    #[test]
    fn a_good_row_encodes_with_escapes_and_nulls() {
        let row = input(
            r#"{"user_id":7,"action":"user.login","details":{"note":"a\tb\\c\nd"},"ip_address":"2001:db8::1",
                "created_at":"2025-03-01T12:00:00+02:00","status":"success"}"#,
        )
        .unwrap();
        let mut buf = String::new();
        row.encode(&mut buf);
        assert_eq!(
            buf,
            "7\tuser.login\t\\N\t\\N\t{\"note\":\"a\\\\tb\\\\\\\\c\\\\nd\"}\t2001:db8::1\t\\N\tsuccess\t\\N\t2025-03-01 10:00:00.000000+00\n"
        );
    }

    #[test]
    fn bad_rows_name_the_field() {
        assert!(
            input(r#"{"action":"x","created_at":"2025-01-01T00:00:00Z"}"#)
                .unwrap_err()
                .contains("user_id")
        );
        let long = "a".repeat(101);
        let e = input(&format!(
            r#"{{"user_id":1,"action":"{long}","created_at":"2025-01-01T00:00:00Z"}}"#
        ))
        .unwrap_err();
        assert!(e.contains("action is 101 characters"), "{e}");
        let e = input(r#"{"user_id":1,"action":"x","ip_address":"300.1.1.1","created_at":"2025-01-01T00:00:00Z"}"#).unwrap_err();
        assert!(e.contains("ip_address"), "{e}");
        let e = input(r#"{"user_id":1,"action":"x","created_at":"yesterday"}"#).unwrap_err();
        assert!(e.contains("created_at"), "{e}");
        let e = input(
            r#"{"user_id":1,"action":"x","created_at":"2025-01-01T00:00:00Z","colour":"red"}"#,
        )
        .unwrap_err();
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn inet_accepts_prefixes() {
        assert!(valid_inet("10.0.0.0/8"));
        assert!(valid_inet("::1"));
        assert!(!valid_inet("10.0.0.0/33"));
        assert!(!valid_inet("example.com"));
        assert!(!valid_inet("10.0.0.0/+8"), "inet refuses a signed prefix");
        assert!(!valid_inet("10.0.0.0/"));
    }

    #[test]
    fn details_keep_their_exact_text() {
        // 2^63 + 1 does not fit an f64; jsonb stores it exactly, so must we.
        let row = input(
            r#"{"user_id":1,"action":"x","details":{"big":9223372036854775809,"f":0.1000000000000000055511151231257827},
                "created_at":"2025-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(
            row.details.as_deref(),
            Some(r#"{"big":9223372036854775809,"f":0.1000000000000000055511151231257827}"#)
        );
        let stringified = input(
            r#"{"user_id":1,"action":"x","details":"{\"a\": 1}","created_at":"2025-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(stringified.details.as_deref(), Some(r#"{"a": 1}"#));
        let e = input(r#"{"user_id":1,"action":"x","details":{"a":"\u0000"},"created_at":"2025-01-01T00:00:00Z"}"#)
            .unwrap_err();
        assert!(e.contains("NUL"), "{e}");
    }

    #[test]
    fn year_zero_is_refused() {
        let e = parse_time("0000-06-01T00:00:00Z").unwrap_err();
        assert!(e.contains("before the year 1"), "{e}");
    }

    #[test]
    fn postgres_timestamps_parse() {
        assert_eq!(
            parse_time("2025-03-01 12:00:00+00").unwrap().to_rfc3339(),
            "2025-03-01T12:00:00+00:00"
        );
        assert_eq!(
            parse_time("2025-03-01 12:00:00.25-05")
                .unwrap()
                .to_rfc3339(),
            "2025-03-01T17:00:00.250+00:00"
        );
    }
}
