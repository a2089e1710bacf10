//! Listing a model's slots with Burn's parameter paths.
//!
//! A slot announces itself to visitors with an empty `enter_module`/`exit_module` pair whose
//! container type starts with [`SLOT_CONTAINER`]; [`list_slots`] runs a visitor that tracks Burn's
//! path (through structs, `Vec`s, arrays, tuples and `Option`s, as Burn names them) and records
//! those marks.

use burn::module::{Module, ModuleVisitor};
use burn::tensor::backend::Backend;

/// Prefix of the container type a slot's marker uses:
/// `Slot:<interface>:<original>:<state>:<build position>`.
const SLOT_CONTAINER: &str = "Slot:";

/// The container type of a slot's marker.
pub(crate) fn slot_marker(interface: &str, original: &str, replaced: bool, position: &str) -> String {
    let state = if replaced { "replaced" } else { "original" };
    format!("{SLOT_CONTAINER}{interface}:{original}:{state}:{position}")
}

/// A slot's marker, parsed back.
pub(crate) struct Marker<'a> {
    pub(crate) interface: &'a str,
    pub(crate) original: &'a str,
    pub(crate) replaced: bool,
    pub(crate) position: &'a str,
}

/// The marker in a container type, if it is one.
pub(crate) fn parse_marker(container_type: &str) -> Option<Marker<'_>> {
    let mark = container_type.strip_prefix(SLOT_CONTAINER)?;
    let mut parts = mark.splitn(4, ':');
    Some(Marker {
        interface: parts.next().unwrap_or_default(),
        original: parts.next().unwrap_or_default(),
        replaced: parts.next() == Some("replaced"),
        position: parts.next().unwrap_or_default(),
    })
}

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
    /// Where the model's constructor built it (how a build with path keys finds its path).
    pub(crate) build_position: String,
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
    let mut lister = Lister {
        path: Vec::new(),
        slots: Vec::new(),
    };
    module.visit(&mut lister);
    lister.slots
}

struct Lister {
    path: Vec<String>,
    slots: Vec<SlotInfo>,
}

impl<B: Backend> ModuleVisitor<B> for Lister {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        if let Some(marker) = parse_marker(container_type) {
            self.slots.push(SlotInfo {
                path: self.path.join("."),
                class: name.to_string(),
                original_class: marker.original.to_string(),
                replaced: marker.replaced,
                interface: marker.interface.to_string(),
                build_position: marker.position.to_string(),
            });
        }
        // Pushed for marks too: their exit pops it.
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
}
