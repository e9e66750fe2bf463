//! The hash chain: how a record becomes a line, how lines link, how segments are named and scanned.
//!
//! A line is `{"seq":N,"prev":"<hex>",` followed by the record's own JSON without its opening brace, so every
//! line starts with its sequence number and the SHA-256 (hex) of the previous line's bytes (without the line
//! feed). The first record of a stream has `prev` = 64 zeros. Lines are hashed exactly as stored: the writer
//! produces one canonical form and the verifier hashes the bytes on disk, so any change to any byte of a record
//! breaks the link to the next one (and the signed checkpoint covering it).
//!
//! Segments: `<dir>/<stream>/<first seq, 20 digits>.jsonl`, so lexical order is chain order.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `prev` of a stream's first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Checkpoint file name inside a stream's directory.
pub const CHECKPOINTS: &str = "checkpoints.jsonl";
/// Longest line a reader accepts (a writer never produces more).
pub const MAX_LINE: usize = 64 * 1024;

/// SHA-256 of a line, lowercase hex.
pub fn hash(line: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, line).as_ref())
}

/// [`hash`] without an allocation (the writer links every record with it).
pub fn hash_hex(line: &[u8]) -> [u8; 64] {
    let digest = ring::digest::digest(&ring::digest::SHA256, line);
    let mut out = [0u8; 64];
    for (o, h) in out.iter_mut().zip(hex_digits(digest.as_ref())) {
        *o = h;
    }
    out
}

pub fn hex(bytes: &[u8]) -> String {
    hex_digits(bytes).map(char::from).collect()
}

/// Lowercase hex digits of `bytes`, two per byte.
fn hex_digits(bytes: &[u8]) -> impl Iterator<Item = u8> + '_ {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]])
}

/// The line for a record body (the record's JSON object) at `seq` after `prev`. No line feed.
#[cfg(test)]
pub fn line(seq: u64, prev: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 100);
    append_line(&mut out, seq, prev.as_bytes(), body);
    out
}

/// [`line`], appended to `out` (the writer builds a whole batch in one buffer).
pub fn append_line(out: &mut Vec<u8>, seq: u64, prev: &[u8], body: &[u8]) {
    let rest = body.strip_prefix(b"{").unwrap_or(body);
    out.extend_from_slice(b"{\"seq\":");
    let mut digits = [0u8; 20];
    let mut n = seq;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b",\"prev\":\"");
    out.extend_from_slice(prev);
    out.extend_from_slice(b"\",");
    out.extend_from_slice(rest);
}

/// The chain fields of a line (the rest is the record).
#[derive(Debug, Deserialize)]
pub struct Head {
    pub seq: u64,
    pub prev: String,
    /// Part of the shape a line must have (a line without a `type` is unreadable); not read further here.
    #[serde(rename = "type")]
    #[allow(dead_code)]
    pub kind: String,
    #[allow(dead_code)]
    pub time: Option<String>,
}

pub fn head(line: &[u8]) -> Result<Head, serde_json::Error> {
    serde_json::from_slice(line)
}

/// The lines of a log file, each read with a bound of [`MAX_LINE`] bytes: `(line number, bytes without the line
/// feed, whether it ended with one)`. Only the last line of a file can lack its line feed, unless a line is
/// longer than the bound.
pub struct Lines {
    reader: BufReader<File>,
    n: usize,
}

impl Lines {
    pub fn open(path: &Path) -> std::io::Result<Lines> {
        Ok(Lines {
            reader: BufReader::new(File::open(path)?),
            n: 0,
        })
    }
}

impl Iterator for Lines {
    type Item = std::io::Result<(usize, Vec<u8>, bool)>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut buf = Vec::new();
        match (&mut self.reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
        {
            Ok(0) => None,
            Ok(_) => {
                self.n += 1;
                let complete = buf.last() == Some(&b'\n');
                if complete {
                    buf.pop();
                }
                Some(Ok((self.n, buf, complete)))
            }
            Err(e) => Some(Err(e)),
        }
    }
}

/// A segment file's name for its first sequence number.
pub fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.jsonl")
}

/// The segments of a stream directory in chain order, with their first sequence numbers.
pub fn segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".jsonl") else {
            continue;
        };
        if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(seq) = stem.parse() {
                out.push((seq, entry.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Where a segment's good lines end.
#[derive(Debug, Default, Clone)]
pub struct Tail {
    /// Sequence number and hash of the last complete, parseable line.
    pub last: Option<(u64, String)>,
    /// Bytes of complete lines.
    pub good_len: u64,
    /// Bytes after them: an unfinished or unparseable last line (a write cut short by a crash).
    pub torn: Vec<u8>,
}

/// Read a segment to find its last good line. A final line without its line feed, or one that does not parse,
/// is torn. Only the end of a file can be torn: a bad line followed by good ones is tampering, for `verify`.
pub fn scan(path: &Path) -> std::io::Result<Tail> {
    let file = File::open(path)?;
    if !file.metadata()?.is_file() {
        // Not a log file we can read back (a device, in tests): append without scanning.
        return Ok(Tail::default());
    }
    let mut reader = BufReader::new(file);
    let mut tail = Tail::default();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        let complete = buf.last() == Some(&b'\n');
        let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
        match (complete, head(body)) {
            (true, Ok(h)) => {
                tail.good_len += n as u64;
                tail.last = Some((h.seq, hash(body)));
                tail.torn.clear();
            }
            _ => {
                // Torn: keep it and everything after it aside.
                tail.torn.extend_from_slice(&buf);
                reader.read_to_end(&mut tail.torn)?;
                break;
            }
        }
    }
    Ok(tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_link_and_scan() {
        let dir = tempfile::tempdir().unwrap();
        let a = line(0, GENESIS, br#"{"type":"x","time":"t"}"#);
        assert_eq!(
            String::from_utf8(a.clone()).unwrap(),
            format!(r#"{{"seq":0,"prev":"{GENESIS}","type":"x","time":"t"}}"#)
        );
        let b = line(1, &hash(&a), br#"{"type":"x","time":"t"}"#);
        let h = head(&b).unwrap();
        assert_eq!(
            (h.seq, h.prev.as_str(), h.kind.as_str()),
            (1, hash(&a).as_str(), "x")
        );
        let path = dir.path().join(segment_name(0));
        let mut data = [a.clone(), b"\n".to_vec(), b.clone(), b"\n".to_vec()].concat();
        std::fs::write(&path, &data).unwrap();
        let t = scan(&path).unwrap();
        assert_eq!(t.last, Some((1, hash(&b))));
        assert_eq!(t.good_len, data.len() as u64);
        assert!(t.torn.is_empty());
        // A crash mid-line.
        data.extend_from_slice(br#"{"seq":2,"prev":"ab"#);
        std::fs::write(&path, &data).unwrap();
        let t = scan(&path).unwrap();
        assert_eq!(t.last, Some((1, hash(&b))));
        assert_eq!(t.torn, br#"{"seq":2,"prev":"ab"#);
        assert_eq!(segments(dir.path()).unwrap(), vec![(0, path)]);
        assert_eq!(segment_name(42), "00000000000000000042.jsonl");
        assert_eq!(hash_hex(&a), hash(&a).as_bytes());
        for seq in [0, 9, 10, 12345, u64::MAX] {
            let l = line(seq, GENESIS, br#"{"type":"x"}"#);
            assert_eq!(head(&l).unwrap().seq, seq);
        }
    }
}
