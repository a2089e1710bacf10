//! The kernels' one SIMD strategy: compiled for several instruction sets, chosen at run time.
//!
//! A hot loop is written once as plain lane code (`[f32; 8]` chunks, no intrinsics) and compiled
//! twice: for the target's baseline (SSE2 on x86_64) and, on x86_64, for AVX2 + FMA, where LLVM
//! vectorises it to 256-bit registers. [`Isa::detect`] picks the version once per process with
//! the standard library's CPU detection (`is_x86_feature_detected!`), as burn-flex's SIMD
//! kernels (macerator) choose theirs at run time. Nothing is chosen when compiling, so a binary
//! built for generic x86_64 still runs AVX2 where the CPU has it.
//!
//! Multiplications and additions are written apart, never fused, so both versions compute the
//! same values bit for bit: a result does not depend on the CPU.

use std::sync::OnceLock;

/// The instruction set a kernel runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Isa {
    /// x86_64 with AVX2 and FMA.
    Avx2,
    /// The target's baseline (SSE2 on x86_64, NEON on aarch64, scalar elsewhere).
    Baseline,
}

impl Isa {
    /// This CPU's best [`Isa`], detected once.
    ///
    /// ```
    /// let isa = patcher_kernels::simd::Isa::detect();
    /// assert_eq!(isa, patcher_kernels::simd::Isa::detect());
    /// ```
    pub fn detect() -> Self {
        static ISA: OnceLock<Isa> = OnceLock::new();
        *ISA.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx2;
            }
            Isa::Baseline
        })
    }
}

/// `fn $name($args) $body`, compiled for each [`Isa`] and dispatched on [`Isa::detect`]. The
/// body must be safe code; it is inlined into each version.
macro_rules! multiversion {
    ($(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$attr])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn generic($($arg: $ty),*) $body

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            fn avx2($($arg: $ty),*) {
                generic($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            if $crate::simd::Isa::detect() == $crate::simd::Isa::Avx2 {
                // SAFETY: the CPU has AVX2 and FMA (detected at run time).
                return unsafe { avx2($($arg),*) };
            }
            generic($($arg),*)
        }
    };
}

pub(crate) use multiversion;
