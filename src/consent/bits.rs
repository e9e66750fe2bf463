//! Reading the IAB strings' bit layouts: base64url (no padding needed) into bits, big-endian fields.

/// Why a string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BitsError {
    #[error("character {0:?} is not base64url")]
    BadCharacter(char),
    #[error("the string ends inside field `{0}`")]
    Truncated(&'static str),
}

/// The bits of one base64url segment.
pub struct BitReader {
    bytes: Vec<u8>,
    len_bits: usize,
    pos: usize,
}

impl BitReader {
    /// Decode a base64url segment; trailing `=` padding is accepted and ignored.
    pub fn from_base64url(segment: &str) -> Result<BitReader, BitsError> {
        let segment = segment.trim_end_matches('=');
        let mut bytes = Vec::with_capacity(segment.len() * 6 / 8 + 1);
        let mut acc: u32 = 0;
        let mut nbits = 0;
        for c in segment.chars() {
            let v = match c {
                'A'..='Z' => c as u32 - 'A' as u32,
                'a'..='z' => c as u32 - 'a' as u32 + 26,
                '0'..='9' => c as u32 - '0' as u32 + 52,
                '-' | '+' => 62,
                '_' | '/' => 63,
                other => return Err(BitsError::BadCharacter(other)),
            };
            acc = (acc << 6) | v;
            nbits += 6;
            if nbits >= 8 {
                nbits -= 8;
                bytes.push((acc >> nbits) as u8);
                acc &= (1 << nbits) - 1;
            }
        }
        let len_bits = segment.chars().count() * 6;
        if nbits > 0 {
            bytes.push((acc << (8 - nbits)) as u8);
        }
        Ok(BitReader {
            bytes,
            len_bits,
            pos: 0,
        })
    }

    /// Read `n` (≤ 64) bits as an unsigned number.
    pub fn read(&mut self, n: usize, field: &'static str) -> Result<u64, BitsError> {
        debug_assert!(n <= 64);
        if self.pos + n > self.len_bits {
            return Err(BitsError::Truncated(field));
        }
        let mut v: u64 = 0;
        for _ in 0..n {
            let byte = self.bytes[self.pos / 8];
            let bit = (byte >> (7 - self.pos % 8)) & 1;
            v = (v << 1) | u64::from(bit);
            self.pos += 1;
        }
        Ok(v)
    }

    pub fn bool(&mut self, field: &'static str) -> Result<bool, BitsError> {
        Ok(self.read(1, field)? == 1)
    }
}

/// Writing bits, for tests' encoders (round trips).
#[cfg(test)]
#[derive(Default)]
pub struct BitWriter {
    bits: Vec<bool>,
}

#[cfg(test)]
impl BitWriter {
    pub fn write(&mut self, value: u64, n: usize) {
        for i in (0..n).rev() {
            self.bits.push((value >> i) & 1 == 1);
        }
    }

    pub fn bool(&mut self, b: bool) {
        self.bits.push(b);
    }

    /// base64url without padding.
    pub fn to_base64url(&self) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        self.bits
            .chunks(6)
            .map(|chunk| {
                let mut v = 0usize;
                for i in 0..6 {
                    v = (v << 1) | usize::from(chunk.get(i).copied().unwrap_or(false));
                }
                ALPHABET[v] as char
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let mut w = BitWriter::default();
        w.write(2, 6);
        w.write(0xabcde, 20);
        w.bool(true);
        let s = w.to_base64url();
        let mut r = BitReader::from_base64url(&s).unwrap();
        assert_eq!(r.read(6, "a").unwrap(), 2);
        assert_eq!(r.read(20, "b").unwrap(), 0xabcde);
        assert!(r.bool("c").unwrap());
        let mut r = BitReader::from_base64url("CA==").unwrap();
        assert_eq!(r.read(6, "v").unwrap(), 2);
        assert_eq!(r.read(12, "x"), Err(BitsError::Truncated("x")));
        assert!(matches!(
            BitReader::from_base64url("C*"),
            Err(BitsError::BadCharacter('*'))
        ));
    }
}
