//! Segment patterns (`/HRM/API/{*rest}`) and the matcher that picks one rule for a path.
//!
//! A rule set compiles to a trie of path segments. Matching walks it once, preferring at each
//! segment a literal child, then a `{name}` child, then a `{*rest}` tail, and backs off to the
//! next alternative when a branch finds nothing (or only rules for other methods). That order
//! *is* the specificity order of the spec, compared segment by segment from the left: literal
//! beats capture beats rest, so `/a/b/{*r}` beats `/a/{*r}`, and rule order in the file does not
//! matter. At the end of the path, a pattern that ends there beats a `{*rest}` that would
//! capture nothing (`/HRM` beats `/HRM/{*rest}` for the path `/HRM`).
//!
//! Matching allocates nothing: captures are byte ranges into the request path, held in a small
//! fixed array on the stack.

use std::fmt;

use http::Method;

/// How many captures one pattern may have; a fixed bound keeps [`Captures`] on the stack.
pub const MAX_CAPTURES: usize = 8;

/// One segment of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// Matches this text, ASCII case-insensitively (stored lower-cased).
    Literal(Box<str>),
    /// `{name}`: exactly one non-empty segment.
    Capture(Box<str>),
    /// `{*name}`: the rest of the path, possibly empty; always last.
    Rest(Box<str>),
}

/// A parsed `match:` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    pub segments: Vec<Segment>,
}

/// Why a pattern does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("pattern must start with `/`")]
    NoLeadingSlash,
    #[error("empty segment (`//`) in pattern")]
    EmptySegment,
    #[error("`{{*{0}}}` must be the last segment")]
    RestNotLast(String),
    #[error("malformed segment `{0}`: a segment is literal text, `{{name}}` or `{{*name}}`")]
    Malformed(String),
    #[error("capture `{0}` appears twice")]
    DuplicateCapture(String),
    #[error("more than {MAX_CAPTURES} captures")]
    TooManyCaptures,
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let body = text.strip_prefix('/').ok_or(PatternError::NoLeadingSlash)?;
        let body = body.strip_suffix('/').unwrap_or(body);
        let mut segments = Vec::new();
        if body.is_empty() {
            return Ok(Self { segments });
        }
        let parts: Vec<&str> = body.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            let segment = parse_segment(part)?;
            if let Segment::Rest(name) = &segment {
                if i + 1 != parts.len() {
                    return Err(PatternError::RestNotLast(name.to_string()));
                }
            }
            segments.push(segment);
        }
        let names: Vec<&str> = segments.iter().filter_map(Segment::capture_name).collect();
        if names.len() > MAX_CAPTURES {
            return Err(PatternError::TooManyCaptures);
        }
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                return Err(PatternError::DuplicateCapture(name.to_string()));
            }
        }
        Ok(Self { segments })
    }

    /// Capture names in order; a capture's position here is its index in [`Captures`].
    pub fn capture_names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(Segment::capture_name)
    }

    /// The pattern with capture names erased: two rules with the same shape match the same paths.
    pub fn shape(&self) -> String {
        let mut out = String::new();
        for segment in &self.segments {
            out.push('/');
            match segment {
                Segment::Literal(l) => out.push_str(l),
                Segment::Capture(_) => out.push_str("{}"),
                Segment::Rest(_) => out.push_str("{*}"),
            }
        }
        if out.is_empty() {
            out.push('/');
        }
        out
    }
}

impl Segment {
    fn capture_name(&self) -> Option<&str> {
        match self {
            Segment::Literal(_) => None,
            Segment::Capture(n) | Segment::Rest(n) => Some(n),
        }
    }
}

fn parse_segment(part: &str) -> Result<Segment, PatternError> {
    if part.is_empty() {
        return Err(PatternError::EmptySegment);
    }
    if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
        let (rest, name) = match inner.strip_prefix('*') {
            Some(name) => (true, name),
            None => (false, inner),
        };
        if !is_name(name) {
            return Err(PatternError::Malformed(part.to_owned()));
        }
        return Ok(if rest {
            Segment::Rest(name.into())
        } else {
            Segment::Capture(name.into())
        });
    }
    if part.contains(['{', '}']) {
        return Err(PatternError::Malformed(part.to_owned()));
    }
    Ok(Segment::Literal(part.to_ascii_lowercase().into()))
}

/// Capture and variable names: ASCII letters, digits, `_`, `-`, `.`; not empty.
pub fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Byte ranges of captured values in the matched path, in pattern order.
#[derive(Clone, Copy, Default)]
pub struct Captures {
    spans: [(u32, u32); MAX_CAPTURES],
    len: u8,
}

impl Captures {
    fn push(&mut self, start: usize, end: usize) {
        // The compiler guarantees at most MAX_CAPTURES captures on any trie path.
        self.spans[self.len as usize] = (start as u32, end as u32);
        self.len += 1;
    }

    fn truncate(&mut self, len: u8) {
        self.len = len;
    }

    /// The value of capture `index` within `path` (the path the match ran on).
    pub fn get<'p>(&self, path: &'p str, index: usize) -> &'p str {
        if index >= self.len as usize {
            return "";
        }
        let (start, end) = self.spans[index];
        &path[start as usize..end as usize]
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// `path` with the captures at `indices` replaced by `…`, for logs and reports.
    pub fn redact(&self, path: &str, indices: &[u8]) -> String {
        let mut spans: Vec<(usize, usize)> = indices
            .iter()
            .filter(|&&i| i < self.len)
            .map(|&i| {
                (
                    self.spans[i as usize].0 as usize,
                    self.spans[i as usize].1 as usize,
                )
            })
            .filter(|(s, e)| e > s)
            .collect();
        spans.sort_unstable();
        let mut out = String::with_capacity(path.len());
        let mut at = 0;
        for (start, end) in spans {
            if start >= at {
                out.push_str(&path[at..start]);
                out.push('…');
                at = end;
            }
        }
        out.push_str(&path[at..]);
        out
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Debug for Captures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(&self.spans[..self.len as usize])
            .finish()
    }
}

/// Rules that end at one trie node, each with the methods it accepts (`None`: all).
/// Their method sets are disjoint; the compiler rejects overlaps as conflicts.
#[derive(Debug)]
struct Terminal<R> {
    methods: Option<Box<[Method]>>,
    rule: R,
}

#[derive(Debug)]
struct Node<R> {
    /// Literal children, lower-cased. Few per node, so a linear scan with an ASCII
    /// case-insensitive compare beats hashing a lower-cased copy of the segment.
    literals: Vec<(Box<str>, Node<R>)>,
    capture: Option<Box<Node<R>>>,
    end: Vec<Terminal<R>>,
    rest: Vec<Terminal<R>>,
}

impl<R> Default for Node<R> {
    fn default() -> Self {
        Self {
            literals: Vec::new(),
            capture: None,
            end: Vec::new(),
            rest: Vec::new(),
        }
    }
}

/// Two rules would match the same requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict<R> {
    pub existing: R,
}

/// A set of patterns compiled into a trie; `R` is what a match yields (a rule, or its index).
#[derive(Debug)]
pub struct Matcher<R> {
    root: Node<R>,
}

impl<R> Default for Matcher<R> {
    fn default() -> Self {
        Self {
            root: Node::default(),
        }
    }
}

impl<R: Clone> Matcher<R> {
    /// Adds a pattern; fails if a rule with the same shape and an overlapping method set exists.
    pub fn insert(
        &mut self,
        pattern: &Pattern,
        methods: Option<&[Method]>,
        rule: R,
    ) -> Result<(), Conflict<R>> {
        let mut node = &mut self.root;
        let mut terminals = None;
        for segment in &pattern.segments {
            match segment {
                Segment::Literal(text) => {
                    let at = match node.literals.iter().position(|(l, _)| l == text) {
                        Some(at) => at,
                        None => {
                            node.literals.push((text.clone(), Node::default()));
                            node.literals.len() - 1
                        }
                    };
                    node = &mut node.literals[at].1;
                }
                Segment::Capture(_) => node = node.capture.get_or_insert_with(Box::default),
                Segment::Rest(_) => terminals = Some(&mut node.rest),
            }
        }
        let terminals = terminals.unwrap_or(&mut node.end);
        for existing in terminals.iter() {
            let overlap = match (&existing.methods, methods) {
                (Some(a), Some(b)) => a.iter().any(|m| b.contains(m)),
                _ => true,
            };
            if overlap {
                return Err(Conflict {
                    existing: existing.rule.clone(),
                });
            }
        }
        terminals.push(Terminal {
            methods: methods.map(|m| m.into()),
            rule,
        });
        Ok(())
    }
}

impl<R> Matcher<R> {
    /// The most specific rule matching `path` (query already removed) for `method`.
    pub fn find(&self, path: &str, method: &Method) -> Option<(&R, Captures)> {
        // Leading slash and one trailing slash do not take part in matching.
        let trimmed_start = usize::from(path.starts_with('/'));
        let body = &path[trimmed_start..];
        let body_len = body.strip_suffix('/').unwrap_or(body).len();
        let end = trimmed_start + body_len;
        let first = (end > trimmed_start).then_some(trimmed_start);
        let mut captures = Captures::default();
        let rule = walk(&self.root, &path[..end], first, method, &mut captures)?;
        Some((rule, captures))
    }
}

/// Depth-first search; `at` is the start of the next segment, `None` once the path is used up.
/// Recursion depth is bounded by the deepest pattern, not by the request.
fn walk<'n, R>(
    node: &'n Node<R>,
    path: &str,
    at: Option<usize>,
    method: &Method,
    captures: &mut Captures,
) -> Option<&'n R> {
    match at {
        None => {
            if let Some(rule) = pick(&node.end, method) {
                return Some(rule);
            }
        }
        Some(start) => {
            let end = path[start..].find('/').map_or(path.len(), |i| start + i);
            let segment = &path[start..end];
            let next = (end < path.len()).then_some(end + 1);
            if let Some((_, child)) = node
                .literals
                .iter()
                .find(|(l, _)| segment.eq_ignore_ascii_case(l))
            {
                if let Some(rule) = walk(child, path, next, method, captures) {
                    return Some(rule);
                }
            }
            if let (Some(child), false) = (&node.capture, segment.is_empty()) {
                let mark = captures.len;
                captures.push(start, end);
                if let Some(rule) = walk(child, path, next, method, captures) {
                    return Some(rule);
                }
                captures.truncate(mark);
            }
        }
    }
    let rule = pick(&node.rest, method)?;
    let start = at.unwrap_or(path.len());
    captures.push(start, path.len());
    Some(rule)
}

fn pick<'n, R>(terminals: &'n [Terminal<R>], method: &Method) -> Option<&'n R> {
    terminals
        .iter()
        .find(|t| t.methods.as_ref().is_none_or(|m| m.contains(method)))
        .map(|t| &t.rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(patterns: &[&'static str]) -> Matcher<&'static str> {
        let mut m = Matcher::default();
        for p in patterns {
            m.insert(&Pattern::parse(p).unwrap(), None, *p).unwrap();
        }
        m
    }

    fn find<'a>(
        m: &'a Matcher<&'static str>,
        path: &'a str,
    ) -> Option<(&'static str, Vec<&'a str>)> {
        let (rule, caps) = m.find(path, &Method::GET)?;
        let values = (0..caps.len()).map(|i| caps.get(path, i)).collect();
        Some((*rule, values))
    }

    #[test]
    fn literal_beats_capture_beats_rest_whatever_the_order() {
        let m = matcher(&[
            "/HRM/{*rest}",
            "/Timeclock/{clock}",
            "/Timeclock/Default",
            "/HRM/API/{*rest}",
        ]);
        assert_eq!(
            find(&m, "/hrm/api/v1/x"),
            Some(("/HRM/API/{*rest}", vec!["v1/x"]))
        );
        assert_eq!(
            find(&m, "/HRM/Other/x"),
            Some(("/HRM/{*rest}", vec!["Other/x"]))
        );
        assert_eq!(
            find(&m, "/Timeclock/DEFAULT"),
            Some(("/Timeclock/Default", vec![]))
        );
        assert_eq!(
            find(&m, "/Timeclock/Lager"),
            Some(("/Timeclock/{clock}", vec!["Lager"]))
        );
    }

    #[test]
    fn literals_ignore_ascii_case_and_captures_keep_spelling() {
        let m = matcher(&["/Timeclock/{clock}/{customer}"]);
        assert_eq!(
            find(&m, "/TIMECLOCK/FabriksKlocka/1234"),
            Some((
                "/Timeclock/{clock}/{customer}",
                vec!["FabriksKlocka", "1234"]
            ))
        );
    }

    #[test]
    fn trailing_slash_is_ignored() {
        let m = matcher(&["/Timeclock", "/Mobile/{*rest}"]);
        assert_eq!(find(&m, "/Timeclock/"), Some(("/Timeclock", vec![])));
        assert_eq!(find(&m, "/Mobile/"), Some(("/Mobile/{*rest}", vec![""])));
        assert_eq!(
            find(&m, "/Mobile/a/b/"),
            Some(("/Mobile/{*rest}", vec!["a/b"]))
        );
    }

    #[test]
    fn exact_end_beats_empty_rest() {
        let m = matcher(&["/HRM/{*rest}", "/HRM"]);
        assert_eq!(find(&m, "/HRM"), Some(("/HRM", vec![])));
        assert_eq!(find(&m, "/HRM/x"), Some(("/HRM/{*rest}", vec!["x"])));
    }

    #[test]
    fn backtracks_from_a_dead_literal_branch() {
        let m = matcher(&["/a/b/c", "/a/{x}/d"]);
        assert_eq!(find(&m, "/a/b/d"), Some(("/a/{x}/d", vec!["b"])));
        assert_eq!(find(&m, "/a/b/e"), None);
    }

    #[test]
    fn capture_needs_a_non_empty_segment() {
        let m = matcher(&["/a/{x}/b"]);
        assert_eq!(find(&m, "/a//b"), None);
    }

    #[test]
    fn root_pattern_and_root_path() {
        let m = matcher(&["/"]);
        assert_eq!(find(&m, "/"), Some(("/", vec![])));
        assert_eq!(find(&m, ""), Some(("/", vec![])));
        assert_eq!(find(&m, "/x"), None);
    }

    #[test]
    fn methods_select_and_fall_through() {
        let mut m = Matcher::default();
        let p = Pattern::parse("/cb").unwrap();
        m.insert(&p, Some(&[Method::POST]), "post").unwrap();
        m.insert(&p, Some(&[Method::GET, Method::HEAD]), "get")
            .unwrap();
        m.insert(&Pattern::parse("/{*r}").unwrap(), None, "any")
            .unwrap();
        assert_eq!(m.find("/cb", &Method::POST).map(|r| *r.0), Some("post"));
        assert_eq!(m.find("/cb", &Method::GET).map(|r| *r.0), Some("get"));
        assert_eq!(m.find("/cb", &Method::PUT).map(|r| *r.0), Some("any"));
    }

    #[test]
    fn same_shape_with_overlapping_methods_conflicts() {
        let mut m = Matcher::default();
        m.insert(&Pattern::parse("/a/{x}").unwrap(), None, "first")
            .unwrap();
        let err = m.insert(
            &Pattern::parse("/A/{y}/").unwrap(),
            Some(&[Method::GET]),
            "second",
        );
        assert_eq!(err, Err(Conflict { existing: "first" }));
        let mut m = Matcher::default();
        m.insert(&Pattern::parse("/a").unwrap(), Some(&[Method::GET]), "get")
            .unwrap();
        m.insert(
            &Pattern::parse("/a").unwrap(),
            Some(&[Method::POST]),
            "post",
        )
        .unwrap();
    }

    #[test]
    fn parse_errors() {
        assert_eq!(Pattern::parse("a"), Err(PatternError::NoLeadingSlash));
        assert_eq!(Pattern::parse("/a//b"), Err(PatternError::EmptySegment));
        assert_eq!(
            Pattern::parse("/{*r}/b"),
            Err(PatternError::RestNotLast("r".into()))
        );
        assert_eq!(
            Pattern::parse("/a{b}"),
            Err(PatternError::Malformed("a{b}".into()))
        );
        assert_eq!(
            Pattern::parse("/{a}/{a}"),
            Err(PatternError::DuplicateCapture("a".into()))
        );
        assert_eq!(
            Pattern::parse("/{}"),
            Err(PatternError::Malformed("{}".into()))
        );
        let many = "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}";
        assert_eq!(Pattern::parse(many), Err(PatternError::TooManyCaptures));
    }

    #[test]
    fn shape_erases_names_and_case() {
        let a = Pattern::parse("/A/{x}/{*r}").unwrap();
        let b = Pattern::parse("/a/{y}/{*s}/").unwrap();
        assert_eq!(a.shape(), b.shape());
    }
}
