//! Canonical hex, the one spelling of bytes in Candor's signed documents and audit details:
//! lower case, even length, nothing else. Decoding refuses any other spelling of the same
//! bytes, so each signed document has exactly one valid encoding.

/// Lower-case hex.
pub fn encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of canonical hex as [`encode`] writes it; `None` for anything else.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_hex_decodes() {
        assert_eq!(decode("00ff7a"), Some(vec![0, 255, 0x7a]));
        assert_eq!(encode(&[0, 255, 0x7a]), "00ff7a");
        for bad in ["00FF7A", "00fF", "0", "zz", "0x00", " 00", "00 "] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
