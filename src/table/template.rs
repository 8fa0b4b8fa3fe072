//! URL templates: `https://{timeclock}/{clock}/{tenant.customer_number}`.
//!
//! Variables are resolved when the config is built, so at request time a template is a short
//! list of literal text and references to captures or to the tenant. A redirect template's
//! scheme and host are checked then too: they must be literal once variables are resolved, and
//! end at a literal `/` or `?`, so no captured value can reach the authority.

use std::sync::Arc;

use super::pattern::{is_name, Captures};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(Box<str>),
    Capture(u8),
    TenantId,
    CustomerNumber,
    /// The request's own path, for a `forward` without `path:`.
    RequestPath,
}

/// A compiled template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Box<[Piece]>,
    /// Sum of the literal pieces, to size the output in one allocation.
    literal_len: usize,
    /// Whether the template already holds a `?` (the client's query is then joined with `&`).
    has_query: bool,
}

/// Why a template does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown name `{{{0}}}`: not a capture of this rule's pattern, a variable, `tenant.id` or `tenant.customer_number`")]
    Undefined(String),
    #[error("unbalanced `{{` or `}}` in template")]
    Unbalanced,
    #[error("a redirect must start with `https://` or `http://` and a host")]
    NotAbsolute,
    #[error("the scheme and host of a redirect must be fixed text or variables, and end at a `/` or `?`; `{0}` would let the request choose them")]
    DynamicOrigin(String),
    #[error("invalid host `{0}` in redirect")]
    BadHost(String),
    #[error("a forward path must start with `/`")]
    RelativePath,
    #[error("`{0}` cannot be used here")]
    NotAllowedHere(String),
}

/// A captured value holds a control character; the request is rejected with 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlCharacter;

/// What a template is rendered against.
pub struct Context<'a> {
    pub path: &'a str,
    pub captures: &'a Captures,
    /// Read only by a template that names it: with the tenant's other fields in another
    /// cache line, a redirect that does not costs no miss for it.
    pub tenant_id: &'a Arc<str>,
    pub customer_number: &'a str,
}

impl Template {
    /// Compiles `text`, resolving `{name}` against the pattern's `captures`, then `vars`.
    pub fn compile<'v>(
        text: &str,
        captures: &[&str],
        vars: impl Fn(&str) -> Option<&'v str>,
    ) -> Result<Self, TemplateError> {
        let mut pieces: Vec<Piece> = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(open) = rest.find(['{', '}']) {
            if rest.as_bytes()[open] == b'}' {
                return Err(TemplateError::Unbalanced);
            }
            literal.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or(TemplateError::Unbalanced)?;
            let name = &after[..close];
            if !is_name(name) {
                return Err(TemplateError::Unbalanced);
            }
            let piece = if let Some(i) = captures.iter().position(|c| *c == name) {
                Piece::Capture(i as u8)
            } else if name == "tenant.id" {
                Piece::TenantId
            } else if name == "tenant.customer_number" {
                Piece::CustomerNumber
            } else if let Some(value) = vars(name) {
                literal.push_str(value);
                rest = &after[close + 1..];
                continue;
            } else {
                return Err(TemplateError::Undefined(name.to_owned()));
            };
            if !literal.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut literal).into()));
            }
            pieces.push(piece);
            rest = &after[close + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal.into()));
        }
        let literal_len = pieces
            .iter()
            .map(|p| match p {
                Piece::Literal(l) => l.len(),
                _ => 0,
            })
            .sum();
        let has_query = pieces
            .iter()
            .any(|p| matches!(p, Piece::Literal(l) if l.contains('?')));
        Ok(Self {
            pieces: pieces.into(),
            literal_len,
            has_query,
        })
    }

    /// The template of a `forward` that keeps the request's path.
    pub fn request_path() -> Self {
        Self {
            pieces: Box::new([Piece::RequestPath]),
            literal_len: 0,
            has_query: false,
        }
    }

    pub fn uses_customer_number(&self) -> bool {
        self.pieces.contains(&Piece::CustomerNumber)
    }

    /// Checks that this is an absolute URL whose scheme and host no request can change, and
    /// returns its origin (`https://web.flexhrm.com`).
    pub fn fixed_origin(&self) -> Result<&str, TemplateError> {
        let first = match self.pieces.first() {
            Some(Piece::Literal(l)) => l,
            _ => return Err(TemplateError::NotAbsolute),
        };
        let after_scheme = ["https://", "http://"]
            .iter()
            .find_map(|s| first.strip_prefix(s))
            .ok_or(TemplateError::NotAbsolute)?;
        let authority_len = after_scheme.find(['/', '?']);
        let authority = match authority_len {
            Some(n) => &after_scheme[..n],
            None if self.pieces.len() == 1 => after_scheme,
            None => return Err(TemplateError::DynamicOrigin(first.to_string())),
        };
        if !valid_authority(authority) {
            return Err(TemplateError::BadHost(authority.to_owned()));
        }
        Ok(&first[..first.len() - after_scheme.len() + authority.len()])
    }

    /// Checks that this is a path (`/…`) for a forward.
    pub fn check_path(&self) -> Result<(), TemplateError> {
        match self.pieces.first() {
            Some(Piece::Literal(l)) if l.starts_with('/') => Ok(()),
            _ => Err(TemplateError::RelativePath),
        }
    }

    /// The text if the template has no captures or tenant fields (a fixed message).
    pub fn as_literal(&self) -> Result<String, TemplateError> {
        let mut out = String::with_capacity(self.literal_len);
        for piece in self.pieces.iter() {
            match piece {
                Piece::Literal(l) => out.push_str(l),
                Piece::Capture(_) => return Err(TemplateError::NotAllowedHere("a capture".into())),
                Piece::TenantId | Piece::CustomerNumber | Piece::RequestPath => {
                    return Err(TemplateError::NotAllowedHere("a tenant field".into()))
                }
            }
        }
        Ok(out)
    }

    /// Renders into a new string with room for `extra` more bytes (the query).
    pub fn render(&self, cx: &Context<'_>, extra: usize) -> Result<String, ControlCharacter> {
        let mut out = String::with_capacity(self.literal_len + cx.path.len() + extra + 16);
        for piece in self.pieces.iter() {
            match piece {
                Piece::Literal(l) => out.push_str(l),
                Piece::Capture(i) => push_checked(&mut out, cx.captures.get(cx.path, *i as usize))?,
                Piece::TenantId => out.push_str(cx.tenant_id),
                Piece::CustomerNumber => out.push_str(cx.customer_number),
                Piece::RequestPath => push_checked(&mut out, cx.path)?,
            }
        }
        Ok(out)
    }

    /// Renders, then adds the client's query: after `?`, or after `&` when the template has one.
    pub fn render_with_query(
        &self,
        cx: &Context<'_>,
        query: Option<&str>,
    ) -> Result<String, ControlCharacter> {
        let query = query.filter(|q| !q.is_empty());
        let mut out = self.render(cx, query.map_or(0, |q| q.len() + 1))?;
        if let Some(q) = query {
            out.push(if self.has_query { '&' } else { '?' });
            push_checked(&mut out, q)?;
        }
        Ok(out)
    }
}

/// Appends a value from the request, refusing control characters (CR, LF, NUL, …): they
/// would split or truncate a header. Every other byte that may not stand in a URI's path or
/// query (space, `"`, `<`, `>`, `\\`, `^`, `` ` ``, `{`, `|`, `}`, `#`, `[`, `]`, a `%` that
/// does not start an escape, non-ASCII) is percent-encoded, so a `Location`, `Link` or upstream
/// target is always a valid URI; what the client already encoded stays as it was.
fn push_checked(out: &mut String, value: &str) -> Result<(), ControlCharacter> {
    let bytes = value.as_bytes();
    let stands = |i: usize, b: u8| MAY_STAND[usize::from(b)] && (b != b'%' || escape_at(bytes, i));
    if bytes.iter().enumerate().all(|(i, &b)| stands(i, b)) {
        out.push_str(value);
        return Ok(());
    }
    for (i, &b) in bytes.iter().enumerate() {
        if b.is_ascii_control() {
            return Err(ControlCharacter);
        } else if stands(i, b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
    Ok(())
}

/// RFC 3986 `pchar`, `/` and `?`: what a path or query may hold as it is (`%` only as the start
/// of an escape, checked by [`escape_at`]).
const MAY_STAND: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric();
        b += 1;
    }
    let others = b"-._~!$&'()*+,;=:@/?%";
    let mut i = 0;
    while i < others.len() {
        table[others[i] as usize] = true;
        i += 1;
    }
    table
};

/// `bytes[i]` is `%` followed by two hex digits.
fn escape_at(bytes: &[u8], i: usize) -> bool {
    bytes.len() > i + 2 && bytes[i + 1].is_ascii_hexdigit() && bytes[i + 2].is_ascii_hexdigit()
}

/// `host` or `host:port`, host being a DNS name or an IPv4 address (no userinfo, no spaces).
fn valid_authority(authority: &str) -> bool {
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    port_ok && crate::protocol::host::valid_name(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::pattern::{Matcher, Pattern};
    use http::Method;

    fn vars(name: &str) -> Option<&'static str> {
        match name {
            "web" => Some("web.flexhrm.com"),
            "evil" => Some("evil.example/"),
            _ => None,
        }
    }

    fn render(pattern: &str, template: &str, path: &str, query: Option<&str>) -> String {
        let p = Pattern::parse(pattern).unwrap();
        let names: Vec<&str> = p.capture_names().collect();
        let t = Template::compile(template, &names, vars).unwrap();
        let mut m = Matcher::default();
        m.insert(&p, None, ()).unwrap();
        let (_, captures) = m.find(path, &Method::GET).unwrap();
        let cx = Context {
            path,
            captures: &captures,
            tenant_id: &"acme".into(),
            customer_number: "1234",
        };
        t.render_with_query(&cx, query).unwrap()
    }

    #[test]
    fn renders_captures_vars_and_tenant_fields() {
        assert_eq!(
            render(
                "/T/{clock}",
                "https://{web}/{clock}/{tenant.customer_number}",
                "/t/Lager",
                None
            ),
            "https://web.flexhrm.com/Lager/1234"
        );
        assert_eq!(
            render(
                "/x/{*rest}",
                "https://{web}/{rest}",
                "/X/a%2Fb/c",
                Some("q=1")
            ),
            "https://web.flexhrm.com/a%2Fb/c?q=1"
        );
    }

    #[test]
    fn query_joins_with_ampersand_when_template_has_one() {
        assert_eq!(
            render("/a", "https://{web}/?from=legacy", "/a", Some("x=1")),
            "https://web.flexhrm.com/?from=legacy&x=1"
        );
        assert_eq!(
            render("/a", "https://{web}/", "/a", Some("")),
            "https://web.flexhrm.com/"
        );
    }

    #[test]
    fn origin_must_be_fixed() {
        let t = |s: &str| {
            Template::compile(s, &["c"], vars)
                .unwrap()
                .fixed_origin()
                .map(str::to_owned)
        };
        assert_eq!(t("https://{web}/x"), Ok("https://web.flexhrm.com".into()));
        assert_eq!(t("https://{web}"), Ok("https://web.flexhrm.com".into()));
        assert_eq!(
            t("http://{web}:8080?a"),
            Ok("http://web.flexhrm.com:8080".into())
        );
        assert!(matches!(
            t("https://{c}.flexhrm.com/"),
            Err(TemplateError::DynamicOrigin(_))
        ));
        assert!(matches!(
            t("https://{web}{c}"),
            Err(TemplateError::DynamicOrigin(_))
        ));
        assert!(matches!(t("{c}/x"), Err(TemplateError::NotAbsolute)));
        assert!(matches!(t("/relative"), Err(TemplateError::NotAbsolute)));
        assert!(matches!(
            t("https://user@{web}/"),
            Err(TemplateError::BadHost(_))
        ));
        assert!(matches!(
            t("https://{tenant.id}.x/"),
            Err(TemplateError::DynamicOrigin(_))
        ));
    }

    #[test]
    fn undefined_names_and_braces() {
        assert_eq!(
            Template::compile("/{nope}", &[], vars),
            Err(TemplateError::Undefined("nope".into()))
        );
        assert_eq!(
            Template::compile("/{a", &[], vars),
            Err(TemplateError::Unbalanced)
        );
        assert_eq!(
            Template::compile("/a}", &[], vars),
            Err(TemplateError::Unbalanced)
        );
    }

    #[test]
    fn characters_that_may_not_stand_in_a_uri_are_percent_encoded() {
        assert_eq!(
            render("/a/{x}", "https://h/{x}", "/a/Lön plan", Some("q=ä")),
            "https://h/L%C3%B6n%20plan?q=%C3%A4"
        );
        assert_eq!(
            render("/a/{x}", "https://h/{x}", "/a/L%C3%B6n", None),
            "https://h/L%C3%B6n",
            "what the client encoded stays as it was"
        );
        assert_eq!(
            render(
                "/a/{x}",
                "https://h/{x}",
                "/a/\\\"<>^`{|}#[]",
                Some("a=%&b=%4")
            ),
            "https://h/%5C%22%3C%3E%5E%60%7B%7C%7D%23%5B%5D?a=%25&b=%254"
        );
        assert_eq!(
            render(
                "/a/{x}",
                "https://h/{x}",
                "/a/-._~!$&'()*+,;=:@%2F",
                Some("/?")
            ),
            "https://h/-._~!$&'()*+,;=:@%2F?/?"
        );
    }

    #[test]
    fn control_characters_in_captures_are_refused() {
        let p = Pattern::parse("/{x}").unwrap();
        let t = Template::compile("/{x}", &["x"], vars).unwrap();
        let mut m = Matcher::default();
        m.insert(&p, None, ()).unwrap();
        let path = "/a\r\nb";
        let (_, captures) = m.find(path, &Method::GET).unwrap();
        let cx = Context {
            path,
            captures: &captures,
            tenant_id: &"".into(),
            customer_number: "",
        };
        assert_eq!(t.render(&cx, 0), Err(ControlCharacter));
    }
}
