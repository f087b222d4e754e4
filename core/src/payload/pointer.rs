//! JSON pointers (RFC 6901) that routing reads, compiled into a trie so one walk of the body
//! finds all of them.

/// The set of pointers the configuration reads. Pointer 0 is always `/model`.
#[derive(Debug, Clone)]
pub struct PointerSet {
    pointers: Vec<String>,
    pub(crate) nodes: Vec<Node>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Node {
    /// Child token → node index.
    pub(crate) children: Vec<(String, usize)>,
    /// Pointers that end exactly here.
    pub(crate) ends: Vec<usize>,
}

/// Splits `/a/b~1c` into `["a", "b/c"]`. The whole-document pointer `""` is not allowed:
/// routing compares fields, not documents.
pub fn parse_pointer(pointer: &str) -> Result<Vec<String>, String> {
    let rest = pointer
        .strip_prefix('/')
        .ok_or_else(|| "a JSON pointer must start with '/'".to_string())?;
    let mut tokens = Vec::new();
    for token in rest.split('/') {
        let mut out = String::with_capacity(token.len());
        let mut chars = token.chars();
        while let Some(c) = chars.next() {
            if c == '~' {
                match chars.next() {
                    Some('0') => out.push('~'),
                    Some('1') => out.push('/'),
                    _ => return Err("'~' must be followed by 0 or 1 (RFC 6901)".to_string()),
                }
            } else {
                out.push(c);
            }
        }
        tokens.push(out);
    }
    Ok(tokens)
}

impl PointerSet {
    pub fn new() -> Self {
        let mut set = PointerSet {
            pointers: Vec::new(),
            nodes: vec![Node::default()],
        };
        // Cannot fail: the literal is a valid pointer.
        let _ = set.insert("/model");
        set
    }

    /// Adds a pointer (or finds it) and returns its index.
    pub fn insert(&mut self, pointer: &str) -> Result<usize, String> {
        if let Some(i) = self.pointers.iter().position(|p| p == pointer) {
            return Ok(i);
        }
        let tokens = parse_pointer(pointer)?;
        let index = self.pointers.len();
        let mut node = 0usize;
        for token in tokens {
            let existing = self
                .nodes
                .get(node)
                .and_then(|n| n.children.iter().find(|(t, _)| *t == token))
                .map(|(_, child)| *child);
            node = match existing {
                Some(child) => child,
                None => {
                    let child = self.nodes.len();
                    self.nodes.push(Node::default());
                    if let Some(n) = self.nodes.get_mut(node) {
                        n.children.push((token, child));
                    }
                    child
                }
            };
        }
        if let Some(n) = self.nodes.get_mut(node) {
            n.ends.push(index);
        }
        self.pointers.push(pointer.to_string());
        Ok(index)
    }

    pub fn len(&self) -> usize {
        self.pointers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pointers.is_empty()
    }

    pub fn pointer(&self, index: usize) -> Option<&str> {
        self.pointers.get(index).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.pointers.iter().map(String::as_str)
    }
}

impl Default for PointerSet {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_escapes() {
        assert_eq!(
            parse_pointer("/a~1b/c~0d/0").unwrap(),
            vec!["a/b", "c~d", "0"]
        );
        assert_eq!(parse_pointer("/").unwrap(), vec![""]);
        assert!(parse_pointer("a").is_err());
        assert!(parse_pointer("").is_err());
        assert!(parse_pointer("/a~2").is_err());
    }

    #[test]
    fn shares_prefixes_and_dedups() {
        let mut s = PointerSet::new();
        assert_eq!(s.insert("/model").unwrap(), 0);
        let a = s.insert("/messages/0/role").unwrap();
        let b = s.insert("/messages/0/content").unwrap();
        assert_eq!(s.insert("/messages/0/role").unwrap(), a);
        assert_ne!(a, b);
        assert_eq!(s.len(), 3);
        // root, model, messages, 0, role, content
        assert_eq!(s.nodes.len(), 6);
    }
}
