//! Integer arithmetic as StableHLO defines it: wrapping, with total division and shifts.

/// An integer element type. Arithmetic wraps; `div`/`rem` by zero give 0; `shl`/`shr` are
/// only called with amounts below [`Int::BITS`] (the kernels give 0 otherwise).
pub trait Int:
    Copy
    + Default
    + PartialOrd
    + Send
    + Sync
    + std::ops::BitAnd<Output = Self>
    + std::ops::BitOr<Output = Self>
    + std::ops::BitXor<Output = Self>
{
    const BITS: u32;
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn div(self, o: Self) -> Self;
    fn rem(self, o: Self) -> Self;
    fn neg(self) -> Self;
    fn abs(self) -> Self;
    fn not(self) -> Self;
    fn shl(self, s: Self) -> Self;
    /// Logical (zero-filling) right shift of the bit pattern, also for signed types.
    fn shr(self, s: Self) -> Self;
    /// The shift amount as an unsigned number (negative amounts become huge, so out of range).
    fn as_shift(self) -> u64;
    /// `self as i64` (sign- or zero-extending).
    fn to_i64(self) -> i64;
    /// `x as Self` (keeping the low bits).
    fn from_i64(x: i64) -> Self;
}

macro_rules! arith {
    () => {
        fn add(self, o: Self) -> Self {
            self.wrapping_add(o)
        }
        fn sub(self, o: Self) -> Self {
            self.wrapping_sub(o)
        }
        fn mul(self, o: Self) -> Self {
            self.wrapping_mul(o)
        }
        fn div(self, o: Self) -> Self {
            if o == 0 {
                0
            } else {
                self.wrapping_div(o)
            }
        }
        fn rem(self, o: Self) -> Self {
            if o == 0 {
                0
            } else {
                self.wrapping_rem(o)
            }
        }
        fn as_shift(self) -> u64 {
            self as u64
        }
        fn to_i64(self) -> i64 {
            self as i64
        }
        fn from_i64(x: i64) -> Self {
            x as Self
        }
    };
}

macro_rules! signed {
    ($t:ty, $u:ty) => {
        impl Int for $t {
            const BITS: u32 = <$t>::BITS;
            arith!();
            fn neg(self) -> Self {
                self.wrapping_neg()
            }
            fn abs(self) -> Self {
                self.wrapping_abs()
            }
            fn not(self) -> Self {
                !self
            }
            fn shl(self, s: Self) -> Self {
                self.wrapping_shl(s as u32)
            }
            fn shr(self, s: Self) -> Self {
                ((self as $u).wrapping_shr(s as u32)) as $t
            }
        }
    };
}
signed!(i32, u32);
signed!(i64, u64);

impl Int for u32 {
    const BITS: u32 = u32::BITS;
    arith!();
    fn neg(self) -> Self {
        self
    }
    fn abs(self) -> Self {
        self
    }
    fn not(self) -> Self {
        !self
    }
    fn shl(self, s: Self) -> Self {
        self.wrapping_shl(s)
    }
    fn shr(self, s: Self) -> Self {
        self.wrapping_shr(s)
    }
}

/// Booleans stored as 0 or 1.
impl Int for u8 {
    const BITS: u32 = u8::BITS;
    arith!();
    fn neg(self) -> Self {
        self
    }
    fn abs(self) -> Self {
        self
    }
    fn not(self) -> Self {
        1 - self
    }
    fn shl(self, _: Self) -> Self {
        self
    }
    fn shr(self, _: Self) -> Self {
        self
    }
}
