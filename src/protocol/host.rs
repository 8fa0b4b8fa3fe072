//! The host a request names, as routing reads it: a `Host` header value or URI authority
//! with its port and one trailing dot cut off and its case folded (borrowed unless it had
//! upper-case letters), or refused when it is not a DNS name or IP literal. Config host names
//! are checked with the same syntax.

use std::borrow::Cow;

/// The longest DNS name (RFC 1035). A host is kept without its port, so no valid host is
/// longer (an IPv6 literal with its brackets is at most 47 bytes).
const MAX_HOST: usize = 253;

/// Why a host is not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadHost {
    Empty,
    Invalid,
}

/// Normalises a `Host` header value or URI authority: strips the port and one trailing dot,
/// lower-cases, and refuses anything that is not a DNS name or IP literal.
pub fn normalize(raw: &[u8]) -> Result<Cow<'_, str>, BadHost> {
    if raw.is_empty() {
        return Err(BadHost::Empty);
    }
    let host = if raw[0] == b'[' {
        // IPv6 literal: keep the brackets, drop the port.
        let close = raw
            .iter()
            .position(|&b| b == b']')
            .ok_or(BadHost::Invalid)?;
        check_port(&raw[close + 1..])?;
        if !raw[1..close]
            .iter()
            .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
        {
            return Err(BadHost::Invalid);
        }
        &raw[..=close]
    } else {
        let (host, port) = match raw.iter().position(|&b| b == b':') {
            Some(i) => (&raw[..i], &raw[i..]),
            None => (raw, &raw[raw.len()..]),
        };
        check_port(port)?;
        let host = host.strip_suffix(b".").unwrap_or(host);
        if !valid_name_bytes(host) {
            return Err(BadHost::Invalid);
        }
        host
    };
    if host.len() > MAX_HOST {
        return Err(BadHost::Invalid);
    }
    // Only ASCII letters, digits and `-_.:[]` are left (checked above).
    let host = std::str::from_utf8(host).map_err(|_| BadHost::Invalid)?;
    // Clients send hosts in lower case nearly always: those are borrowed, not copied.
    Ok(if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    })
}

fn check_port(port: &[u8]) -> Result<(), BadHost> {
    match port {
        [] => Ok(()),
        [b':', digits @ ..] if digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit) => Ok(()),
        _ => Err(BadHost::Invalid),
    }
}

/// A DNS name (letters, digits, `-`, `_`, dots between non-empty labels) or an IPv4 address.
pub fn valid_name(name: &str) -> bool {
    valid_name_bytes(name.as_bytes())
}

fn valid_name_bytes(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_HOST
        && name.split(|&b| b == b'.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> Result<String, BadHost> {
        normalize(s.as_bytes()).map(Cow::into_owned)
    }

    #[test]
    fn normalises_case_port_and_trailing_dot() {
        assert_eq!(
            norm("ACME.FlexHosting.se:8443").unwrap(),
            "acme.flexhosting.se"
        );
        assert_eq!(norm("acme.flexhosting.se.").unwrap(), "acme.flexhosting.se");
        assert_eq!(
            norm("acme.flexhosting.se.:80").unwrap(),
            "acme.flexhosting.se"
        );
        assert_eq!(norm("[::1]:8080").unwrap(), "[::1]");
        assert_eq!(norm("127.0.0.1").unwrap(), "127.0.0.1");
        assert!(matches!(
            normalize(b"acme.flexhosting.se.:443"),
            Ok(Cow::Borrowed("acme.flexhosting.se"))
        ));
    }

    #[test]
    fn refuses_what_is_not_a_host() {
        assert_eq!(norm(""), Err(BadHost::Empty));
        for bad in [
            "a@b", "a b", "a..b", ".a", "a:x", "a:123456", "a/b", "[::1", "ä.se", "a:80:80",
        ] {
            assert_eq!(norm(bad), Err(BadHost::Invalid), "{bad}");
        }
    }
}
