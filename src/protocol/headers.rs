//! The request headers routing, the census and the access log read, from either door: the
//! HTTP/1 front door keeps just those ([`Kept`]); pingora's door and the HTTP/2 one hand over
//! an `http::HeaderMap`.
//!
//! A `HeaderMap` built for every HTTP/1 request cost about 1,600 instructions of a redirect's
//! 12,000: two allocations for the map, one per value copied, the name hashed at each insert
//! and each lookup, and the values checked for bytes the parser had already refused.

use http::{HeaderMap, HeaderValue};

/// A request's headers, looked up by lower-case name.
pub trait Headers: std::fmt::Debug {
    /// The value of the first header called `name`.
    fn first(&self, name: &str) -> Option<&[u8]>;
    /// How many headers are called `name`.
    fn count(&self, name: &str) -> usize;
    /// Calls `f` with each (lower-case name, value), in order: one pass where several lookups
    /// would hash each name they look for in a `HeaderMap`.
    fn visit<'s>(&'s self, f: &mut dyn FnMut(&'s [u8], &'s [u8]));
}

impl Headers for HeaderMap {
    fn first(&self, name: &str) -> Option<&[u8]> {
        self.get(name).map(HeaderValue::as_bytes)
    }

    fn count(&self, name: &str) -> usize {
        self.get_all(name).iter().count()
    }

    fn visit<'s>(&'s self, f: &mut dyn FnMut(&'s [u8], &'s [u8])) {
        for (name, value) in self {
            f(name.as_str().as_bytes(), value.as_bytes());
        }
    }
}

/// A header value as text: visible ASCII and tabs only, as `HeaderValue::to_str` reads it.
pub fn text(value: &[u8]) -> Option<&str> {
    value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        .then(|| std::str::from_utf8(value).ok())
        .flatten()
}

/// Headers copied out of a parsed head, in one buffer: each as its name's length (one byte),
/// its value's (four), the name in lower case and the value. A request keeps a handful, found
/// by a scan; most heads' fit the first allocation.
#[derive(Debug, Default, Clone)]
pub struct Kept {
    bytes: Vec<u8>,
}

/// Room for a host, a browser's User-Agent and a little more, at once.
const FIRST_CAPACITY: usize = 256;

impl Kept {
    /// Keeps the header `name` (a name longer than 255 bytes is not kept: none that Signpost
    /// reads is).
    pub fn push(&mut self, name: &[u8], value: &[u8]) {
        let (Ok(name_len), Ok(value_len)) = (u8::try_from(name.len()), u32::try_from(value.len()))
        else {
            return;
        };
        if self.bytes.capacity() == 0 {
            self.bytes
                .reserve(FIRST_CAPACITY.max(5 + name.len() + value.len()));
        }
        self.bytes.push(name_len);
        self.bytes.extend_from_slice(&value_len.to_le_bytes());
        self.bytes.extend(name.iter().map(u8::to_ascii_lowercase));
        self.bytes.extend_from_slice(value);
    }

    /// Every (lower-case name, value), in the order they came.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut rest = &self.bytes[..];
        std::iter::from_fn(move || {
            let (&[name_len, a, b, c, d], after) = rest.split_first_chunk::<5>()?;
            let (name, after) = after.split_at(usize::from(name_len));
            let (value, after) = after.split_at(u32::from_le_bytes([a, b, c, d]) as usize);
            rest = after;
            Some((name, value))
        })
    }
}

impl Headers for Kept {
    fn first(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(n, _)| *n == name.as_bytes())
            .map(|(_, v)| v)
    }

    fn count(&self, name: &str) -> usize {
        self.iter().filter(|(n, _)| *n == name.as_bytes()).count()
    }

    fn visit<'s>(&'s self, f: &mut dyn FnMut(&'s [u8], &'s [u8])) {
        for (name, value) in self.iter() {
            f(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_headers_are_found_by_lower_case_name_first_one_first() {
        let mut kept = Kept::default();
        let long = "x".repeat(70_000);
        kept.push(b"Host", b"acme.flexhosting.se");
        kept.push(b"User-Agent", b"");
        kept.push(b"X-Forwarded-For", long.as_bytes());
        kept.push(b"HOST", b"other.example");
        kept.push(&[b'a'; 256], b"dropped");
        assert_eq!(kept.first("host"), Some(&b"acme.flexhosting.se"[..]));
        assert_eq!(kept.count("host"), 2);
        assert_eq!(kept.first("user-agent"), Some(&b""[..]));
        assert_eq!(kept.first("x-forwarded-for"), Some(long.as_bytes()));
        assert_eq!(kept.first("referer"), None);
        assert_eq!(kept.count("referer"), 0);
        assert_eq!(kept.iter().count(), 4);
    }

    #[test]
    fn both_kinds_of_headers_answer_alike() {
        let pairs = [
            ("host", "a.example"),
            ("user-agent", "curl/8"),
            ("host", "b"),
        ];
        let mut map = HeaderMap::new();
        let mut kept = Kept::default();
        for (name, value) in pairs {
            map.append(name, value.parse().unwrap());
            kept.push(name.as_bytes(), value.as_bytes());
        }
        for name in ["host", "user-agent", "authorization"] {
            assert_eq!(map.first(name), kept.first(name), "{name}");
            assert_eq!(map.count(name), kept.count(name), "{name}");
        }
    }

    #[test]
    fn text_is_what_header_value_to_str_accepts() {
        for value in [
            &b"Mozilla/5.0 (X11)"[..],
            b"a\tb",
            b"caf\xc3\xa9",
            b"",
            b"~",
        ] {
            let expected = HeaderValue::from_bytes(value).unwrap();
            assert_eq!(text(value), expected.to_str().ok(), "{value:?}");
        }
    }
}
