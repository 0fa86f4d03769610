//! HTML built by escaping by default: the [`html!`](crate::html) macro
//! takes a format string literal (trusted markup, written here) and escapes
//! every argument, so a value from the database, a token name or a query
//! parameter cannot become markup. Trusted fragments are only ever other
//! [`Html`] values, appended with [`Html::push`].

use std::fmt::{self, Display, Write};

/// Markup built so far. Only string literals and escaped values get in.
#[derive(Clone, Debug, Default)]
pub struct Html(String);

impl Html {
    pub fn new() -> Html {
        Html(String::new())
    }

    /// Appends another fragment (already safe: it is an `Html`).
    pub fn push(&mut self, other: &Html) -> &mut Html {
        self.0.push_str(&other.0);
        self
    }

    /// Appends escaped text.
    pub fn text(&mut self, value: impl Display) -> &mut Html {
        let _ = write!(self.0, "{}", Esc(&value));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// For the macro only: writes a format whose literal parts are trusted
    /// and whose arguments are already wrapped in [`Esc`].
    #[doc(hidden)]
    pub fn write_escaped(&mut self, args: fmt::Arguments<'_>) {
        let _ = self.0.write_fmt(args);
    }
}

/// Displays a value with `& < > " '` escaped, safe in text and in quoted
/// attribute values.
pub struct Esc<'a, T: ?Sized>(pub &'a T);

impl<T: Display + ?Sized> Display for Esc<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Escaper(f);
        write!(out, "{}", self.0)
    }
}

struct Escaper<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl Write for Escaper<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut last = 0;
        for (i, c) in s.char_indices() {
            let rep = match c {
                '&' => "&amp;",
                '<' => "&lt;",
                '>' => "&gt;",
                '"' => "&quot;",
                '\'' => "&#39;",
                _ => continue,
            };
            self.0.write_str(&s[last..i])?;
            self.0.write_str(rep)?;
            last = i + c.len_utf8();
        }
        self.0.write_str(&s[last..])
    }
}

/// `html!(out, "<td>{}</td>", value)`: the literal is markup, every
/// argument is escaped.
#[macro_export]
macro_rules! html {
    ($out:expr, $fmt:literal $(, $arg:expr)* $(,)?) => {
        $out.write_escaped(format_args!($fmt $(, $crate::web::html::Esc(&$arg))*))
    };
}

/// Percent-encodes a query-string component (RFC 3986 unreserved kept).
pub fn url_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_escaped_literals_are_not() {
        let mut h = Html::new();
        let name = "<script>alert('x')</script>&\"";
        html!(h, "<td title=\"{}\">{}</td>", name, 42);
        assert_eq!(
            h.into_string(),
            "<td title=\"&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;\">42</td>"
        );
    }

    #[test]
    fn fragments_nest_without_double_escaping() {
        let mut inner = Html::new();
        html!(inner, "<b>{}</b>", "a<b");
        let mut outer = Html::new();
        html!(outer, "<p>");
        outer.push(&inner);
        html!(outer, "</p>");
        assert_eq!(outer.into_string(), "<p><b>a&lt;b</b></p>");
    }

    #[test]
    fn url_components_are_percent_encoded() {
        assert_eq!(url_component("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}
