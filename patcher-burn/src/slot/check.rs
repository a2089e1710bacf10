//! Checking a slot record against the slot before loading it, and the error-returning loaders.
//!
//! Burn's `Module::load_record` cannot fail, so a plain `load_record` of a mismatched record
//! panics in the slot, before any tensor is touched, with the message below. The loaders here
//! ([`load_record_checked`], [`load_file_checked`]) turn the same check into an error instead:
//! while they run, slots report mismatches to them and keep their module unchanged.

use std::cell::RefCell;
use std::path::PathBuf;

use burn::module::Module;
use burn::record::{FileRecorder, RecorderError};
use burn::tensor::backend::Backend;

use super::record::{Expect, SlotRecord};

/// A slot record that does not fit the slot it is loaded into.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordMismatch {
    /// The record was saved from another class.
    #[error(
        "a slot of interface `{interface}`{} holds class `{expected}`, but its record was saved \
         from class `{found}`; build the model with the same class_mapping as the model that was \
         saved",
        at(.path, .outer)
    )]
    Class {
        /// The slot's interface.
        interface: String,
        /// The class the slot holds.
        expected: String,
        /// The class the record was saved from.
        found: String,
        /// Where the slot is, relative to the slot whose record is loaded (empty: that slot).
        path: String,
        /// The class of the slot whose record is loaded.
        outer: String,
    },
    /// The record is of the same class but its parameters differ (another configuration).
    #[error(
        "the record of class `{class}` does not fit the slot's module: missing {missing:?}, \
         unexpected {unexpected:?}, kind or shape differs for {mismatched:?}; build the model with \
         the configuration it was saved with"
    )]
    Params {
        /// The class.
        class: &'static str,
        /// Parameters of the module that the record lacks.
        missing: Vec<String>,
        /// Parameters of the record that the module lacks.
        unexpected: Vec<String>,
        /// `path: expected -> found` for parameters whose kind or shape differ.
        mismatched: Vec<String>,
    },
}

/// A checked load failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadRecordError {
    /// The recorder could not read the file.
    #[error(transparent)]
    Recorder(#[from] RecorderError),
    /// Some slot records do not fit the model's slots; nothing of those slots was loaded.
    #[error("{} slot record(s) do not fit the model:\n{}", .0.len(), render(.0))]
    Mismatch(Vec<RecordMismatch>),
}

/// ` (at `path` in `Outer`)` for a slot inside a slot's module.
fn at(path: &str, outer: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" (at `{path}` in `{outer}`)")
    }
}

fn render(errors: &[RecordMismatch]) -> String {
    errors
        .iter()
        .map(|e| format!("  - {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

thread_local! {
    /// `Some` while a checked load runs on this thread: slots push mismatches here.
    static CHECKED: RefCell<Option<Vec<RecordMismatch>>> = const { RefCell::new(None) };
}

/// Reports a mismatch: to the running checked load, else as a panic (Burn's `load_record` has
/// no error channel).
pub(crate) fn report(mismatch: RecordMismatch) {
    let reported = CHECKED.with(|c| match c.borrow_mut().as_mut() {
        Some(errors) => {
            errors.push(mismatch.clone());
            true
        }
        None => false,
    });
    if !reported {
        panic!(
            "{mismatch}\n(use patcher_burn::load_record_checked or load_file_checked to get this \
             as an error)"
        );
    }
}

/// Compares a record with what the slot's module expects; `None` when it fits.
pub(crate) fn compare<B: Backend>(
    interface: &'static str,
    class: &'static str,
    expect: &Expect,
    record: &SlotRecord<B>,
) -> Option<RecordMismatch> {
    if record.class != class {
        return Some(RecordMismatch::Class {
            interface: interface.to_string(),
            expected: class.to_string(),
            found: record.class.clone(),
            path: String::new(),
            outer: class.to_string(),
        });
    }
    // Slots inside the module (outermost first), before their parameters.
    for inner in &expect.nested {
        let found = record.nested.iter().find(|n| n.path == inner.path);
        if found.map(|n| &n.class) != Some(&inner.class) {
            return Some(RecordMismatch::Class {
                interface: inner.interface.clone(),
                expected: inner.class.clone(),
                found: found.map_or_else(|| "(none)".to_string(), |n| n.class.clone()),
                path: inner.path.clone(),
                outer: class.to_string(),
            });
        }
    }
    let expected = &expect.params;
    let found = |path: &str| record.params.iter().find(|p| p.path == path);
    let missing: Vec<String> = expected
        .iter()
        .filter(|(path, _, _)| found(path).is_none())
        .map(|(path, _, _)| path.clone())
        .collect();
    let unexpected: Vec<String> = record
        .params
        .iter()
        .filter(|p| !expected.iter().any(|(path, _, _)| *path == p.path))
        .map(|p| p.path.clone())
        .collect();
    let mismatched: Vec<String> = expected
        .iter()
        .filter_map(|(path, kind, shape)| {
            let p = found(path)?;
            (p.kind != *kind || p.shape != *shape)
                .then(|| format!("{path}: {kind:?}{shape:?} -> {:?}{:?}", p.kind, p.shape))
        })
        .collect();
    if missing.is_empty() && unexpected.is_empty() && mismatched.is_empty() {
        None
    } else {
        Some(RecordMismatch::Params { class, missing, unexpected, mismatched })
    }
}

/// Restores the enclosing checked load's state when dropped, even on unwind.
struct Scope(Option<Vec<RecordMismatch>>);

impl Drop for Scope {
    fn drop(&mut self) {
        let previous = self.0.take();
        CHECKED.with(|c| *c.borrow_mut() = previous);
    }
}

/// Runs `f` with slot record checks reported as errors.
fn checked<T>(f: impl FnOnce() -> T) -> (T, Vec<RecordMismatch>) {
    let scope = Scope(CHECKED.with(|c| c.borrow_mut().replace(Vec::new())));
    let out = f();
    let errors = CHECKED.with(|c| c.borrow_mut().take()).unwrap_or_default();
    drop(scope);
    (out, errors)
}

/// `module.load_record(record)`, with every slot's record checked first: a record saved from
/// another class, or with other parameters, is an error instead of a panic.
///
/// Slots whose record fits are loaded as usual, and so is the rest of the model; on error the
/// partially loaded module is dropped.
pub fn load_record_checked<B: Backend, M: Module<B>>(
    module: M,
    record: M::Record,
) -> Result<M, LoadRecordError> {
    let (module, errors) = checked(|| module.load_record(record));
    if errors.is_empty() {
        Ok(module)
    } else {
        Err(LoadRecordError::Mismatch(errors))
    }
}

/// `module.load_file(path, recorder, device)`, with every slot's record checked first (see
/// [`load_record_checked`]).
pub fn load_file_checked<B, M, FR, P>(
    module: M,
    path: P,
    recorder: &FR,
    device: &B::Device,
) -> Result<M, LoadRecordError>
where
    B: Backend,
    M: Module<B>,
    FR: FileRecorder<B>,
    P: Into<PathBuf>,
{
    let record: M::Record = recorder.load(path.into(), device)?;
    load_record_checked(module, record)
}
