//! Maps key paths (`backends[1].url`) to their line and column in the YAML
//! text, so semantic errors found after parsing can still point at a line.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Line/column (1-based) of every key and sequence item in a YAML document.
#[derive(Debug, Default)]
pub(crate) struct Locator {
    marks: HashMap<String, (usize, usize)>,
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

struct Recv {
    stack: Vec<Frame>,
    marks: HashMap<String, (usize, usize)>,
}

impl Recv {
    /// The path of the value that starts now, or `None` when a map key starts.
    fn value_path(&mut self) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Map { path, key }) => key.take().map(|k| join(path, &k)),
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                Some(p)
            }
        }
    }

    fn mark(&mut self, path: &str, m: Marker) {
        self.marks
            .entry(path.to_string())
            .or_insert((m.line(), m.col() + 1));
    }
}

fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

impl MarkedEventReceiver for Recv {
    fn on_event(&mut self, ev: Event, m: Marker) {
        match ev {
            Event::Scalar(s, ..) => match self.value_path() {
                Some(p) => self.mark(&p, m),
                None => {
                    if let Some(Frame::Map { path, key }) = self.stack.last_mut() {
                        let p = join(path, &s);
                        *key = Some(s);
                        self.marks.entry(p).or_insert((m.line(), m.col() + 1));
                    }
                }
            },
            Event::MappingStart(..) => {
                let p = self.value_path().unwrap_or_default();
                self.mark(&p, m);
                self.stack.push(Frame::Map { path: p, key: None });
            }
            Event::SequenceStart(..) => {
                let p = self.value_path().unwrap_or_default();
                self.mark(&p, m);
                self.stack.push(Frame::Seq { path: p, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::Alias(_) => {
                self.value_path();
            }
            _ => {}
        }
    }
}

impl Locator {
    /// Builds the map; a document that does not parse gives an empty map
    /// (serde_yaml then reports the syntax error with its own location).
    pub(crate) fn new(text: &str) -> Locator {
        let mut r = Recv {
            stack: Vec::new(),
            marks: HashMap::new(),
        };
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut r, false).is_err() {
            return Locator::default();
        }
        Locator { marks: r.marks }
    }

    /// Line and column of `path`, or of its nearest located parent.
    pub(crate) fn find(&self, path: &str) -> Option<(usize, usize)> {
        self.nearest(path).map(|(_, lc)| lc)
    }

    /// The nearest located part of `path` (itself or a parent): how long a
    /// prefix of `path` it is, and its line and column.
    pub(crate) fn nearest(&self, path: &str) -> Option<(usize, (usize, usize))> {
        let mut p = path;
        loop {
            if let Some(lc) = self.marks.get(p) {
                return Some((p.len(), *lc));
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_keys_and_items() {
        let text = "listen: 1.2.3.4:1\nbackends:\n  - { name: a, url: x }\n  - name: b\n    url: y\nhealth: { rise: 0 }\n";
        let l = Locator::new(text);
        assert_eq!(l.find("listen"), Some((1, 1)));
        assert_eq!(l.find("backends[0].url"), Some((3, 16)));
        assert_eq!(l.find("backends[1].url"), Some((5, 5)));
        assert_eq!(l.find("health.rise"), Some((6, 11)));
        assert_eq!(l.find("health.fall"), Some((6, 1)));
    }
}
