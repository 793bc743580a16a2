//! An order-keeping YAML value, read with serde-saphyr (duplicate keys are errors).

use std::fmt;

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// A YAML value that keeps mapping order.
#[derive(Debug, Clone, PartialEq)]
pub enum Yaml {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Yaml>),
    Map(Vec<(String, Yaml)>),
}

impl Yaml {
    pub fn get(&self, key: &str) -> Option<&Yaml> {
        match self {
            Yaml::Map(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    /// A scalar as a string (as Compose reads `5001` or `true` where a string may stand).
    pub fn scalar(&self) -> Option<String> {
        match self {
            Yaml::Str(s) => Some(s.clone()),
            Yaml::Int(i) => Some(i.to_string()),
            Yaml::Float(f) => Some(f.to_string()),
            Yaml::Bool(b) => Some(b.to_string()),
            Yaml::Null => Some(String::new()),
            _ => None,
        }
    }
    /// A text that is equal for equal values whatever the key order (for hashes).
    pub fn canonical(&self, out: &mut String) {
        match self {
            Yaml::Map(m) => {
                out.push('{');
                let mut sorted: Vec<&(String, Yaml)> = m.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                for (k, v) in sorted {
                    out.push_str(&format!("{k:?}:"));
                    v.canonical(out);
                    out.push(',');
                }
                out.push('}');
            }
            Yaml::Seq(s) => {
                out.push('[');
                for v in s {
                    v.canonical(out);
                    out.push(',');
                }
                out.push(']');
            }
            other => out.push_str(&format!("{:?}", other.scalar().unwrap_or_default())),
        }
    }
}

impl<'de> Deserialize<'de> for Yaml {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Yaml;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E>(self) -> Result<Yaml, E> {
                Ok(Yaml::Null)
            }
            fn visit_none<E>(self) -> Result<Yaml, E> {
                Ok(Yaml::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Yaml, D::Error> {
                Yaml::deserialize(d)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Yaml, E> {
                Ok(Yaml::Bool(b))
            }
            fn visit_i64<E>(self, i: i64) -> Result<Yaml, E> {
                Ok(Yaml::Int(i))
            }
            fn visit_u64<E>(self, i: u64) -> Result<Yaml, E> {
                Ok(Yaml::Int(i as i64))
            }
            fn visit_f64<E>(self, f: f64) -> Result<Yaml, E> {
                Ok(Yaml::Float(f))
            }
            fn visit_str<E>(self, s: &str) -> Result<Yaml, E> {
                Ok(Yaml::Str(s.to_string()))
            }
            fn visit_string<E>(self, s: String) -> Result<Yaml, E> {
                Ok(Yaml::Str(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Yaml, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = a.next_element()? {
                    v.push(x);
                }
                Ok(Yaml::Seq(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Yaml, A::Error> {
                let mut v = Vec::new();
                // Keys as written: YAML 1.1 would read a service called `n` or `y` as a boolean.
                while let Some((k, x)) = a.next_entry::<String, Yaml>()? {
                    v.push((k, x));
                }
                Ok(Yaml::Map(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses YAML text into a [`Yaml`]; the message names line and column.
pub fn parse(text: &str) -> Result<Yaml, String> {
    serde_saphyr::from_str(text).map_err(|e| e.without_snippet().to_string())
}
