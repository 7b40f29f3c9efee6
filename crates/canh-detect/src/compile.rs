//! Detection section → IR: search identifiers, field items with modifiers, keyword lists and
//! the condition.

use std::collections::BTreeMap;

use serde_yaml::{Mapping, Value as Yaml};

use crate::condition::{self, Cond};
use crate::error::RuleError;
use crate::ir::Node;
use crate::modifiers::{self, Modifiers, ValueCx};

fn key_str(k: &Yaml) -> Result<String, RuleError> {
    match k {
        Yaml::String(s) => Ok(s.clone()),
        Yaml::Number(n) => Ok(n.to_string()),
        Yaml::Bool(b) => Ok(b.to_string()),
        _ => Err(RuleError::invalid("detection keys must be strings")),
    }
}

fn as_list(v: &Yaml) -> Vec<Yaml> {
    match v {
        Yaml::Sequence(items) => items.clone(),
        other => vec![other.clone()],
    }
}

/// One `Field|modifiers: values` item.
fn field_item(key: &str, value: &Yaml, cx: &ValueCx<'_>) -> Result<Node, RuleError> {
    let mut parts = key.split('|');
    let field = parts.next().unwrap_or_default();
    let mods: Vec<&str> = parts.collect();
    let mut m = Modifiers::parse(&mods)?;
    if field.is_empty() && m.op.is_none() {
        // Keywords are full-text searches: a value may occur anywhere in the text.
        m.op = Some(crate::ir::StrOp::Contains);
    }
    let values = as_list(value);
    if values.is_empty() {
        return Err(RuleError::invalid(format!(
            "'{key}' has an empty value list"
        )));
    }
    let matchers = modifiers::build(&m, &values, cx)?;
    // `all` over a single value is the same as without it.
    let all = m.all && matchers.len() > 1;
    let node = if field.is_empty() {
        Node::Keyword { matchers, all }
    } else {
        Node::Field {
            field: (cx.map_field)(field)?,
            matchers,
            all,
        }
    };
    Ok(if m.neq {
        Node::Not(Box::new(node))
    } else {
        node
    })
}

fn field_map(map: &Mapping, cx: &ValueCx<'_>) -> Result<Node, RuleError> {
    let mut items = Vec::with_capacity(map.len());
    for (k, v) in map {
        items.push(field_item(&key_str(k)?, v, cx)?);
    }
    Ok(match items.len() {
        0 => return Err(RuleError::invalid("empty detection map")),
        1 => items.remove(0),
        _ => Node::And(items),
    })
}

/// One search identifier's definition.
fn search(value: &Yaml, cx: &ValueCx<'_>) -> Result<Node, RuleError> {
    match value {
        Yaml::Mapping(map) => field_map(map, cx),
        Yaml::Sequence(items) if items.iter().all(|i| matches!(i, Yaml::Mapping(_))) => {
            if items.is_empty() {
                return Err(RuleError::invalid("empty detection list"));
            }
            let mut alts = Vec::with_capacity(items.len());
            for item in items {
                if let Yaml::Mapping(map) = item {
                    alts.push(field_map(map, cx)?);
                }
            }
            Ok(if alts.len() == 1 {
                alts.remove(0)
            } else {
                Node::Or(alts)
            })
        }
        Yaml::Sequence(items) if items.iter().any(|i| matches!(i, Yaml::Mapping(_))) => {
            Err(RuleError::invalid("detection list mixes maps and values"))
        }
        // A list of plain values, or one value: keywords.
        other => {
            let values = as_list(other);
            let mut m = Modifiers::default();
            m.op = Some(crate::ir::StrOp::Contains);
            let matchers = modifiers::build(&m, &values, cx)?;
            Ok(Node::Keyword {
                matchers,
                all: false,
            })
        }
    }
}

fn resolve(cond: &Cond, searches: &BTreeMap<String, Node>) -> Result<Node, RuleError> {
    let pick = |pat: &str| -> Result<Vec<Node>, RuleError> {
        let nodes: Vec<Node> = searches
            .iter()
            .filter(|(name, _)| condition::name_matches(pat, name))
            .map(|(_, n)| n.clone())
            .collect();
        if nodes.is_empty() {
            return Err(RuleError::invalid(format!(
                "condition: no search matches '{pat}'"
            )));
        }
        Ok(nodes)
    };
    Ok(match cond {
        Cond::Ident(name) => searches
            .get(name)
            .cloned()
            .ok_or_else(|| RuleError::invalid(format!("condition: unknown search '{name}'")))?,
        Cond::OneOf(pat) => Node::Or(pick(pat)?),
        Cond::AllOf(pat) => Node::And(pick(pat)?),
        Cond::And(a, b) => Node::And(vec![resolve(a, searches)?, resolve(b, searches)?]),
        Cond::Or(a, b) => Node::Or(vec![resolve(a, searches)?, resolve(b, searches)?]),
        Cond::Not(a) => Node::Not(Box::new(resolve(a, searches)?)),
    })
}

/// Compiles a `detection` section.
pub(crate) fn detection(det: &Mapping, cx: &ValueCx<'_>) -> Result<Node, RuleError> {
    let mut searches = BTreeMap::new();
    let mut conditions = Vec::new();
    for (k, v) in det {
        let name = key_str(k)?;
        match name.as_str() {
            "condition" => match v {
                Yaml::String(s) => conditions.push(s.clone()),
                Yaml::Sequence(items) => {
                    for i in items {
                        let Yaml::String(s) = i else {
                            return Err(RuleError::invalid("condition must be a string"));
                        };
                        conditions.push(s.clone());
                    }
                }
                _ => return Err(RuleError::invalid("condition must be a string")),
            },
            "timeframe" => {}
            _ => {
                searches.insert(name, search(v, cx)?);
            }
        }
    }
    if conditions.is_empty() {
        return Err(RuleError::invalid("detection has no condition"));
    }
    let mut nodes = Vec::with_capacity(conditions.len());
    for c in &conditions {
        nodes.push(resolve(&condition::parse(c)?, &searches)?);
    }
    Ok(if nodes.len() == 1 {
        nodes.remove(0)
    } else {
        Node::Or(nodes)
    })
}

/// Simplifies a tree: flattens nested `and`/`or`, removes double negation.
pub(crate) fn simplify(node: Node) -> Node {
    match node {
        Node::And(children) => {
            let mut out = Vec::with_capacity(children.len());
            for c in children.into_iter().map(simplify) {
                match c {
                    Node::And(inner) => out.extend(inner),
                    Node::True => {}
                    other => out.push(other),
                }
            }
            match out.len() {
                0 => Node::True,
                1 => out.remove(0),
                _ => Node::And(out),
            }
        }
        Node::Or(children) => {
            let mut out = Vec::with_capacity(children.len());
            for c in children.into_iter().map(simplify) {
                match c {
                    Node::Or(inner) => out.extend(inner),
                    Node::False => {}
                    other => out.push(other),
                }
            }
            match out.len() {
                0 => Node::False,
                1 => out.remove(0),
                _ => Node::Or(out),
            }
        }
        Node::Not(inner) => match simplify(*inner) {
            Node::Not(x) => *x,
            other => Node::Not(Box::new(other)),
        },
        other => other,
    }
}
