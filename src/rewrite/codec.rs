//! Content codings of rewritten pages.
//!
//! - [`Decoder`]: the origin's compressed page (gzip, deflate, br, zstd) decoded chunk by chunk, with the output
//!   bounded in total size and in ratio to the input so that a decompression bomb is cut off, not inflated.
//! - [`Encoder`]: the rewritten page compressed for the client (gzip, br, zstd), streaming: each chunk is flushed
//!   so the client gets the bytes as soon as they are rewritten — time to first byte is not traded for ratio.

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

/// A coding the origin may use that we can decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Gzip,
    Deflate,
    Brotli,
    Zstd,
}

impl Origin {
    /// The coding named by one `Content-Encoding` token; `None` for codings we cannot decode.
    pub fn from_token(token: &str) -> Option<Origin> {
        let t = token.trim();
        let is = |n: &str| t.eq_ignore_ascii_case(n);
        if is("gzip") || is("x-gzip") {
            Some(Origin::Gzip)
        } else if is("deflate") {
            Some(Origin::Deflate)
        } else if is("br") {
            Some(Origin::Brotli)
        } else if is("zstd") {
            Some(Origin::Zstd)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Origin::Gzip => "gzip",
            Origin::Deflate => "deflate",
            Origin::Brotli => "br",
            Origin::Zstd => "zstd",
        }
    }
}

/// The `Accept-Encoding` to send the origin for a page we may rewrite: the client's codings that we can also
/// decode (so that a response we end up not rewriting is still one the client accepts), else `identity`.
pub fn upstream_accept_encoding<'a>(client: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for item in client.flat_map(|v| v.split(',')) {
        let name = item.split(';').next().unwrap_or("").trim();
        if Origin::from_token(name).is_some() || name.eq_ignore_ascii_case("identity") {
            if !out.is_empty() {
                out.push_str(", ");
            }
            out.push_str(item.trim());
        }
    }
    if out.is_empty() {
        out.push_str("identity");
    }
    out
}

/// Bounds on decoded output.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Most decoded bytes for one body.
    pub max_output: u64,
    /// Most decoded bytes per compressed byte, enforced once the output passes [`RATIO_GRACE`].
    pub max_ratio: u64,
}

/// Decoded bytes allowed before the ratio bound applies (a small page of repeated markup compresses very well).
pub const RATIO_GRACE: u64 = 1024 * 1024;

/// Why decoding stopped.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("decoded body exceeds {0} bytes")]
    TooLarge(u64),
    #[error("decoded body exceeds {0} times its compressed size (decompression bomb?)")]
    Ratio(u64),
    #[error("malformed {coding} stream: {error}")]
    Malformed {
        coding: &'static str,
        error: std::io::Error,
    },
}

/// Where decoded bytes go: a buffer that refuses to grow past the limits.
struct Capped {
    buf: Vec<u8>,
    total: u64,
    input: u64,
    limits: DecodeLimits,
    tripped: Option<DecodeError>,
}

impl Write for Capped {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let total = self.total + data.len() as u64;
        let over = if total > self.limits.max_output {
            Some(DecodeError::TooLarge(self.limits.max_output))
        } else if total > RATIO_GRACE && total > self.input.saturating_mul(self.limits.max_ratio) {
            Some(DecodeError::Ratio(self.limits.max_ratio))
        } else {
            None
        };
        if let Some(e) = over {
            let msg = e.to_string();
            self.tripped = Some(e);
            return Err(std::io::Error::other(msg));
        }
        self.total = total;
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

enum DecoderInner {
    /// `deflate` before its first two bytes arrived: zlib-wrapped (as RFC 9110 says) or raw (as some servers send).
    DeflateSniff(Capped, Vec<u8>),
    Gzip(flate2::write::MultiGzDecoder<Capped>),
    Zlib(flate2::write::ZlibDecoder<Capped>),
    Raw(flate2::write::DeflateDecoder<Capped>),
    Brotli(Box<brotli::DecompressorWriter<Capped>>),
    Zstd(zstd::stream::write::Decoder<'static, Capped>),
}

/// A streaming, bounded decoder for one compressed body.
pub struct Decoder {
    coding: Origin,
    inner: Option<DecoderInner>,
}

impl Decoder {
    pub fn new(coding: Origin, limits: DecodeLimits) -> Result<Decoder, DecodeError> {
        let sink = Capped {
            buf: Vec::new(),
            total: 0,
            input: 0,
            limits,
            tripped: None,
        };
        let malformed = |error| DecodeError::Malformed {
            coding: coding.name(),
            error,
        };
        let inner = match coding {
            Origin::Gzip => DecoderInner::Gzip(flate2::write::MultiGzDecoder::new(sink)),
            Origin::Deflate => DecoderInner::DeflateSniff(sink, Vec::new()),
            Origin::Brotli => {
                DecoderInner::Brotli(Box::new(brotli::DecompressorWriter::new(sink, 16 * 1024)))
            }
            Origin::Zstd => {
                // Window at most 8 MiB, as RFC 8878 asks of HTTP decoders: a frame cannot demand more memory.
                let mut raw = zstd::stream::raw::Decoder::new().map_err(malformed)?;
                raw.set_parameter(zstd::stream::raw::DParameter::WindowLogMax(23))
                    .map_err(malformed)?;
                DecoderInner::Zstd(zstd::stream::write::Decoder::with_decoder(sink, raw))
            }
        };
        Ok(Decoder {
            coding,
            inner: Some(inner),
        })
    }

    fn sink(inner: &mut DecoderInner) -> &mut Capped {
        match inner {
            DecoderInner::DeflateSniff(s, _) => s,
            DecoderInner::Gzip(d) => d.get_mut(),
            DecoderInner::Zlib(d) => d.get_mut(),
            DecoderInner::Raw(d) => d.get_mut(),
            DecoderInner::Brotli(d) => d.get_mut(),
            DecoderInner::Zstd(d) => d.get_mut(),
        }
    }

    fn fail(&mut self, error: std::io::Error) -> DecodeError {
        let tripped = self
            .inner
            .as_mut()
            .and_then(|i| Self::sink(i).tripped.take());
        self.inner = None;
        tripped.unwrap_or(DecodeError::Malformed {
            coding: self.coding.name(),
            error,
        })
    }

    /// Feed compressed bytes; returns the decoded bytes available so far.
    pub fn write(&mut self, data: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let Some(inner) = self.inner.as_mut() else {
            return Ok(Vec::new());
        };
        Self::sink(inner).input += data.len() as u64;
        let result = Self::feed(inner, data);
        match result {
            Ok(()) => Ok(std::mem::take(&mut Self::sink(inner).buf)),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn feed(inner: &mut DecoderInner, data: &[u8]) -> std::io::Result<()> {
        if let DecoderInner::DeflateSniff(sink, head) = inner {
            head.extend_from_slice(data);
            if head.len() < 2 {
                return Ok(());
            }
            // A zlib header: CM = 8, CINFO ≤ 7, and the 16-bit header a multiple of 31 (RFC 1950).
            let zlib = head[0] & 0x0f == 8
                && head[0] >> 4 <= 7
                && (u16::from(head[0]) << 8 | u16::from(head[1])) % 31 == 0;
            let head = std::mem::take(head);
            let sink = std::mem::replace(
                sink,
                Capped {
                    buf: Vec::new(),
                    total: 0,
                    input: 0,
                    limits: sink.limits,
                    tripped: None,
                },
            );
            *inner = if zlib {
                DecoderInner::Zlib(flate2::write::ZlibDecoder::new(sink))
            } else {
                DecoderInner::Raw(flate2::write::DeflateDecoder::new(sink))
            };
            return Self::feed(inner, &head);
        }
        match inner {
            DecoderInner::DeflateSniff(..) => Ok(()),
            DecoderInner::Gzip(d) => d.write_all(data).and_then(|()| d.flush()),
            DecoderInner::Zlib(d) => d.write_all(data).and_then(|()| d.flush()),
            DecoderInner::Raw(d) => d.write_all(data).and_then(|()| d.flush()),
            DecoderInner::Brotli(d) => d.write_all(data).and_then(|()| d.flush()),
            DecoderInner::Zstd(d) => d.write_all(data).and_then(|()| d.flush()),
        }
    }

    /// End of the compressed body: the last decoded bytes; an error if the stream was incomplete.
    pub fn finish(&mut self) -> Result<Vec<u8>, DecodeError> {
        let Some(mut inner) = self.inner.take() else {
            return Ok(Vec::new());
        };
        if Self::sink(&mut inner).input == 0 {
            // No body at all (HEAD, or an empty 200): nothing to decode.
            return Ok(Vec::new());
        }
        let result = match &mut inner {
            DecoderInner::DeflateSniff(_, head) if head.is_empty() => Ok(()),
            DecoderInner::DeflateSniff(..) => Err(std::io::ErrorKind::UnexpectedEof.into()),
            DecoderInner::Gzip(d) => d.try_finish(),
            DecoderInner::Zlib(d) => d.try_finish(),
            DecoderInner::Raw(d) => d.try_finish(),
            DecoderInner::Brotli(d) => d.close().and_then(|()| d.flush()),
            DecoderInner::Zstd(d) => d.do_finish(),
        };
        match result {
            Ok(()) => Ok(std::mem::take(&mut Self::sink(&mut inner).buf)),
            Err(e) => {
                self.inner = Some(inner);
                Err(self.fail(e))
            }
        }
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

    fn encode_origin(c: Origin, data: &[u8]) -> Vec<u8> {
        match c {
            Origin::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Origin::Deflate => {
                let mut e =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Origin::Brotli => {
                let mut out = Vec::new();
                {
                    let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                    w.write_all(data).unwrap();
                }
                out
            }
            Origin::Zstd => zstd::stream::encode_all(data, 3).unwrap(),
        }
    }

    const LIMITS: DecodeLimits = DecodeLimits {
        max_output: 64 * 1024 * 1024,
        max_ratio: 100,
    };

    fn decode_chunks(
        c: Origin,
        data: &[u8],
        chunk: usize,
        limits: DecodeLimits,
    ) -> Result<Vec<u8>, DecodeError> {
        let mut d = Decoder::new(c, limits)?;
        let mut out = Vec::new();
        for piece in data.chunks(chunk) {
            out.extend(d.write(piece)?);
        }
        out.extend(d.finish()?);
        Ok(out)
    }

    fn page() -> Vec<u8> {
        (0..3000)
            .flat_map(|i| format!("<p>line {i} ✓ ünïcode {}</p>\n", i * 7919 % 1000).into_bytes())
            .collect()
    }

    #[test]
    fn every_origin_coding_decodes_in_any_chunking() {
        let page = page();
        for c in [Origin::Gzip, Origin::Deflate, Origin::Brotli, Origin::Zstd] {
            let enc = encode_origin(c, &page);
            for chunk in [1, 7, 1000, enc.len()] {
                assert_eq!(
                    decode_chunks(c, &enc, chunk, LIMITS).unwrap(),
                    page,
                    "{c:?} in {chunk}-byte chunks"
                );
            }
        }
        // Raw deflate (no zlib wrapper), as some servers send for `deflate`.
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(6));
        e.write_all(&page).unwrap();
        let raw = e.finish().unwrap();
        for chunk in [1, 1000] {
            assert_eq!(
                decode_chunks(Origin::Deflate, &raw, chunk, LIMITS).unwrap(),
                page
            );
        }
        // Two gzip members.
        let mut two = encode_origin(Origin::Gzip, b"<p>one</p>");
        two.extend(encode_origin(Origin::Gzip, b"<p>two</p>"));
        assert_eq!(
            decode_chunks(Origin::Gzip, &two, 3, LIMITS).unwrap(),
            b"<p>one</p><p>two</p>"
        );
        // No body at all.
        assert_eq!(decode_chunks(Origin::Gzip, b"", 1, LIMITS).unwrap(), b"");
    }

    #[test]
    fn a_decompression_bomb_is_cut_off() {
        let zeros = vec![0u8; 32 * 1024 * 1024];
        for c in [Origin::Gzip, Origin::Deflate, Origin::Brotli, Origin::Zstd] {
            let bomb = encode_origin(c, &zeros);
            assert!(
                bomb.len() < zeros.len() / 500,
                "{c:?}: {} bytes",
                bomb.len()
            );
            let mut d = Decoder::new(c, LIMITS).unwrap();
            let mut produced = 0u64;
            let mut error = None;
            for piece in bomb.chunks(4096) {
                match d.write(piece) {
                    Ok(out) => produced += out.len() as u64,
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
            let error =
                error.unwrap_or_else(|| panic!("{c:?}: not cut off after {produced} bytes"));
            assert!(matches!(error, DecodeError::Ratio(100)), "{c:?}: {error}");
            // Never more than the grace plus 100× what came in.
            assert!(
                produced <= RATIO_GRACE + 100 * bomb.len() as u64,
                "{c:?}: {produced}"
            );
            // After the error the decoder stays stopped.
            assert!(d.write(&bomb[..10]).unwrap().is_empty());
        }
        // The absolute cap, for well-compressing input within the ratio.
        let page = page();
        let enc = encode_origin(Origin::Gzip, &page);
        let small = DecodeLimits {
            max_output: 10_000,
            max_ratio: 1000,
        };
        assert!(matches!(
            decode_chunks(Origin::Gzip, &enc, 512, small),
            Err(DecodeError::TooLarge(10_000))
        ));
    }

    #[test]
    fn malformed_and_truncated_streams_are_errors() {
        let page = page();
        for c in [Origin::Gzip, Origin::Deflate, Origin::Brotli, Origin::Zstd] {
            let enc = encode_origin(c, &page);
            let cut = &enc[..enc.len() / 2];
            assert!(
                matches!(
                    decode_chunks(c, cut, 100, LIMITS),
                    Err(DecodeError::Malformed { .. })
                ),
                "{c:?} truncated"
            );
            let garbage = b"<html>this is not compressed at all</html>";
            assert!(
                decode_chunks(c, garbage, 5, LIMITS).is_err(),
                "{c:?} garbage"
            );
        }
    }

    #[test]
    fn upstream_accept_encoding_keeps_what_we_decode() {
        let u = |s: &str| upstream_accept_encoding(std::iter::once(s));
        assert_eq!(u("gzip, deflate, br, zstd"), "gzip, deflate, br, zstd");
        assert_eq!(u("gzip;q=0.5, compress, sdch, br"), "gzip;q=0.5, br");
        assert_eq!(u("compress"), "identity");
        assert_eq!(u(""), "identity");
        assert_eq!(Origin::from_token(" X-GZIP "), Some(Origin::Gzip));
        assert_eq!(Origin::from_token("compress"), None);
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
