//! The last lines a child wrote to its stderr.
//!
//! A pool child's stderr is read continuously (so the child never blocks on a
//! full pipe) into this bounded ring: at most [`MAX_LINES`] complete lines of at
//! most [`MAX_LINE`] bytes each, plus the unfinished last line. When the child
//! dies, the ring becomes part of its `WorkerDied` error.

use crate::sync::unmodelled::Arc;
use std::collections::VecDeque;

/// Lines kept.
pub(crate) const MAX_LINES: usize = 20;
/// Bytes kept of one line; the rest of a longer line is dropped.
pub(crate) const MAX_LINE: usize = 1024;

/// A bounded ring of the last stderr lines.
#[derive(Debug, Default)]
pub(crate) struct StderrTail {
    lines: VecDeque<String>,
    /// The unfinished last line, at most `MAX_LINE` bytes.
    partial: Vec<u8>,
    /// Bytes of the unfinished line dropped for length.
    truncated: bool,
}

impl StderrTail {
    /// Appends a chunk read from the pipe.
    pub(crate) fn push(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let (line, rest, complete) = match data.iter().position(|&b| b == b'\n') {
                Some(at) => (&data[..at], &data[at + 1..], true),
                None => (data, &data[data.len()..], false),
            };
            let room = MAX_LINE - self.partial.len();
            if line.len() > room {
                self.truncated = true;
            }
            self.partial
                .extend_from_slice(&line[..line.len().min(room)]);
            if complete {
                self.finish_line();
            }
            data = rest;
        }
    }

    fn finish_line(&mut self) {
        let mut line = String::from_utf8_lossy(&self.partial).into_owned();
        if line.ends_with('\r') {
            line.pop();
        }
        if self.truncated {
            line.push_str(" [...]");
        }
        self.partial.clear();
        self.truncated = false;
        if self.lines.len() == MAX_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    /// The kept lines, oldest first, the unfinished one last.
    pub(crate) fn snapshot(&self) -> Arc<[String]> {
        let mut lines: Vec<String> = self.lines.iter().cloned().collect();
        if !self.partial.is_empty() {
            if lines.len() == MAX_LINES {
                lines.remove(0);
            }
            lines.push(String::from_utf8_lossy(&self.partial).into_owned());
        }
        lines.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_lines_across_chunk_boundaries() {
        let mut tail = StderrTail::default();
        for i in 0..30 {
            let line = format!("line {i}\n");
            let (a, b) = line.as_bytes().split_at(3);
            tail.push(a);
            tail.push(b);
        }
        tail.push(b"unfinished");
        let lines = tail.snapshot();
        assert_eq!(lines.len(), MAX_LINES);
        assert_eq!(lines[0], "line 11");
        assert_eq!(lines[MAX_LINES - 2], "line 29");
        assert_eq!(lines[MAX_LINES - 1], "unfinished");
    }

    #[test]
    fn long_lines_are_cut() {
        let mut tail = StderrTail::default();
        tail.push(&vec![b'x'; 3 * MAX_LINE]);
        tail.push(b"\r\nshort\n");
        let lines = tail.snapshot();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with(&"x".repeat(MAX_LINE)));
        assert!(lines[0].ends_with("[...]"));
        assert_eq!(lines[1], "short");
    }
}
