//! The protobuf wire format: varints, keys and length-delimited fields. Every
//! read is bounds-checked and returns an error instead of panicking.

pub const VARINT: u8 = 0;
pub const I64: u8 = 1;
pub const LEN: u8 = 2;
pub const I32: u8 = 5;

/// One field as it appears on the wire.
pub enum WireValue<'a> {
    Varint(u64),
    I64([u8; 8]),
    Len(&'a [u8]),
    /// A 32-bit fixed field (no Kubernetes message has one; skipped).
    I32,
}

pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    pub fn varint(&mut self) -> Result<u64, String> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.data.get(self.pos) else {
                return Err("unexpected end of data in varint".into());
            };
            self.pos += 1;
            if i == 9 && b > 1 {
                return Err("varint overflows 64 bits".into());
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len()).ok_or("unexpected end of data")?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub fn fixed64(&mut self) -> Result<[u8; 8], String> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(b)
    }

    /// The next field: its number and value. Groups (wire types 3 and 4, unused
    /// by Kubernetes) are rejected.
    pub fn field(&mut self) -> Result<(u32, WireValue<'a>), String> {
        let key = self.varint()?;
        let wire_type = (key & 7) as u8;
        let number = key >> 3;
        if number == 0 || number > u64::from(u32::MAX >> 3) {
            return Err(format!("invalid field number {number}"));
        }
        let number = number as u32;
        let value = match wire_type {
            VARINT => WireValue::Varint(self.varint()?),
            I64 => WireValue::I64(self.fixed64()?),
            LEN => {
                let n = self.varint()?;
                let n = usize::try_from(n).map_err(|_| "length too large".to_string())?;
                WireValue::Len(self.take(n)?)
            }
            I32 => {
                self.take(4)?;
                WireValue::I32
            }
            other => return Err(format!("unsupported wire type {other} for field {number}")),
        };
        Ok((number, value))
    }
}

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn put_key(out: &mut Vec<u8>, number: u32, wire_type: u8) {
    put_varint(out, (u64::from(number) << 3) | u64::from(wire_type));
}

pub fn put_len(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    put_key(out, number, LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

pub fn put_varint_field(out: &mut Vec<u8>, number: u32, v: u64) {
    put_key(out, number, VARINT);
    put_varint(out, v);
}
