//! LEB128 unsigned varints, the number encoding of the session record.

/// Appends `value` as an unsigned LEB128 varint (1 to 10 bytes).
pub(crate) fn put(buffer: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buffer.push((value as u8) | 0x80);
        value >>= 7;
    }
    buffer.push(value as u8);
}

/// Reads one varint from the front of `input`, advancing it. `None` on truncation or overflow.
pub(crate) fn take(input: &mut &[u8]) -> Option<u64> {
    let mut value: u64 = 0;
    for (index, byte) in input.iter().enumerate().take(10) {
        let low_bits = u64::from(byte & 0x7f);
        let shift = 7 * index as u32;
        if shift == 63 && low_bits > 1 {
            return None;
        }
        value |= low_bits << shift;
        if byte & 0x80 == 0 {
            *input = &input[index + 1..];
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_edge_values() {
        for value in [0, 1, 127, 128, 300, 16_383, 16_384, u32::MAX as u64, u64::MAX] {
            let mut buffer = Vec::new();
            put(&mut buffer, value);
            let mut input = buffer.as_slice();
            assert_eq!(take(&mut input), Some(value));
            assert!(input.is_empty());
        }
    }

    #[test]
    fn small_values_take_one_byte() {
        let mut buffer = Vec::new();
        put(&mut buffer, 127);
        assert_eq!(buffer.len(), 1);
    }

    #[test]
    fn rejects_truncated_and_overlong_input() {
        assert_eq!(take(&mut &[0x80u8][..]), None);
        assert_eq!(take(&mut &[][..]), None);
        assert_eq!(take(&mut &[0xffu8; 11][..]), None);
        let overflowing = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(take(&mut &overflowing[..]), None);
    }
}
