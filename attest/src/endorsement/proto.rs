//! A minimal protocol buffer reader: the fields of one message by number, bounds-checked. Only
//! what Google's endorsement messages use: varints and length-delimited fields (fixed-width
//! fields are skipped; groups are refused).

use super::EndorsementError;

/// One field's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 2: bytes, a string or an embedded message.
    Bytes(&'a [u8]),
    /// Wire types 1 and 5 (fixed64, fixed32): not used by the endorsement, kept for skipping.
    Fixed,
}

/// One field: its number and value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Field<'a> {
    pub number: u32,
    pub value: Value<'a>,
}

/// Iterates the fields of `message`; `base` is the message's offset in the outermost bytes
/// (for error offsets).
pub(crate) struct Fields<'a> {
    message: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(message: &'a [u8], base: usize) -> Self {
        Fields {
            message,
            pos: 0,
            base,
        }
    }

    /// The absolute offset of the byte the reader is at.
    pub(crate) fn offset(&self) -> usize {
        self.base + self.pos
    }

    fn malformed(&self, reason: &'static str) -> EndorsementError {
        EndorsementError::Malformed {
            offset: self.offset(),
            reason,
        }
    }

    fn varint(&mut self) -> Result<u64, EndorsementError> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&byte) = self.message.get(self.pos) else {
                return Err(self.malformed("truncated varint"));
            };
            if i == 9 && byte > 1 {
                return Err(self.malformed("varint longer than 64 bits"));
            }
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.malformed("varint longer than 64 bits"))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], EndorsementError> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|end| *end <= self.message.len())
            .ok_or_else(|| self.malformed("field runs past the end of its message"))?;
        let bytes = &self.message[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn next_field(&mut self) -> Result<(Field<'a>, usize), EndorsementError> {
        let at = self.offset();
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).ok().filter(|n| *n != 0).ok_or(
            EndorsementError::Malformed {
                offset: at,
                reason: "bad field number",
            },
        )?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed
            }
            2 => {
                let len = usize::try_from(self.varint()?)
                    .map_err(|_| self.malformed("length too large"))?;
                let start = self.offset();
                return Ok((
                    Field {
                        number,
                        value: Value::Bytes(self.take(len)?),
                    },
                    start,
                ));
            }
            5 => {
                self.take(4)?;
                Value::Fixed
            }
            _ => {
                return Err(EndorsementError::Malformed {
                    offset: at,
                    reason: "unsupported wire type",
                })
            }
        };
        Ok((Field { number, value }, at))
    }
}

impl<'a> Iterator for Fields<'a> {
    /// The field and the absolute offset of its value (for length-delimited fields: of its
    /// first byte, so an embedded message is read with that base).
    type Item = Result<(Field<'a>, usize), EndorsementError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.message.len() {
            return None;
        }
        let item = self.next_field();
        if item.is_err() {
            // Stop after the first error.
            self.pos = self.message.len();
        }
        Some(item)
    }
}

/// A length-delimited field's bytes, or `Malformed` with `reason` at `offset`.
pub(crate) fn bytes<'a>(
    value: Value<'a>,
    offset: usize,
    reason: &'static str,
) -> Result<&'a [u8], EndorsementError> {
    match value {
        Value::Bytes(b) => Ok(b),
        _ => Err(EndorsementError::Malformed { offset, reason }),
    }
}

/// A varint field's value, or `Malformed`.
pub(crate) fn varint(
    value: Value<'_>,
    offset: usize,
    reason: &'static str,
) -> Result<u64, EndorsementError> {
    match value {
        Value::Varint(v) => Ok(v),
        _ => Err(EndorsementError::Malformed { offset, reason }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(message: &[u8]) -> Result<Vec<(Field<'_>, usize)>, EndorsementError> {
        Fields::new(message, 0).collect()
    }

    #[test]
    fn reads_varints_and_length_delimited_fields_with_their_offsets() {
        // field 1 = 300 (varint), field 2 = "ab", field 3 fixed32 skipped.
        let m = [0x08, 0xac, 0x02, 0x12, 0x02, b'a', b'b', 0x1d, 1, 2, 3, 4];
        let fields = all(&m).unwrap();
        assert_eq!(fields[0].0.value, Value::Varint(300));
        assert_eq!(
            fields[1].0,
            Field {
                number: 2,
                value: Value::Bytes(b"ab")
            }
        );
        assert_eq!(fields[1].1, 5);
        assert_eq!(fields[2].0.value, Value::Fixed);
    }

    #[test]
    fn a_length_past_the_end_is_malformed_at_its_value() {
        let m = [0x08, 0x01, 0x12, 0x05, b'a'];
        assert_eq!(
            all(&m).unwrap_err(),
            EndorsementError::Malformed {
                offset: 4,
                reason: "field runs past the end of its message"
            }
        );
    }

    #[test]
    fn truncated_and_overlong_varints_and_groups_are_malformed() {
        assert!(matches!(
            all(&[0x08, 0x80]),
            Err(EndorsementError::Malformed { offset: 2, .. })
        ));
        let overlong = [
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
        ];
        assert!(matches!(
            all(&overlong),
            Err(EndorsementError::Malformed { .. })
        ));
        assert!(matches!(
            all(&[0x0b]),
            Err(EndorsementError::Malformed {
                offset: 0,
                reason: "unsupported wire type"
            })
        ));
        assert!(matches!(
            all(&[0x00, 0x01]),
            Err(EndorsementError::Malformed {
                reason: "bad field number",
                ..
            })
        ));
    }
}
