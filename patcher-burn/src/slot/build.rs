//! [`Slot::build`]: a slot made in a model's constructor, holding the original class or the
//! replacement the [`BuildContext`]'s patcher maps to it.

use burn::tensor::backend::Backend;

use super::class::{Implements, InterfaceKey, Patchable, SlotInterface};
use super::context::{BuildContext, BuildError};
use super::Slot;

impl<B: Backend, I: ?Sized + SlotInterface> Slot<B, I> {
    /// Builds the slot for class `C` with the context's substitutions: `C::new(args.., device)`,
    /// or the replacement mapped to `C` (by class or by the slot's path), from the same `args`.
    ///
    /// `args` are the arguments of the interface's `new` without the device (one value, or a
    /// tuple for several). A mapping error is reported by [`BuildContext::build`]; the slot then
    /// holds the original.
    pub fn build<C>(ctx: &BuildContext<'_, B>, args: <I::Key as InterfaceKey>::Args<'_>) -> Self
    where
        C: Implements<I::Key> + Patchable<Backend = B>,
    {
        let (position, path) = ctx.enter_slot(C::CLASS_NAME);
        let found = ctx
            .classes()
            .and_then(|classes| classes.find(C::CLASS_NAME, path));
        let builder = found.and_then(|replacement| {
            let builder = replacement.builder::<I::Key>();
            if builder.is_none() {
                ctx.fail(BuildError::WrongInterface {
                    original: C::CLASS_NAME,
                    path: path.map(str::to_string),
                    replacement: replacement.class_name(),
                    slot_interface: <I::Key as InterfaceKey>::NAME,
                    replacement_interface: replacement.interface_name(),
                });
            }
            builder
        });
        let slot = match builder {
            Some(build) => build(args, ctx, C::CLASS_NAME).rebrand(),
            None => Self::original::<C>(C::construct::<B>(args, ctx)),
        };
        ctx.exit_slot();
        slot.at_position(position)
    }
}
