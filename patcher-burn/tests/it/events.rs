//! The load's and the save's `tracing` events: what a subscriber sees, with the figures they
//! carry checked against the checkpoint (nothing is emitted to a program without one).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use crate::common::*;
use burn::backend::NdArray;
use patcher_burn::{save_pretrained, LoadOptions, Pretrained};
use patcher_core::{Checkpoint, DType};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// One event: its message and its other fields, as text.
#[derive(Debug, Default, Clone)]
struct Seen {
    message: String,
    fields: HashMap<String, String>,
}

impl Seen {
    fn number(&self, field: &str) -> f64 {
        let text = self
            .fields
            .get(field)
            .unwrap_or_else(|| panic!("{self:?}: no {field}"));
        text.parse()
            .unwrap_or_else(|_| panic!("{self:?}: {field} is not a number"))
    }
}

impl Visit for Seen {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        match field.name() {
            "message" => self.message = text,
            name => {
                self.fields.insert(name.to_string(), text);
            }
        }
    }
}

/// A subscriber that keeps the events and the names of the spans of one thread (the test's:
/// the loader and the save emit theirs on the caller's thread).
///
/// It is the process' global subscriber, not a scoped one (`with_default`): tracing caches each
/// callsite's interest process-wide, and a callsite first reached by another test's thread while
/// a scoped subscriber is set up can stay disabled for it (seen in CI: no `save` span).
#[derive(Clone)]
struct Capture {
    thread: ThreadId,
    events: Arc<Mutex<Vec<Seen>>>,
    spans: Arc<Mutex<Vec<String>>>,
    next_id: Arc<AtomicU64>,
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        if self.mine() {
            let name = span.metadata().name().to_string();
            self.spans.lock().unwrap().push(name);
        }
        Id::from_u64(self.next_id.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        if self.mine() {
            let mut seen = Seen::default();
            event.record(&mut seen);
            self.events.lock().unwrap().push(seen);
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

impl Capture {
    fn mine(&self) -> bool {
        std::thread::current().id() == self.thread
    }
}

impl Capture {
    fn named(&self, message: &str) -> Vec<Seen> {
        let events = self.events.lock().unwrap();
        events
            .iter()
            .filter(|e| e.message == message)
            .cloned()
            .collect()
    }
}

#[test]
fn a_load_and_a_save_report_their_phases_with_sizes_and_times() {
    type B = NdArray<f32>;
    let device = Default::default();
    let dir = TempDir::new("events");
    let tensors = tiny_checkpoint(DType::F32);
    write_checkpoint(&dir.path().join("model.safetensors"), &tensors);
    let bytes: usize = tensors.values().map(|t| t.num_bytes()).sum();

    let capture = Capture {
        thread: std::thread::current().id(),
        events: Default::default(),
        spans: Default::default(),
        next_id: Default::default(),
    };
    tracing::subscriber::set_global_default(capture.clone()).expect("the only global subscriber");
    let saved = dir.path().join("saved");
    let model = Tiny::<B>::new(&device);
    // A small wave size, so the load runs in several waves.
    let options = LoadOptions::default().max_bytes_in_flight(100);
    let loaded = Pretrained::from_path(dir.path())
        .options(options.clone())
        .load_into(&model)
        .unwrap();
    save_pretrained(&loaded, &saved).unwrap();

    let spans = capture.spans.lock().unwrap().clone();
    for span in ["load", "save", "save_checkpoint"] {
        assert!(
            spans.iter().any(|s| s == span),
            "no `{span}` span in {spans:?}"
        );
    }
    let [planned] = capture.named("planned").try_into().unwrap();
    assert_eq!(planned.fields["would_load"], "true");
    assert_eq!(planned.number("missing"), 0.0);
    let waves = capture.named("wave");
    assert!(waves.len() > 1, "{waves:?}");
    let wave_bytes: f64 = waves.iter().map(|w| w.number("bytes")).sum();
    let [loaded] = capture.named("loaded").try_into().unwrap();
    assert_eq!(loaded.number("bytes"), wave_bytes);
    assert_eq!(loaded.number("bytes"), bytes as f64);
    let params: f64 = waves.iter().map(|w| w.number("params")).sum();
    assert_eq!(loaded.number("params"), params);
    assert!(loaded.number("ms") >= 0.0 && loaded.number("gb_per_s") > 0.0);

    let written = Checkpoint::open(&saved).unwrap();
    let [saved_event] = capture.named("saved").try_into().unwrap();
    assert_eq!(saved_event.number("tensors"), written.len() as f64);
    assert_eq!(saved_event.number("bytes"), bytes as f64);
    for phase in ["collected", "verified", "committed"] {
        assert_eq!(capture.named(phase).len(), 1, "{phase}");
    }
}
