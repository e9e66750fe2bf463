//! US Privacy string (legacy CCPA): `1` + notice given + opted out of sale + covered by the LSPA, each `Y`, `N`
//! or `-` (not applicable).

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UspError {
    #[error("a US Privacy string is 4 characters, version 1, then Y, N or - three times")]
    Malformed,
}

/// One of `Y`, `N`, `-`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Flag {
    #[serde(rename = "Y")]
    Yes,
    #[serde(rename = "N")]
    No,
    #[serde(rename = "-")]
    NotApplicable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsPrivacy {
    pub version: u8,
    pub notice: Flag,
    pub opt_out_sale: Flag,
    pub lspa_covered: Flag,
}

impl UsPrivacy {
    /// The visitor opted out of the sale of their data.
    pub fn opted_out(&self) -> bool {
        self.opt_out_sale == Flag::Yes
    }
}

pub fn decode(s: &str) -> Result<UsPrivacy, UspError> {
    let b = s.trim().as_bytes();
    let flag = |c: u8| match c.to_ascii_uppercase() {
        b'Y' => Ok(Flag::Yes),
        b'N' => Ok(Flag::No),
        b'-' => Ok(Flag::NotApplicable),
        _ => Err(UspError::Malformed),
    };
    match b {
        [b'1', n, o, l] => Ok(UsPrivacy {
            version: 1,
            notice: flag(*n)?,
            opt_out_sale: flag(*o)?,
            lspa_covered: flag(*l)?,
        }),
        _ => Err(UspError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings() {
        let u = decode("1YNN").unwrap();
        assert!(!u.opted_out());
        assert_eq!(u.notice, Flag::Yes);
        assert!(decode("1NYN").unwrap().opted_out());
        assert_eq!(decode("1---").unwrap().opt_out_sale, Flag::NotApplicable);
        assert!(decode("1yyn").unwrap().opted_out(), "case-insensitive");
        for bad in ["", "1YN", "2YNN", "1YNNN", "1YXN", "YNN1"] {
            assert_eq!(decode(bad), Err(UspError::Malformed), "{bad}");
        }
    }
}
