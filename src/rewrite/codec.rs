//! Content codings for rewritten pages sent to the client: gzip, br and zstd, streaming (each chunk is flushed
//! so the client gets the bytes as soon as they are rewritten — time to first byte is not traded for ratio).

use std::io::Write;

/// A content coding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    Brotli,
    Zstd,
}

impl Coding {
    pub fn name(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
        }
    }

    /// The coding to send to a client with this `Accept-Encoding`: br, then zstd, then gzip, among those it
    /// accepts with a non-zero q-value (RFC 9110 §12.5.3); `None` for identity.
    pub fn negotiate<'a>(accept_encoding: impl Iterator<Item = &'a str>) -> Option<Coding> {
        let mut accepted: Vec<(&str, bool)> = Vec::new();
        for item in accept_encoding.flat_map(|v| v.split(',')) {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim();
            let zero = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            accepted.push((name, !zero));
        }
        let ok = |n: &str| {
            accepted
                .iter()
                .find(|(a, _)| a.eq_ignore_ascii_case(n))
                .or_else(|| accepted.iter().find(|(a, _)| *a == "*"))
                .is_some_and(|(_, ok)| *ok)
        };
        [Coding::Brotli, Coding::Zstd, Coding::Gzip]
            .into_iter()
            .find(|c| ok(c.name()))
    }
}

enum Inner {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

/// A streaming encoder: `write` returns the compressed bytes for what was written so far (flushed).
pub struct Encoder {
    inner: Option<Inner>,
}

impl Encoder {
    pub fn new(coding: Coding) -> std::io::Result<Encoder> {
        let inner = match coding {
            // Level 5 and quality 4 / level 3: fast settings, as web servers use for dynamic pages.
            Coding::Gzip => Inner::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(5),
            )),
            Coding::Brotli => Inner::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                16 * 1024,
                4,
                22,
            ))),
            Coding::Zstd => Inner::Zstd(zstd::stream::write::Encoder::new(Vec::new(), 3)?),
        };
        Ok(Encoder { inner: Some(inner) })
    }

    pub fn write(&mut self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        let Some(inner) = self.inner.as_mut() else {
            return Ok(Vec::new());
        };
        match inner {
            Inner::Gzip(w) => {
                w.write_all(data)?;
                w.flush()?;
                Ok(std::mem::take(w.get_mut()))
            }
            Inner::Brotli(w) => {
                w.write_all(data)?;
                w.flush()?;
                Ok(std::mem::take(w.get_mut()))
            }
            Inner::Zstd(w) => {
                w.write_all(data)?;
                w.flush()?;
                Ok(std::mem::take(w.get_mut()))
            }
        }
    }

    /// End the stream: the last bytes (trailer).
    pub fn finish(&mut self) -> std::io::Result<Vec<u8>> {
        match self.inner.take() {
            Some(Inner::Gzip(w)) => w.finish(),
            Some(Inner::Brotli(w)) => Ok(w.into_inner()),
            Some(Inner::Zstd(w)) => w.finish(),
            None => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn decode(c: Coding, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match c {
            Coding::Gzip => {
                flate2::read::GzDecoder::new(data)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Coding::Brotli => {
                brotli::Decompressor::new(data, 4096)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Coding::Zstd => {
                out = zstd::stream::decode_all(data).unwrap();
            }
        }
        out
    }

    #[test]
    fn every_coding_round_trips_streaming() {
        let page: Vec<u8> = (0..2000)
            .flat_map(|i| format!("<p>line {i} ✓ ünïcode</p>\n").into_bytes())
            .collect();
        for c in [Coding::Gzip, Coding::Brotli, Coding::Zstd] {
            let mut e = Encoder::new(c).unwrap();
            let mut out = Vec::new();
            let mut first = None;
            for chunk in page.chunks(777) {
                let b = e.write(chunk).unwrap();
                first.get_or_insert(b.len());
                out.extend(b);
            }
            out.extend(e.finish().unwrap());
            assert!(
                first.unwrap() > 0,
                "{c:?}: the first chunk is flushed at once"
            );
            assert_eq!(decode(c, &out), page, "{c:?}");
            assert!(out.len() < page.len() / 3, "{c:?}: {} bytes", out.len());
        }
    }

    #[test]
    fn negotiation() {
        let n = |s: &str| Coding::negotiate(std::iter::once(s));
        assert_eq!(n("gzip, deflate, br, zstd"), Some(Coding::Brotli));
        assert_eq!(n("gzip;q=1.0, br;q=0"), Some(Coding::Gzip));
        assert_eq!(n("zstd, gzip"), Some(Coding::Zstd));
        assert_eq!(n("identity"), None);
        assert_eq!(n(""), None);
        assert_eq!(n("*"), Some(Coding::Brotli));
        assert_eq!(n("*, br;q=0, zstd;q=0"), Some(Coding::Gzip));
        assert_eq!(n("GZIP"), Some(Coding::Gzip));
    }
}
