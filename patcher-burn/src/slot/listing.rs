//! Listing a model's slots with Burn's parameter paths.
//!
//! A slot announces itself to visitors with a marker (see `crate::visit`); [`list_slots`] records
//! those marks where the path-tracking visitor finds them.

use burn::module::Module;
use burn::tensor::backend::Backend;

use crate::visit::{self, ModulePath, SlotMark, VisitParams};

/// One slot of a model, as [`list_slots`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    /// Burn's path of the slot, e.g. `layers.0.self_attn` (its parameters are below it).
    pub path: String,
    /// The class inside the slot (the replacement's name when replaced).
    pub class: String,
    /// The class the model built the slot for.
    pub original_class: String,
    /// Whether the class inside replaces the original.
    pub replaced: bool,
    /// The slot's interface trait.
    pub interface: String,
}

/// The slots of `module`, in Burn's visiting order, with Burn's parameter paths (the
/// `burn-patcher` crate documentation has a tested example).
///
/// ```text
/// for slot in list_slots(&model) {
///     println!("{} {} {}", slot.path, slot.class, if slot.replaced { "(replaced)" } else { "" });
/// }
/// ```
pub fn list_slots<B: Backend, M: Module<B>>(module: &M) -> Vec<SlotInfo> {
    visit::visit(module, Lister::default()).slots
}

/// The slots of `module` with where its constructor built each (`3`, `3.0`): how a build with
/// path keys learns the paths (see `BuildContext::build`).
pub(crate) fn list_slots_with_positions<B: Backend, M: Module<B>>(
    module: &M,
) -> Vec<(SlotInfo, String)> {
    let lister = visit::visit(module, Lister::default());
    lister.slots.into_iter().zip(lister.positions).collect()
}

#[derive(Default)]
struct Lister {
    slots: Vec<SlotInfo>,
    positions: Vec<String>,
}

impl<B: Backend> VisitParams<B> for Lister {
    fn slot(&mut self, at: &ModulePath, slot: &SlotMark<'_>) {
        self.slots.push(SlotInfo {
            path: at.key(),
            class: slot.class.to_string(),
            original_class: slot.original.to_string(),
            replaced: slot.replaced,
            interface: slot.interface.to_string(),
        });
        self.positions.push(slot.position.to_string());
    }
}
