//! Finds the line of a YAML node from its path (`tenants[3].hosts[1]`).
//!
//! serde_yaml gives no spans for values that deserialized fine, but it does attach the position
//! of the current event to any error raised while deserializing. So to place a semantic error
//! (found after parsing), the document is walked again with a seed that follows the path and
//! fails on purpose at the target node; the error's location is the node's. This runs only when
//! there is an error to report, so it costs nothing on a good config.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One step of a path into a YAML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// A path from the document root to one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct YamlPath(pub Vec<Step>);

impl YamlPath {
    pub fn root() -> Self {
        Self::default()
    }

    pub fn key(&self, key: &str) -> Self {
        let mut steps = self.0.clone();
        steps.push(Step::Key(key.to_owned()));
        Self(steps)
    }

    pub fn index(&self, index: usize) -> Self {
        let mut steps = self.0.clone();
        steps.push(Step::Index(index));
        Self(steps)
    }
}

impl fmt::Display for YamlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.0.iter().enumerate() {
            match step {
                Step::Key(k) if i == 0 => write!(f, "{k}")?,
                Step::Key(k) => write!(f, ".{k}")?,
                Step::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

const FOUND: &str = "\u{0}signpost-locate";

/// The 1-based line of the node at `path` in `source`, or of its nearest ancestor that exists.
pub fn line_of(source: &str, path: &YamlPath) -> Option<usize> {
    // Try the whole path; if the node is missing, back off to the parent.
    for len in (0..=path.0.len()).rev() {
        let seed = Locate(&path.0[..len]);
        let de = serde_yaml::Deserializer::from_str(source);
        if let Err(err) = seed.deserialize(de) {
            if err.to_string().contains(FOUND) {
                return err.location().map(|l| l.line());
            }
        }
    }
    None
}

struct Locate<'p>(&'p [Step]);

impl<'de> DeserializeSeed<'de> for Locate<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Locate<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Step::Key(want), rest)) = self.0.split_first() else {
            return Err(de::Error::custom(FOUND));
        };
        while let Some(key) = map.next_key::<serde_yaml::Value>()? {
            if key.as_str() == Some(want.as_str()) {
                return map.next_value_seed(Locate(rest));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Step::Index(want), rest)) = self.0.split_first() else {
            return Err(de::Error::custom(FOUND));
        };
        let mut index = 0;
        while index < *want {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
            index += 1;
        }
        seq.next_element_seed(Locate(rest)).map(|_| ())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.leaf()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.leaf()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.leaf()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.leaf()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.leaf()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.leaf()
    }
}

impl Locate<'_> {
    fn leaf<E: de::Error>(&self) -> Result<(), E> {
        if self.0.is_empty() {
            Err(E::custom(FOUND))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
vars:
  web: web.example
tenants:
  - id: a
    hosts: [a.example]
  - id: b
    hosts:
      - b.example
      - c.example
";

    #[test]
    fn finds_nested_sequence_items() {
        let p = YamlPath::root()
            .key("tenants")
            .index(1)
            .key("hosts")
            .index(1);
        assert_eq!(line_of(DOC, &p), Some(9), "path {p}");
        let p = YamlPath::root()
            .key("tenants")
            .index(0)
            .key("hosts")
            .index(0);
        assert_eq!(line_of(DOC, &p), Some(5), "path {p}");
    }

    #[test]
    fn finds_mappings_and_scalars() {
        assert_eq!(
            line_of(DOC, &YamlPath::root().key("vars").key("web")),
            Some(2)
        );
        assert_eq!(
            line_of(DOC, &YamlPath::root().key("tenants").index(1)),
            Some(6)
        );
    }

    #[test]
    fn missing_node_falls_back_to_parent() {
        let p = YamlPath::root().key("tenants").index(1).key("nope");
        assert_eq!(line_of(DOC, &p), Some(6));
    }

    #[test]
    fn path_displays_like_serde_yaml() {
        let p = YamlPath::root()
            .key("tenants")
            .index(1)
            .key("hosts")
            .index(0);
        assert_eq!(p.to_string(), "tenants[1].hosts[0]");
    }
}
