//! Finds where a key path (`params.lr.low`, `enqueue.0.lr`) stands in the TOML text, so every
//! message can name a line and column.

use toml_edit::{ImDocument, Item, Table, Value};

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, col)
}

/// Byte offset of the deepest part of `path` that exists: the key itself when found, else
/// its nearest existing ancestor, else the start of the file.
pub fn offset_of(text: &str, path: &[String]) -> usize {
    let Ok(doc) = ImDocument::parse(text) else {
        return 0;
    };
    let mut best = 0;
    let mut node = Node::Item(doc.as_item());
    for seg in path {
        let Some((key_span, next)) = node.child(seg) else {
            break;
        };
        if let Some(span) = key_span.or_else(|| next.span()) {
            best = span.start;
        }
        node = next;
    }
    best
}

#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Table(&'a Table),
    Value(&'a Value),
}

impl<'a> Node<'a> {
    fn span(&self) -> Option<std::ops::Range<usize>> {
        match self {
            Node::Item(i) => i.span(),
            Node::Table(t) => t.span(),
            Node::Value(v) => v.span(),
        }
    }

    /// The child named `seg` (a key, or an index into an array) and the span of its key.
    fn child(&self, seg: &str) -> Option<(Option<std::ops::Range<usize>>, Node<'a>)> {
        match *self {
            Node::Item(Item::Table(t)) | Node::Table(t) => t.get_key_value(seg).map(|(k, v)| (k.span(), Node::Item(v))),
            Node::Item(Item::ArrayOfTables(a)) => {
                let t = a.get(seg.parse().ok()?)?;
                Some((t.span(), Node::Table(t)))
            }
            Node::Item(Item::Value(v)) | Node::Value(v) => match v {
                Value::InlineTable(t) => t.get_key_value(seg).map(|(k, v)| (k.span(), Node::Item(v))),
                Value::Array(a) => a.get(seg.parse().ok()?).map(|v| (v.span(), Node::Value(v))),
                _ => None,
            },
            Node::Item(Item::None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_keys_and_array_entries() {
        let text = "name = \"x\"\n[params.lr]\nlow = 1\nhigh = 0\n[[enqueue]]\na = 1\n[[enqueue]]\nb = { c = 2 }\n";
        let at = |p: &str| {
            let path: Vec<String> = p.split('.').map(String::from).collect();
            line_col(text, offset_of(text, &path))
        };
        assert_eq!(at("params.lr.high"), (4, 1));
        assert_eq!(at("enqueue.1.b.c"), (8, 7));
        assert_eq!(at("params.nope"), (2, 2));
        assert_eq!(at("missing"), (1, 1));
    }
}
