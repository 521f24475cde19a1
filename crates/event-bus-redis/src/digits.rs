//! Decimal text of integers without an allocation, for the commands and
//! ids written on every publish and read.

/// Decimal text of an integer without an allocation.
#[derive(Default)]
pub(crate) struct Digits([u8; 21]);

impl Digits {
    /// `n` in decimal, with a `-` if negative.
    pub(crate) fn format_signed(&mut self, n: i64) -> &[u8] {
        let len = self.format(n.unsigned_abs()).len();
        let start = self.0.len() - len;
        if n < 0 {
            self.0[start - 1] = b'-';
            &self.0[start - 1..]
        } else {
            &self.0[start..]
        }
    }

    /// `n` in decimal.
    pub(crate) fn format(&mut self, mut n: u64) -> &[u8] {
        let mut i = self.0.len();
        loop {
            i -= 1;
            self.0[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        &self.0[i..]
    }
}
