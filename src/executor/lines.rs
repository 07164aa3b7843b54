//! Line reading that survives what workers print: overlong lines are cut, invalid UTF-8 is
//! replaced, and a tail of recent lines is kept for failure reports.

use std::collections::VecDeque;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Longest line kept; the rest of a longer line is skipped.
pub const MAX_LINE: usize = 1 << 20;

/// Reads the next line without its newline; None at end of stream.
pub async fn next_line<R: AsyncBufRead + Unpin>(reader: &mut R) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let mut saw_any = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(saw_any.then(|| decode(&buf)));
        }
        saw_any = true;
        let (chunk, found) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        let room = MAX_LINE.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = found.unwrap_or(available.len());
        reader.consume(used);
        if found.is_some() {
            return Ok(Some(decode(&buf)));
        }
    }
}

fn decode(buf: &[u8]) -> String {
    let s = String::from_utf8_lossy(buf);
    s.strip_suffix('\r').unwrap_or(&s).to_string()
}

/// The last lines of a stream, bounded in count and bytes.
pub struct Tail {
    lines: VecDeque<String>,
    bytes: usize,
}

impl Tail {
    const MAX_LINES: usize = 40;
    const MAX_BYTES: usize = 8 * 1024;

    pub fn new() -> Tail {
        Tail { lines: VecDeque::new(), bytes: 0 }
    }

    pub fn push(&mut self, line: String) {
        let line: String = line.chars().take(Self::MAX_BYTES / 2).collect();
        self.bytes += line.len();
        self.lines.push_back(line);
        while self.lines.len() > Self::MAX_LINES || self.bytes > Self::MAX_BYTES {
            let dropped = self.lines.pop_front().expect("non-empty");
            self.bytes -= dropped.len();
        }
    }

    pub fn text(&self) -> String {
        self.lines.iter().map(String::as_str).collect::<Vec<_>>().join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cuts_long_lines_and_survives_bad_bytes() {
        let mut input: Vec<u8> = vec![b'a'; MAX_LINE + 10];
        input.extend_from_slice(b"\n\xff\xfeok\r\nlast");
        let mut reader = tokio::io::BufReader::new(&input[..]);
        assert_eq!(next_line(&mut reader).await.unwrap().unwrap().len(), MAX_LINE);
        assert_eq!(next_line(&mut reader).await.unwrap().unwrap(), "\u{fffd}\u{fffd}ok");
        assert_eq!(next_line(&mut reader).await.unwrap().unwrap(), "last");
        assert_eq!(next_line(&mut reader).await.unwrap(), None);
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let mut tail = Tail::new();
        for i in 0..100 {
            tail.push(format!("line {i}"));
        }
        assert!(tail.text().ends_with("line 99"));
        assert!(!tail.text().contains("line 59\n"));
    }
}
