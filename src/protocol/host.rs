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
    let (host, upper) = if raw[0] == b'[' {
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
        (
            &raw[..=close],
            raw[..close].iter().any(u8::is_ascii_uppercase),
        )
    } else {
        let name = scan_name(raw).ok_or(BadHost::Invalid)?;
        check_port(&raw[name.end..])?;
        (&raw[..name.len], name.upper)
    };
    // Only ASCII letters, digits and `-_.:[]` are left (checked above).
    let host = std::str::from_utf8(host).map_err(|_| BadHost::Invalid)?;
    // Clients send hosts in lower case nearly always: those are borrowed, not copied.
    Ok(if upper {
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
    scan_name(name.as_bytes()).is_some_and(|n| n.len == name.len())
}

/// A name at the start of a host, as [`scan_name`] finds it.
struct Name {
    /// Its length, without one trailing dot.
    len: usize,
    /// Where what follows it (a port, or nothing) begins.
    end: usize,
    /// Whether it has upper-case letters to fold.
    upper: bool,
}

/// The name before the first `:` (or the end) of `raw`, checked in one pass: non-empty labels
/// of at most 63 letters, digits, `-` or `_`, one trailing dot allowed, 253 bytes at most.
/// Every request's host goes through here; four passes over it cost 500 instructions.
fn scan_name(raw: &[u8]) -> Option<Name> {
    /// Bit 1: may stand in a label; bit 2: an upper-case letter.
    const CLASS: [u8; 256] = {
        let mut table = [0; 256];
        let mut b = 0;
        while b < 256 {
            let c = b as u8;
            if c.is_ascii_uppercase() {
                table[b] = 3;
            } else if c.is_ascii_alphanumeric() || c == b'-' || c == b'_' {
                table[b] = 1;
            }
            b += 1;
        }
        table
    };
    let label_ok = |label: usize| (1..=63).contains(&label);
    let mut label = 0;
    let mut seen = 0;
    let mut end = raw.len();
    for (i, &b) in raw.iter().enumerate() {
        let class = CLASS[usize::from(b)];
        seen |= class;
        if class != 0 {
            // The fast path: a label's length is checked where it ends.
            label += 1;
        } else if b == b'.' && label_ok(label) {
            label = 0;
        } else if b == b':' {
            end = i;
            break;
        } else {
            return None;
        }
    }
    // Ending on a dot (the one allowed) leaves `label` at 0; so does an empty name.
    let len = match label {
        0 => end.checked_sub(1)?,
        _ if label_ok(label) => end,
        _ => return None,
    };
    (len > 0 && len <= MAX_HOST).then_some(Name {
        len,
        end,
        upper: seen & 2 != 0,
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

    proptest::proptest! {
        /// The one-pass check says what the plain definition says: non-empty labels of at
        /// most 63 letters, digits, `-` or `_`, joined by dots, 253 bytes at most.
        #[test]
        fn the_one_pass_check_agrees_with_the_definition(name in "[a-zA-Z0-9._:@ -]{0,70}|([a-zA-Z]{0,64}\\.){0,5}[a-z]{0,64}") {
            let plain = !name.is_empty()
                && name.len() <= MAX_HOST
                && name.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                });
            proptest::prop_assert_eq!(valid_name(&name), plain);
        }

        /// And `normalize` does what its plain definition does: cut the port off at the first
        /// `:` (checking it), then one trailing dot, check the name, fold its case.
        #[test]
        fn normalize_agrees_with_its_definition(raw in "[a-zA-Z0-9.:_ -]{0,30}|([a-zA-Z]{1,64}\\.){0,4}[a-zA-Z]{0,64}\\.?(:[0-9]{0,7})?") {
            let plain = || -> Result<String, BadHost> {
                if raw.is_empty() {
                    return Err(BadHost::Empty);
                }
                let (host, port) = raw.split_at(raw.find(':').unwrap_or(raw.len()));
                check_port(port.as_bytes())?;
                let host = host.strip_suffix('.').unwrap_or(host);
                let labels_ok = host.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                });
                if host.is_empty() || host.len() > MAX_HOST || !labels_ok {
                    return Err(BadHost::Invalid);
                }
                Ok(host.to_ascii_lowercase())
            };
            proptest::prop_assert_eq!(norm(&raw), plain());
        }
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
