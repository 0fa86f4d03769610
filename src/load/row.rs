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
    #[serde(default, deserialize_with = "integer")]
    pub user_id: Option<i64>,
    pub action: Option<String>,
    #[serde(default)]
    pub resource_type: Option<String>,
    #[serde(default, deserialize_with = "integer")]
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

/// A bigint as JSON has it: `7` or `7.0` (JSON, and JSON Schema's
/// `integer`, make no difference), never `7.5` or beyond the bigint range.
fn integer<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::de::Error;
    match Option::<serde_json::Number>::deserialize(d)? {
        None => Ok(None),
        Some(n) => {
            if let Some(i) = n.as_i64() {
                return Ok(Some(i));
            }
            match n.as_f64() {
                // Integral and within 2^53, where a float is exact: a larger
                // one may be a rounded integer literal beyond the range.
                Some(f) if f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0 => {
                    Ok(Some(f as i64))
                }
                _ => Err(D::Error::custom(format!("{n} is not a bigint"))),
            }
        }
    }
}

fn check_len(field: &str, value: Option<&str>, max: usize) -> Result<(), String> {
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

/// Allowed `status` values (the seed's vocabulary).
pub const STATUSES: &[&str] = &["success", "failure", "error", "pending", "denied"];
/// Allowed `severity` values (syslog's names, lower case).
pub const SEVERITIES: &[&str] = &["debug", "info", "notice", "warning", "error", "critical"];
/// Bytes of one posted row's `details` JSON at most.
pub const MAX_DETAILS_BYTES: usize = 16 * 1024;
/// Action namespaces only strata itself writes (security events, admin
/// actions, its own records): a writer token posting one could forge them.
pub const RESERVED_NAMESPACES: &[&str] = &["security.", "admin.", "strata."];
/// Key in `details` that marks an event written by the server itself. Writers
/// cannot set it: a posted row whose details carry it is refused.
pub const SERVER_MARKER: &str = "_strata";

/// Where a row comes from, which decides the rules beyond the column types.
#[derive(Clone, Copy, Debug)]
pub enum Origin {
    /// `strata load --file`: run by whoever holds the database's credentials,
    /// often with an export of the table (which carries `id`, `search_vector`
    /// and strata's own events).
    File,
    /// `POST /audit-logs` with a writer token: bounded in size and time, and
    /// kept out of strata's own namespaces.
    Writer(Window),
}

/// The `created_at` a writer may set: from `now - past` to `now + future`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub past: chrono::Duration,
    pub future: chrono::Duration,
}

/// The rules one row is checked against.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    pub origin: Origin,
    /// The time a missing `created_at` becomes (the column's DEFAULT now()).
    pub now: DateTime<Utc>,
}

/// Why a row was refused: the column at fault, when one is, and a sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub field: Option<String>,
    pub reason: String,
}

impl Invalid {
    fn of(field: &str, reason: impl Into<String>) -> Invalid {
        Invalid {
            field: Some(field.to_string()),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Parses one JSON object into an [`InputRow`], naming the field at fault.
pub fn parse(text: &str) -> Result<InputRow, Invalid> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let field = if path != "." {
            Some(path)
        } else {
            // `unknown field `colour`, expected …`
            inner
                .strip_prefix("unknown field `")
                .and_then(|rest| rest.split('`').next())
                .map(str::to_string)
        };
        Invalid {
            field,
            reason: inner,
        }
    })
}

fn len_ok(field: &str, value: Option<&str>, max: usize) -> Result<(), Invalid> {
    check_len(field, value, max).map_err(|m| Invalid::of(field, m))
}

fn one_of(field: &str, value: Option<&str>, allowed: &[&str]) -> Result<(), Invalid> {
    match value {
        Some(v) if !allowed.contains(&v) => Err(Invalid::of(
            field,
            format!("{field} {v:?} is not one of {}", allowed.join(", ")),
        )),
        _ => Ok(()),
    }
}

/// Whether JSON text holds the escape `\u0000` (a NUL once parsed): a
/// backslash-u preceded by an even number of further backslashes, so that
/// an escaped backslash followed by `u0000` (`\\u0000`) is not one.
fn escapes_nul(text: &str) -> bool {
    let b = text.as_bytes();
    let mut from = 0;
    while let Some(at) = text[from..].find("\\u0000").map(|i| i + from) {
        let before = b[..at].iter().rev().take_while(|&&c| c == b'\\').count();
        if before % 2 == 0 {
            return true;
        }
        from = at + 1;
    }
    false
}

/// `details` as stored: JSON text, unwrapping a stringified object.
fn details_text(raw: Option<&serde_json::value::RawValue>) -> Result<Option<String>, Invalid> {
    let bad = |m: String| Invalid::of("details", m);
    let text = match raw.map(|raw| raw.get().trim()) {
        None | Some("null") => return Ok(None),
        Some(text) => text,
    };
    // CSV carries JSON as text, and so does NDJSON written by tools that
    // stringify nested objects.
    let text = if text.starts_with('"') {
        let inner: String = serde_json::from_str(text).map_err(|e| bad(format!("details: {e}")))?;
        let inner = inner.trim().to_string();
        if inner.starts_with(['{', '[']) {
            serde_json::from_str::<&serde_json::value::RawValue>(&inner)
                .map_err(|e| bad(format!("details is not valid JSON: {e}")))?;
        }
        inner
    } else {
        text.to_string()
    };
    if escapes_nul(&text) {
        return Err(bad(
            "details contains a NUL character, which jsonb cannot store".into(),
        ));
    }
    if !text.starts_with('{') {
        return Err(bad("details must be a JSON object".into()));
    }
    Ok(Some(text))
}

impl InputRow {
    /// Checks the row against the column types and `rules`, and turns it
    /// into the row COPY writes. The API and the file loader both come
    /// through here, so a row one accepts the other accepts too (apart from
    /// the writer's own bounds, [`Origin::Writer`]).
    pub fn validate(self, rules: &Rules) -> Result<AuditRow, Invalid> {
        let writer = match rules.origin {
            Origin::Writer(w) => Some(w),
            Origin::File => None,
        };
        if writer.is_some() {
            for (field, set) in [
                ("id", self.id.is_some()),
                ("search_vector", self.search_vector.is_some()),
            ] {
                if set {
                    return Err(Invalid::of(
                        field,
                        format!("{field} is assigned by the server and cannot be posted"),
                    ));
                }
            }
        }
        let user_id = self
            .user_id
            .ok_or_else(|| Invalid::of("user_id", "user_id is missing (it is NOT NULL)"))?;
        let action = self
            .action
            .ok_or_else(|| Invalid::of("action", "action is missing (it is NOT NULL)"))?;
        if action.is_empty() {
            return Err(Invalid::of("action", "action is empty"));
        }
        len_ok("action", Some(&action), MAX_ACTION)?;
        len_ok(
            "resource_type",
            self.resource_type.as_deref(),
            MAX_RESOURCE_TYPE,
        )?;
        len_ok("status", self.status.as_deref(), MAX_STATUS)?;
        len_ok("severity", self.severity.as_deref(), MAX_SEVERITY)?;
        len_ok("user_agent", self.user_agent.as_deref(), usize::MAX)?;
        one_of("status", self.status.as_deref(), STATUSES)?;
        one_of("severity", self.severity.as_deref(), SEVERITIES)?;
        if let Some(ip) = &self.ip_address {
            if !valid_inet(ip) {
                return Err(Invalid::of(
                    "ip_address",
                    format!("ip_address {ip:?} is not an IPv4 or IPv6 address"),
                ));
            }
        }
        // The column's DEFAULT now(), applied here so that both paths agree.
        let created_at = match &self.created_at {
            Some(s) => parse_time(s).map_err(|m| Invalid::of("created_at", m))?,
            None => rules.now,
        };
        let details = details_text(self.details.as_deref())?;
        if let Some(window) = writer {
            check_writer(&action, details.as_deref(), created_at, rules.now, window)?;
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

/// What only a writer token is held to: size, time window, namespaces.
fn check_writer(
    action: &str,
    details: Option<&str>,
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
    window: Window,
) -> Result<(), Invalid> {
    // Case and surrounding blanks must not get around the reservation.
    let folded = action.trim().to_lowercase();
    if let Some(ns) = RESERVED_NAMESPACES
        .iter()
        .find(|ns| folded.starts_with(**ns))
    {
        return Err(Invalid::of(
            "action",
            format!(
                "action {action:?} is in the reserved namespace {ns:?}: only strata itself writes {} events",
                RESERVED_NAMESPACES.join(", ")
            ),
        ));
    }
    if let Some(d) = details {
        if d.len() > MAX_DETAILS_BYTES {
            return Err(Invalid::of(
                "details",
                format!(
                    "details is {} bytes; at most {MAX_DETAILS_BYTES} are allowed",
                    d.len()
                ),
            ));
        }
        let keys: std::collections::BTreeMap<String, serde::de::IgnoredAny> =
            serde_json::from_str(d).map_err(|e| Invalid::of("details", format!("details: {e}")))?;
        if keys.contains_key(SERVER_MARKER) {
            return Err(Invalid::of(
                "details",
                format!("details.{SERVER_MARKER} is set only by strata on its own events"),
            ));
        }
    }
    // Checked: a huge configured window means "no bound", not a panic.
    let earliest = now
        .checked_sub_signed(window.past)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let latest = now
        .checked_add_signed(window.future)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    if created_at < earliest || created_at > latest {
        return Err(Invalid::of(
            "created_at",
            format!(
                "created_at {} is outside the accepted window {} .. {} (now - {}, now + {}; [api] accept_past and \
                 accept_future)",
                created_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                earliest.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                latest.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                human(window.past),
                human(window.future),
            ),
        ));
    }
    Ok(())
}

/// `30 days`, `5 minutes`, `90 s`: the window in the unit it was likely set in.
fn human(d: chrono::Duration) -> String {
    let s = d.num_seconds();
    match s {
        s if s > 0 && s % 86_400 == 0 => format!("{} days", s / 86_400),
        s if s > 0 && s % 3600 == 0 => format!("{} hours", s / 3600),
        s if s > 0 && s % 60 == 0 => format!("{} minutes", s / 60),
        s => format!("{s} s"),
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

    fn rules(origin: Origin) -> Rules {
        Rules {
            origin,
            now: "2025-01-01T12:00:00Z".parse().unwrap(),
        }
    }

    fn input(json: &str) -> Result<AuditRow, String> {
        parse(json)
            .and_then(|r| r.validate(&rules(Origin::File)))
            .map_err(|e| e.reason)
    }

    fn as_writer(json: &str) -> Result<AuditRow, Invalid> {
        let window = Window {
            past: chrono::Duration::days(30),
            future: chrono::Duration::minutes(5),
        };
        parse(json).and_then(|r| r.validate(&rules(Origin::Writer(window))))
    }

    #[test]
    fn ids_are_json_integers_and_nul_escapes_are_told_from_escaped_backslashes() {
        // JSON (and the OpenAPI document's `integer`) makes 7.0 the number 7.
        assert_eq!(input(r#"{"user_id":7.0,"action":"x"}"#).unwrap().user_id, 7);
        assert_eq!(
            input(r#"{"user_id":1,"resource_id":-3.0,"action":"x"}"#)
                .unwrap()
                .resource_id,
            Some(-3)
        );
        for bad in ["7.5", "-9223372036854775809", "1e300"] {
            let e = input(&format!(r#"{{"user_id":{bad},"action":"x"}}"#)).unwrap_err();
            assert!(e.contains("not a bigint"), "{bad}: {e}");
        }
        let nul = input(r#"{"user_id":1,"action":"x","details":{"a":"\u0000"}}"#).unwrap_err();
        assert!(nul.contains("NUL"), "{nul}");
        // A backslash, then the text u0000: no NUL.
        assert!(input(r#"{"user_id":1,"action":"x","details":{"a":"\\u0000"}}"#).is_ok());
        let nul = input(r#"{"user_id":1,"action":"x","details":{"a":"\\\u0000"}}"#).unwrap_err();
        assert!(nul.contains("NUL"), "{nul}");
    }

    #[test]
    fn the_file_loader_checks_what_the_api_checks() {
        let e = input(r#"{"user_id":1,"action":"x","severity":"bogus"}"#).unwrap_err();
        assert!(e.contains("severity \"bogus\" is not one of"), "{e}");
        let e = input(r#"{"user_id":1,"action":"x","status":"weird"}"#).unwrap_err();
        assert!(e.contains("status \"weird\""), "{e}");
        // created_at defaults to now, as the column (and the API) does.
        let row = input(r#"{"user_id":1,"action":"x"}"#).unwrap();
        assert_eq!(row.created_at, rules(Origin::File).now);
        // An export carries id and search_vector: ignored for a file, refused from a writer.
        assert!(input(r#"{"id":3,"user_id":1,"action":"x"}"#).is_ok());
        let e = as_writer(r#"{"id":3,"user_id":1,"action":"x"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("id"));
    }

    #[test]
    fn writers_stay_inside_the_window_and_out_of_reserved_namespaces() {
        assert!(
            as_writer(r#"{"user_id":1,"action":"x","created_at":"2024-12-03T12:00:00Z"}"#).is_ok()
        );
        let e = as_writer(r#"{"user_id":1,"action":"x","created_at":"2024-12-01T12:00:00Z"}"#)
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("created_at"));
        assert!(
            e.reason
                .contains("2024-12-02T12:00:00Z .. 2025-01-01T12:05:00Z"),
            "{e}"
        );
        assert!(e.reason.contains("now - 30 days, now + 5 minutes"), "{e}");
        let e = as_writer(r#"{"user_id":1,"action":"x","created_at":"2025-01-01T12:06:00Z"}"#)
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("created_at"));
        for action in [
            "security.login_failed",
            "admin.vacuum",
            "strata.x",
            " Security.auth_failed",
        ] {
            let e = as_writer(&format!(r#"{{"user_id":1,"action":"{action}"}}"#)).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("action"), "{action}: {e}");
        }
        assert!(as_writer(r#"{"user_id":1,"action":"user.security.check"}"#).is_ok());
        // The marker of strata's own events, also when spelled with an escape.
        for details in [r#"{"_strata":"server"}"#, r#"{"_str\u0061ta":1}"#] {
            let e = as_writer(&format!(
                r#"{{"user_id":1,"action":"x","details":{details}}}"#
            ))
            .unwrap_err();
            assert_eq!(e.field.as_deref(), Some("details"), "{details}: {e}");
        }
        // A file may carry strata's own events (an export of the table).
        assert!(input(
            r#"{"user_id":1,"action":"security.auth_failed","details":{"_strata":"server"}}"#
        )
        .is_ok());
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
