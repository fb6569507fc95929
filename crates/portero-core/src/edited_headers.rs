//! A request's headers as a shell read them, kept in step with the flow's
//! changes, and those changes (the last per name) for the shell to write
//! back: only them, so every other header reaches the upstream as it came.
//! Shared by the wasm shell and the dynamic-module shell.

/// One header line: name and value, as the proxy sent them.
pub type HeaderLine = (Vec<u8>, Vec<u8>);

/// Every value of header `name` (lowercase) among `lines`, in order.
pub fn lines_named<'h>(lines: &'h [HeaderLine], name: &str) -> Vec<&'h [u8]> {
    lines
        .iter()
        .filter(|(k, _)| k == name.as_bytes())
        .map(|(_, v)| v.as_slice())
        .collect()
}

/// One header the flow changed: its new value, or `None` for removed.
pub type HeaderChange = (String, Option<Vec<u8>>);

#[derive(Debug, Default)]
pub struct EditedHeaders {
    lines: Vec<HeaderLine>,
    changes: Vec<HeaderChange>,
}

impl EditedHeaders {
    pub fn new(lines: Vec<HeaderLine>) -> Self {
        Self {
            lines,
            changes: Vec::new(),
        }
    }

    pub fn lines(&self, name: &str) -> Vec<&[u8]> {
        lines_named(&self.lines, name)
    }

    /// The name of every line, in order.
    pub fn names(&self) -> Vec<&[u8]> {
        self.lines.iter().map(|(k, _)| k.as_slice()).collect()
    }

    /// Replaces every line of `name` with one holding `value`.
    pub fn set(&mut self, name: &str, value: &[u8]) {
        self.change(name, Some(value));
    }

    /// Removes every line of `name`; nothing to write back when none came.
    pub fn remove(&mut self, name: &str) {
        if self.lines.iter().any(|(k, _)| k == name.as_bytes()) {
            self.change(name, None);
        }
    }

    /// The changes to write back, once.
    pub fn take_changes(&mut self) -> Vec<HeaderChange> {
        std::mem::take(&mut self.changes)
    }

    fn change(&mut self, name: &str, value: Option<&[u8]>) {
        self.lines.retain(|(k, _)| k != name.as_bytes());
        if let Some(value) = value {
            self.lines.push((name.as_bytes().to_vec(), value.to_vec()));
        }
        self.changes.retain(|(k, _)| k != name);
        self.changes
            .push((name.to_string(), value.map(<[u8]>::to_vec)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(k: &str, v: &[u8]) -> HeaderLine {
        (k.as_bytes().to_vec(), v.to_vec())
    }

    #[test]
    fn changes_are_seen_at_once_and_written_back_once_the_last_per_name() {
        let mut h = EditedHeaders::new(vec![
            line("x-id", b"forged"),
            line("x-id", b"\xffagain"),
            line("accept", b"*/*"),
        ]);
        assert_eq!(h.lines("x-id").len(), 2);
        h.remove("x-id");
        h.remove("absent");
        h.set("x-id", b"user-ada");
        h.set("x-roles", b"dev");
        assert_eq!(h.lines("x-id"), vec![&b"user-ada"[..]]);
        assert_eq!(h.lines("accept"), vec![&b"*/*"[..]]);
        assert_eq!(
            h.take_changes(),
            vec![
                ("x-id".to_string(), Some(b"user-ada".to_vec())),
                ("x-roles".to_string(), Some(b"dev".to_vec())),
            ]
        );
        assert!(h.take_changes().is_empty());
    }
}
