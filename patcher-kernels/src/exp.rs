//! `exp` on f32 lanes, written to vectorise: wide 1.7's `f32x8::exp` (a degree-5 polynomial
//! after reducing by powers of two, fdlibm's split of ln 2), whose values the kit's SiLU had,
//! bit for bit (NaN payloads aside), in lane code without branches.

/// `exp(x)` within an ulp or two of libm's: `inf` above 88.723, `0` below -103.63, NaN for NaN.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const P0: f32 = 1.0 / 2.0;
    const P1: f32 = 1.0 / 6.0;
    const P2: f32 = 1.0 / 24.0;
    const P3: f32 = 1.0 / 120.0;
    const P4: f32 = 1.0 / 720.0;
    const P5: f32 = 1.0 / 5040.0;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding then subtracting 1.5 * 2^23 rounds to an integer, ties to even, below 2^22 (larger
    // magnitudes end in the overflow and underflow cases below).
    const ROUND: f32 = 12_582_912.0;
    let r = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let big = r > 127.0;
    let (r_safe, excess) = if big { (127.0, r - 127.0) } else { (r, 0.0) };
    let y = x - r * LN2_HI;
    let y = y - r * LN2_LO;
    let (y2, y4) = (y * y, y * y * (y * y));
    let z = (P3 * y + P2) * y2 + ((P5 * y + P4) * y4 + (P1 * y + P0));
    let z = z * y2 + y;
    let z = (z + 1.0) * pow2(excess) * pow2(r_safe);
    if x.is_nan() {
        x
    } else if x > 88.723 {
        f32::INFINITY
    } else if x < -103.63 {
        0.0
    } else {
        z
    }
}

/// `2^n` for an integral `n` in `[-150, 127]`, exactly (0 for -150, as round-to-even gives).
#[inline(always)]
fn pow2(n: f32) -> f32 {
    // Below -126 the power is subnormal: build `2^(n + 64)` and scale it down exactly.
    let subnormal = n < -126.0;
    let m = if subnormal { n + 64.0 } else { n };
    // `m + 127` in the low bits of `2^23 + m + 127`, shifted into the exponent field.
    let p = f32::from_bits((m + (127.0 + 8_388_608.0)).to_bits() << 23);
    if subnormal {
        p * f32::from_bits(0x1f80_0000) // 2^-64
    } else {
        p
    }
}

#[cfg(test)]
mod tests {
    use super::exp;

    #[test]
    fn exp_is_within_two_ulps_of_libm() {
        let mut x = -110.0f32;
        while x < 90.0 {
            let (got, want) = (exp(x), x.exp());
            let ulps = (got.to_bits() as i64 - want.to_bits() as i64).abs();
            assert!(
                ulps <= 2 || (want - got).abs() <= f32::from_bits(2),
                "exp({x}) {got} vs {want}"
            );
            x += 0.0137;
        }
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(89.0), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(0.0), 1.0);
    }
}
