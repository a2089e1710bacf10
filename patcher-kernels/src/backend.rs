//! Which backends the kernels run on, chosen by type, and the switch that turns them off.

use std::any::TypeId;
use std::cell::Cell;
use std::sync::atomic::{AtomicU8, Ordering};

use burn::prelude::Backend;
use burn::tensor::DType;

/// A CPU backend the kernels run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostBackend {
    /// `burn::backend::Flex`.
    Flex,
    /// `burn::backend::NdArray` (f32 elements, i64 or i32 indices).
    NdArray,
}

impl HostBackend {
    /// The host backend `B` is: compared by type, so a wrapper (`Autodiff<Flex>`, a fusion
    /// backend) is none; `None` too for a backend whose cargo feature this crate was built
    /// without. Whether the kernels are on is [`enabled`]'s answer, apart.
    ///
    /// ```
    /// use burn::backend::{Autodiff, NdArray};
    /// use patcher_kernels::HostBackend;
    ///
    /// assert_eq!(HostBackend::of::<Autodiff<NdArray>>(), None);
    /// assert!(matches!(HostBackend::of::<NdArray>(), None | Some(HostBackend::NdArray)));
    /// ```
    pub fn of<B: Backend>() -> Option<Self> {
        let id = TypeId::of::<B>();
        #[cfg(feature = "flex")]
        if id == TypeId::of::<burn::backend::Flex>() {
            return Some(Self::Flex);
        }
        #[cfg(feature = "ndarray")]
        if id == TypeId::of::<burn::backend::NdArray<f32, i64>>()
            || id == TypeId::of::<burn::backend::NdArray<f32, i32>>()
        {
            return Some(Self::NdArray);
        }
        let _ = id;
        None
    }
}

/// Whether kernel `kernel` takes tensors of `dtypes` on backend `B`: the kernels are on
/// ([`enabled`]), `B` is a [`HostBackend`] and every dtype is f32. The answer is a `trace` event
/// (target `patcher_kernels`).
pub(crate) fn runs_on_host<B: Backend>(kernel: &'static str, dtypes: &[DType]) -> bool {
    let backend = HostBackend::of::<B>();
    let taken = enabled() && backend.is_some() && dtypes.iter().all(|d| *d == DType::F32);
    tracing::trace!(
        target: "patcher_kernels",
        kernel,
        taken,
        backend = ?backend,
        dtypes = ?dtypes,
        "host kernel"
    );
    taken
}

/// The switch: unset (read the environment at first use), off, on.
static SWITCH: AtomicU8 = AtomicU8::new(UNSET);
const UNSET: u8 = 0;
const OFF: u8 = 1;
const ON: u8 = 2;

thread_local! {
    /// How many [`disabled`] calls this thread is inside.
    static DISABLED: Cell<usize> = const { Cell::new(0) };
}

/// Whether the kernels run on this thread: built with the `enabled` feature, not inside
/// [`disabled`], not turned off by [`set_enabled`]`(false)`, and, until `set_enabled` is called,
/// `BURN_PATCHER_KERNELS` is not `0`, `off` or `false` in the environment.
pub fn enabled() -> bool {
    if !cfg!(feature = "enabled") || DISABLED.with(Cell::get) > 0 {
        return false;
    }
    match SWITCH.load(Ordering::Relaxed) {
        ON => true,
        OFF => false,
        _ => {
            let off = std::env::var("BURN_PATCHER_KERNELS").is_ok_and(|v| {
                matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "0" | "off" | "false"
                )
            });
            let state = if off { OFF } else { ON };
            // A concurrent `set_enabled` wins over the environment.
            let _ = SWITCH.compare_exchange(UNSET, state, Ordering::Relaxed, Ordering::Relaxed);
            SWITCH.load(Ordering::Relaxed) == ON
        }
    }
}

/// Turns the kernels on or off for the whole process (over the environment variable), for
/// example to compare a model's outputs with Burn's own ops. Takes effect at the next kernel
/// call; without the `enabled` feature they stay off.
///
/// ```
/// patcher_kernels::set_enabled(false);
/// assert!(!patcher_kernels::enabled());
/// patcher_kernels::set_enabled(true); // on again where the crate was built with `enabled`
/// ```
pub fn set_enabled(on: bool) {
    SWITCH.store(if on { ON } else { OFF }, Ordering::Relaxed);
}

/// `f()` with the kernels off on this thread (the kernels are chosen on the thread that calls
/// them: a model's forward), for example to compare a model's outputs with Burn's own ops while
/// other threads keep them.
///
/// ```
/// let inside = patcher_kernels::disabled(patcher_kernels::enabled);
/// assert!(!inside);
/// ```
pub fn disabled<R>(f: impl FnOnce() -> R) -> R {
    /// Leaves the scope on return or unwind.
    struct Scope;
    impl Drop for Scope {
        fn drop(&mut self) {
            DISABLED.with(|d| d.set(d.get() - 1));
        }
    }
    DISABLED.with(|d| d.set(d.get() + 1));
    let _scope = Scope;
    f()
}
