//! Certificate serial numbers: random, positive, 126 bits of entropy, and
//! always 16 bytes long, so the hex form is stable and matches what
//! `openssl x509 -serial` prints.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A certificate serial number (big-endian bytes of a positive integer).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial(Vec<u8>);

impl Serial {
    /// A fresh random serial. The first byte is kept in 0x10..=0x7F: positive
    /// (no DER sign byte) and never a leading zero, so the encoding is always 16 bytes.
    pub fn random() -> Serial {
        let mut bytes = [0u8; 16];
        // aws-lc's CSPRNG; it only fails if the OS entropy source is gone.
        aws_lc_rs::rand::fill(&mut bytes).expect("the OS random number generator failed");
        bytes[0] = 0x10 + (bytes[0] % 0x70);
        Serial(bytes.to_vec())
    }

    /// The big-endian bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Wraps big-endian bytes as encoded in a certificate (a leading sign byte is dropped).
    pub fn from_bytes(bytes: &[u8]) -> Serial {
        let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len().saturating_sub(1));
        Serial(bytes[start..].to_vec())
    }
}

impl fmt::Display for Serial {
    /// Uppercase hex without separators, as `openssl x509 -serial` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl FromStr for Serial {
    type Err = Error;

    /// Accepts hex in either case, with or without `0x`, colons or spaces.
    fn from_str(s: &str) -> Result<Self> {
        let trimmed = s.trim();
        let trimmed = trimmed.strip_prefix("serial=").unwrap_or(trimmed);
        let trimmed = trimmed.strip_prefix("0x").or_else(|| trimmed.strip_prefix("0X")).unwrap_or(trimmed);
        let mut digits: String = trimmed.chars().filter(|c| *c != ':' && *c != ' ').collect();
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::MalformedSerial(s.to_owned()));
        }
        if digits.len() % 2 == 1 {
            digits.insert(0, '0');
        }
        let bytes = hex::decode(&digits).map_err(|_| Error::MalformedSerial(s.to_owned()))?;
        Ok(Serial::from_bytes(&bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_serials_are_positive_sixteen_bytes_and_distinct() {
        let a = Serial::random();
        let b = Serial::random();
        assert_ne!(a, b);
        for s in [&a, &b] {
            assert_eq!(s.as_bytes().len(), 16);
            assert!((0x10..0x80).contains(&s.as_bytes()[0]));
            assert_eq!(s.to_string().len(), 32);
        }
    }

    #[test]
    fn parses_what_openssl_prints_and_friendlier_forms() {
        let s: Serial = "4A3F01".parse().unwrap();
        assert_eq!(s.to_string(), "4A3F01");
        assert_eq!("4a:3f:01".parse::<Serial>().unwrap(), s);
        assert_eq!("serial=4A3F01".parse::<Serial>().unwrap(), s);
        assert_eq!("0x004a3f01".parse::<Serial>().unwrap(), s);
        assert!("xyz".parse::<Serial>().is_err());
        assert!("".parse::<Serial>().is_err());
    }
}
