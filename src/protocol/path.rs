//! The request path as Signpost routes it: dot segments resolved, as RFC 3986 §5.2.4 does.
//!
//! An origin that resolves `..` itself (RFC 3986 allows it, and many do) would otherwise
//! serve `/calendar/4711/a/../../../admin` as `/admin`: a forward template's prefix must not be
//! escapable. So before a path is matched, `.` and `..` segments are resolved here, also when
//! written `%2e`; `\` is read as `/` (as IIS, the legacy server, and browsers do); and a path
//! that climbs above the root is refused. A dot segment that only a lenient origin would see
//! (behind an encoded `/` or `\`, or before a `;`, like Tomcat's `..;`) is refused too, since
//! it cannot be resolved here without guessing how that origin decodes.

use std::borrow::Cow;

/// The normalised path, borrowed when it is already normal (the common case); or why the path
/// is refused (`400`).
pub fn normalize(path: &str) -> Result<Cow<'_, str>, &'static str> {
    if plainly_normal(path.as_bytes()) {
        return Ok(Cow::Borrowed(path));
    }
    let mut rewrite = false;
    for segment in path.split(['/', '\\']) {
        rewrite |= dot(segment).is_some();
        if hides_dot_segment(segment) {
            return Err("an encoded slash or a `;` hides a dot segment in the path");
        }
    }
    if !rewrite && !path.contains('\\') {
        return Ok(Cow::Borrowed(path));
    }
    let mut kept: Vec<&str> = Vec::new();
    let mut segments = path.split(['/', '\\']).skip(1).peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match dot(segment) {
            None => kept.push(segment),
            Some(Dot::Current) => {}
            Some(Dot::Parent) => {
                kept.pop().ok_or("the path climbs above the root")?;
            }
        }
        if last && dot(segment).is_some() {
            // `/a/b/..` is the folder `/a/`.
            kept.push("");
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

/// The common case: no `\\`, `%` or `;` anywhere, and no segment starting with `.`. Such a
/// path has no dot segment, seen or hidden. A branch-free scan for any of those bytes comes
/// first (most paths have none); only a path that has one is looked at closely.
fn plainly_normal(path: &[u8]) -> bool {
    let suspect = path
        .iter()
        .fold(false, |any, &b| any | SUSPECT[usize::from(b)]);
    if !suspect {
        return true;
    }
    let mut prev = 0;
    for &b in path {
        if SUSPECT[usize::from(b)] && (b != b'.' || prev == b'/') {
            return false;
        }
        prev = b;
    }
    true
}

/// Bytes that may begin or hide a dot segment (`.` only right after a `/`).
const SUSPECT: [bool; 256] = {
    let mut table = [false; 256];
    table[b'\\' as usize] = true;
    table[b'%' as usize] = true;
    table[b';' as usize] = true;
    table[b'.' as usize] = true;
    table
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dot {
    Current,
    Parent,
}

/// `.` or `..`, each dot possibly written `%2e`.
fn dot(segment: &str) -> Option<Dot> {
    let rest = strip_dot(segment)?;
    if rest.is_empty() {
        return Some(Dot::Current);
    }
    strip_dot(rest)
        .filter(|r| r.is_empty())
        .map(|_| Dot::Parent)
}

fn strip_dot(s: &str) -> Option<&str> {
    s.strip_prefix('.')
        .or_else(|| (s.len() >= 3 && s[..3].eq_ignore_ascii_case("%2e")).then(|| &s[3..]))
}

/// A segment holding `%2f`, `%5c` or `;` with a dot segment beside it.
fn hides_dot_segment(segment: &str) -> bool {
    if !segment.contains(['%', ';']) {
        return false;
    }
    let mut piece_start = 0;
    let bytes = segment.as_bytes();
    let mut i = 0;
    while i <= bytes.len() {
        let separator = if i == bytes.len() || bytes[i] == b';' {
            Some(1)
        } else if bytes[i] == b'%'
            && i + 3 <= bytes.len()
            && (segment[i..i + 3].eq_ignore_ascii_case("%2f")
                || segment[i..i + 3].eq_ignore_ascii_case("%5c"))
        {
            Some(3)
        } else {
            None
        };
        match separator {
            Some(len) => {
                let piece = &segment[piece_start..i];
                if piece.len() < segment.len() && dot(piece).is_some() {
                    return true;
                }
                i += len;
                piece_start = i;
            }
            None => i += 1,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_paths_are_borrowed() {
        for path in [
            "/",
            "/HRM/Calendar/abc",
            "/a.b/c..d/.e/f.",
            "/a//b/",
            "/a%2eb",
            "/a;b",
        ] {
            assert!(
                matches!(normalize(path), Ok(Cow::Borrowed(p)) if p == path),
                "{path}"
            );
        }
    }

    #[test]
    fn dot_segments_are_resolved() {
        for (path, normal) in [
            ("/HRM/Calendar/a/../../../admin", "/admin"),
            ("/HRM/Calendar/a/%2e%2e/%2E%2e/b", "/HRM/b"),
            ("/a/./b/.", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/a/..", "/"),
            ("/.", "/"),
            ("/a\\..\\b", "/b"),
            ("/a\\b", "/a/b"),
            ("/a/.%2e/b", "/b"),
            ("/a//../b", "/a/b"),
        ] {
            assert_eq!(normalize(path).as_deref(), Ok(normal), "{path}");
        }
    }

    #[test]
    fn climbing_above_the_root_or_hidden_dots_are_refused() {
        for path in ["/..", "/a/../..", "/%2e%2e/x", "/a/..\\..\\x"] {
            assert_eq!(
                normalize(path),
                Err("the path climbs above the root"),
                "{path}"
            );
        }
        for path in [
            "/a/..%2fadmin",
            "/a/x%2F..",
            "/a/..%5Cb",
            "/a/..;/b",
            "/a/b;..",
        ] {
            assert!(normalize(path).unwrap_err().contains("hides"), "{path}");
        }
    }
}
