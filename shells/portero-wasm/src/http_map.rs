//! The proxy-wasm ABI's serialised header map, decoded as bytes.
//!
//! Layout: a little-endian `u32` count; per entry a `u32` name length and a
//! `u32` value length; then per entry the name, a NUL, the value, a NUL.
//! Every length is checked against the buffer: a malformed map decodes to
//! `None`, never to a panic.

use portero_core::edited_headers::HeaderLine;

/// Decodes a serialised header map; `None` when it is malformed.
pub fn decode(bytes: &[u8]) -> Option<Vec<HeaderLine>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let count = usize::try_from(read_u32(bytes, 0)?).ok()?;
    let sizes_end = count.checked_mul(8)?.checked_add(4)?;
    if sizes_end > bytes.len() {
        return None;
    }
    let mut lines = Vec::with_capacity(count);
    let mut at = sizes_end;
    for n in 0..count {
        let sizes = 4 + n * 8;
        let name_len = usize::try_from(read_u32(bytes, sizes)?).ok()?;
        let value_len = usize::try_from(read_u32(bytes, sizes + 4)?).ok()?;
        let name = bytes.get(at..at.checked_add(name_len)?)?.to_vec();
        at = at.checked_add(name_len)?.checked_add(1)?;
        let value = bytes.get(at..at.checked_add(value_len)?)?.to_vec();
        at = at.checked_add(value_len)?.checked_add(1)?;
        lines.push((name, value));
    }
    Some(lines)
}

/// Encodes lines in the same layout (the inverse of [`decode`], for tests).
#[cfg(test)]
pub fn encode(lines: &[HeaderLine]) -> Vec<u8> {
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    let mut out = Vec::new();
    out.extend_from_slice(&len(lines.len()));
    for (name, value) in lines {
        out.extend_from_slice(&len(name.len()));
        out.extend_from_slice(&len(value.len()));
    }
    for (name, value) in lines {
        out.extend_from_slice(name);
        out.push(0);
        out.extend_from_slice(value);
        out.push(0);
    }
    out
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_any_bytes() {
        let lines = vec![
            (b":path".to_vec(), b"/me".to_vec()),
            (b"x-junk".to_vec(), vec![0xff, 0x00, 0x80, b'a']),
            (b"cookie".to_vec(), b"a=1".to_vec()),
            (b"cookie".to_vec(), Vec::new()),
        ];
        assert_eq!(decode(&encode(&lines)), Some(lines));
        assert_eq!(decode(&[]), Some(Vec::new()));
    }

    #[test]
    fn malformed_maps_decode_to_none() {
        let good = encode(&[(b"a".to_vec(), b"b".to_vec())]);
        for cut in 1..good.len() - 1 {
            assert_eq!(decode(&good[..cut]), None, "cut at {cut}");
        }
        // A count far beyond the buffer, and lengths that overflow.
        assert_eq!(decode(&u32::MAX.to_le_bytes()), None);
        let mut huge = 1u32.to_le_bytes().to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&huge), None);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A fixed-seed walk over random buffers (xorshift; no dependency).
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| (state.rotate_left(i as u32 * 8) & 0xff) as u8)
                .collect();
            let _ = decode(&bytes);
        }
    }
}
