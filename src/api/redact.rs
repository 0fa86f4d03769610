//! SQL text for readers: other sessions' statements with their literals
//! (and comments) taken out. The text in `pg_stat_activity`, and utility
//! statements in `pg_stat_statements`, hold whatever the application sent:
//! e-mail addresses, tokens, passwords in `ALTER ROLE`. Admins see it whole.

use serde_json::Value;

/// Keys whose string values are SQL text in the stats, report and health documents.
const SQL_KEYS: [&str; 3] = ["query", "last_query", "query_text"];

/// `sql` with every string, dollar-quoted and numeric literal replaced by
/// `?` and comments removed. Text cut off inside a literal (the health
/// checks show the first 100 characters) loses the rest.
pub fn strip_literals(sql: &str) -> String {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    // Copies plain text byte ranges; literals are ASCII-delimited, so cuts
    // always fall on character boundaries.
    let mut start = 0;
    while i < b.len() {
        let c = b[i];
        let prev_ident = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        let skip_to = if c == b'\'' {
            let escapes = i > 0 && matches!(b[i - 1], b'e' | b'E');
            Some(end_of_string(b, i + 1, escapes))
        } else if c == b'"' {
            // A quoted identifier: kept, but skipped whole so a quote or
            // digit inside it is not taken for a literal.
            let end = b[i + 1..]
                .iter()
                .position(|&x| x == b'"')
                .map_or(b.len(), |p| i + 2 + p);
            out.push_str(&sql[start..end]);
            i = end;
            start = i;
            continue;
        } else if c == b'-' && b.get(i + 1) == Some(&b'-') {
            let end = b[i..]
                .iter()
                .position(|&x| x == b'\n')
                .map_or(b.len(), |p| i + p);
            out.push_str(&sql[start..i]);
            i = end;
            start = i;
            continue;
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let end = sql[i + 2..].find("*/").map_or(b.len(), |p| i + 4 + p);
            out.push_str(&sql[start..i]);
            out.push(' ');
            i = end;
            start = i;
            continue;
        } else if c == b'$' && !prev_ident {
            dollar_quote_end(sql, i)
        } else if c.is_ascii_digit() && !prev_ident && !(i > 0 && b[i - 1] == b'$') {
            let mut j = i;
            while j < b.len() && (b[j].is_ascii_digit() || b[j] == b'.') {
                j += 1;
            }
            // An exponent belongs to the number.
            if j < b.len() && matches!(b[j], b'e' | b'E') {
                let k = j + usize::from(matches!(b.get(j + 1), Some(b'+' | b'-'))) + 1;
                if b.get(k).is_some_and(u8::is_ascii_digit) {
                    j = k;
                    while j < b.len() && b[j].is_ascii_digit() {
                        j += 1;
                    }
                }
            }
            Some(j)
        } else {
            None
        };
        match skip_to {
            Some(end) => {
                out.push_str(&sql[start..i]);
                out.push('?');
                i = end;
                start = i;
            }
            None => i += 1,
        }
    }
    out.push_str(&sql[start..]);
    out
}

/// The index after the closing quote of a string starting at `from`.
fn end_of_string(b: &[u8], mut i: usize, backslash_escapes: bool) -> usize {
    while i < b.len() {
        match b[i] {
            b'\\' if backslash_escapes => i += 2,
            b'\'' if b.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// For `$tag$ … $tag$` at `i`, the index after the closing tag; `None` when
/// this `$` starts no dollar quote (a parameter such as `$1`).
fn dollar_quote_end(sql: &str, i: usize) -> Option<usize> {
    let rest = &sql[i + 1..];
    let tag_len = rest.find('$')?;
    let tag = &rest[..tag_len];
    if !tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        || tag.starts_with(|c: char| c.is_ascii_digit())
    {
        return None;
    }
    let delimiter = &sql[i..i + tag_len + 2];
    let body = i + tag_len + 2;
    Some(
        sql[body..]
            .find(delimiter)
            .map_or(sql.len(), |p| body + p + delimiter.len()),
    )
}

/// Rewrites a stats, report or health document for a reader: SQL text
/// under the known keys is stripped of literals, and wherever that text
/// also appears inside another string (a check's message), it is replaced
/// there too.
pub fn for_reader(doc: &mut Value) {
    let mut seen = Vec::new();
    strip_sql_values(doc, &mut seen);
    seen.retain(|(raw, _)| !raw.is_empty());
    // Longest first, so a text that contains a shorter one is replaced whole.
    seen.sort_by_key(|(raw, _)| std::cmp::Reverse(raw.len()));
    replace_in_strings(doc, &seen);
}

fn strip_sql_values(v: &mut Value, seen: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                match v {
                    Value::String(s) if SQL_KEYS.contains(&k.as_str()) => {
                        let stripped = strip_literals(s);
                        seen.push((std::mem::replace(s, stripped.clone()), stripped));
                    }
                    other => strip_sql_values(other, seen),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| strip_sql_values(i, seen)),
        _ => {}
    }
}

fn replace_in_strings(v: &mut Value, seen: &[(String, String)]) {
    match v {
        Value::String(s) => {
            for (raw, stripped) in seen {
                if raw != stripped && s.contains(raw.as_str()) {
                    *s = s.replace(raw.as_str(), stripped);
                }
            }
        }
        Value::Object(map) => map.values_mut().for_each(|v| replace_in_strings(v, seen)),
        Value::Array(items) => items.iter_mut().for_each(|i| replace_in_strings(i, seen)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn literals_and_comments_go_identifiers_and_parameters_stay() {
        assert_eq!(
            strip_literals("SELECT * FROM t WHERE email = 'a@b.c' AND n > 42 AND x = $1"),
            "SELECT * FROM t WHERE email = ? AND n > ? AND x = $1"
        );
        assert_eq!(
            strip_literals("ALTER ROLE app PASSWORD 'it''s secret' -- note\n"),
            "ALTER ROLE app PASSWORD ? \n"
        );
        assert_eq!(
            strip_literals("SELECT E'a\\'b', $x$ body 'q' $x$, \"col1\" FROM t2 /* c 'd' */"),
            "SELECT E?, ?, \"col1\" FROM t2  "
        );
        // Cut off inside a literal: the rest is gone.
        assert_eq!(strip_literals("SELECT 'secret that goes o"), "SELECT ?");
        assert_eq!(strip_literals("SELECT 1.5e3, 2E-4"), "SELECT ?, ?");
    }

    #[test]
    fn reader_documents_lose_literals_everywhere() {
        let mut doc = json!({"checks": [{
            "message": "1 query running longer than 5 min: SELECT 'tok_123'",
            "evidence": {"sessions": [{"pid": 7, "query": "SELECT 'tok_123'"}]}
        }]});
        for_reader(&mut doc);
        let text = doc.to_string();
        assert!(!text.contains("tok_123"), "{text}");
        assert_eq!(
            doc["checks"][0]["evidence"]["sessions"][0]["query"],
            "SELECT ?"
        );
        assert_eq!(doc["checks"][0]["evidence"]["sessions"][0]["pid"], 7);
    }
}
