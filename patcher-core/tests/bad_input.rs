//! Bad input (issue 12): every broken checkpoint, index, pattern or report input fails with its
//! typed error, never a panic, a hang or an unbounded cost. One test per case.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use patcher_core::ops::MergeModulelist;
use patcher_core::pattern::{PatternError, PatternSet};
use patcher_core::plan::{ConversionPlan, PlanOptions, MAX_LINE_BYTES, MAX_SECTION_LINES};
use patcher_core::{
    save_safetensors, write_atomic, Checkpoint, CheckpointError, DType, HostTensor, LoadReport,
    TensorMeta, TransformError, WeightConverter, WeightRenaming, WeightTransform,
};

/// A fresh folder under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("patcher-bad-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A safetensors file from a header JSON text and a data section, byte for byte.
fn raw_file(path: &Path, header: &str, data: &[u8]) {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

/// A valid file with two f32 tensors `a` `[2]` and `b` `[2]`.
fn valid_file(path: &Path) {
    raw_file(
        path,
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#,
        &[0u8; 16],
    );
}

/// Asserts that opening `path` fails with a [`CheckpointError`] matching `pattern`.
macro_rules! assert_open_err {
    ($path:expr, $pattern:pat $(if $guard:expr)?, $($context:tt)+) => {{
        let error = open_err($path);
        let context = format!($($context)+);
        assert!(matches!(&error, $pattern $(if $guard)?), "{context}: got {error}");
    }};
}

fn open_err(path: impl AsRef<Path>) -> CheckpointError {
    Checkpoint::open(path).expect_err("the checkpoint must be rejected")
}

/// Runs `f` on another thread; fails the test if it does not return within a minute (a hang
/// guard, not a timing assertion).
fn without_hanging<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the call hung")
}

#[test]
fn truncated_files_are_header_errors() {
    let dir = TempDir::new();
    let good = dir.path("good.safetensors");
    valid_file(&good);
    let bytes = std::fs::read(&good).unwrap();
    for len in [0, 4, 7, 8, 20, bytes.len() - 9, bytes.len() - 1] {
        let cut = dir.path("cut.safetensors");
        std::fs::write(&cut, &bytes[..len]).unwrap();
        assert_open_err!(&cut, CheckpointError::Header { .. }, "truncated to {len}");
    }
    // A header length past the end of the file.
    let mut long = bytes.clone();
    long[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    std::fs::write(dir.path("long.safetensors"), &long).unwrap();
    assert_open_err!(
        dir.path("long.safetensors"),
        CheckpointError::Header { .. },
        ""
    );
}

#[test]
fn bad_and_overlapping_offsets_are_header_errors() {
    let dir = TempDir::new();
    let cases = [
        // Past the end of the data.
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,80]}}"#,
        // Overlapping.
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
        // Backwards.
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#,
        // Not matching dtype x shape.
        r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
        // A shape whose element count overflows.
        r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}}"#,
        // A gap between tensors.
        r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
    ];
    for header in cases {
        let file = dir.path("bad.safetensors");
        raw_file(&file, header, &[0u8; 16]);
        assert_open_err!(&file, CheckpointError::Header { .. }, "{header}");
    }
}

#[test]
fn a_tensor_named_twice_in_a_header_is_an_error() {
    let dir = TempDir::new();
    let file = dir.path("twice.safetensors");
    raw_file(
        &file,
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
        &[0u8; 8],
    );
    match open_err(&file) {
        CheckpointError::DuplicateHeaderKey { key, .. } => assert_eq!(key, "a"),
        other => panic!("{other}"),
    }
}

#[test]
fn wrong_dtypes_are_typed_errors() {
    let dir = TempDir::new();
    let file = dir.path("f8.safetensors");
    raw_file(
        &file,
        r#"{"a":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}"#,
        &[0u8; 2],
    );
    assert_open_err!(&file, CheckpointError::UnsupportedDtype { .. }, "");
    raw_file(
        &file,
        r#"{"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}"#,
        &[0u8; 8],
    );
    assert_open_err!(&file, CheckpointError::Header { .. }, "");
}

#[cfg(unix)]
#[test]
fn a_fifo_is_refused_without_blocking() {
    let dir = TempDir::new();
    let fifo = dir.path("model.safetensors");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("mkfifo is not available; skipped");
        return;
    }
    let path = fifo.clone();
    let err = without_hanging(move || Checkpoint::open(path).map(|_| ()));
    assert!(
        matches!(err, Err(CheckpointError::NotAFile { .. })),
        "{err:?}"
    );
    // The folder holding it, and an index naming it as a shard.
    let folder = dir.0.clone();
    let err = without_hanging(move || Checkpoint::open(folder).map(|_| ()));
    assert!(
        matches!(err, Err(CheckpointError::NotAFile { .. })),
        "{err:?}"
    );
    std::fs::rename(&fifo, dir.path("shard.safetensors")).unwrap();
    let index = dir.path("model.safetensors.index.json");
    std::fs::write(&index, r#"{"weight_map":{"a":"shard.safetensors"}}"#).unwrap();
    let err = without_hanging(move || Checkpoint::open(index).map(|_| ()));
    assert!(
        matches!(err, Err(CheckpointError::NotAFile { .. })),
        "{err:?}"
    );
    // An index that is a FIFO.
    let fifo_index = dir.path("other.safetensors.index.json");
    std::process::Command::new("mkfifo")
        .arg(&fifo_index)
        .status()
        .unwrap();
    let err = without_hanging(move || Checkpoint::open(fifo_index).map(|_| ()));
    assert!(
        matches!(err, Err(CheckpointError::NotAFile { .. })),
        "{err:?}"
    );
}

#[cfg(unix)]
#[test]
fn devices_and_folders_are_not_files() {
    let err = without_hanging(|| Checkpoint::open("/dev/zero").map(|_| ()));
    assert!(
        matches!(err, Err(CheckpointError::NotAFile { .. })),
        "{err:?}"
    );
    let dir = TempDir::new();
    std::fs::create_dir(dir.path("shard.safetensors")).unwrap();
    std::fs::write(
        dir.path("model.safetensors.index.json"),
        r#"{"weight_map":{"a":"shard.safetensors"}}"#,
    )
    .unwrap();
    assert_open_err!(
        dir.path("model.safetensors.index.json"),
        CheckpointError::NotAFile { .. },
        ""
    );
}

#[test]
fn shard_names_that_leave_the_folder_are_refused() {
    let dir = TempDir::new();
    for shard in [
        "../outside.safetensors",
        "/etc/passwd",
        "a/../../b.safetensors",
        "",
    ] {
        let index = dir.path("model.safetensors.index.json");
        let json = serde_json::json!({ "weight_map": { "a": shard } });
        std::fs::write(&index, json.to_string()).unwrap();
        assert_open_err!(
            &index,
            CheckpointError::ShardPathEscapes { .. },
            "{shard:?}"
        );
    }
}

#[test]
fn malformed_indexes_are_typed_errors() {
    let dir = TempDir::new();
    valid_file(&dir.path("shard.safetensors"));
    let index = dir.path("model.safetensors.index.json");
    for json in [
        "",
        "not json",
        "[]",
        "{}",
        r#"{"weight_map": []}"#,
        r#"{"weight_map": {"a": 3}}"#,
        r#"{"weight_map": {"a": "shard.safetensors"}"#,
    ] {
        std::fs::write(&index, json).unwrap();
        assert_open_err!(&index, CheckpointError::IndexJson { .. }, "{json}");
    }
    std::fs::write(
        &index,
        r#"{"weight_map": {"a": "shard.safetensors", "a": "other.safetensors"}}"#,
    )
    .unwrap();
    assert_open_err!(&index, CheckpointError::DuplicateIndexKey { key, .. } if key == "a", "");
    std::fs::write(&index, r#"{"weight_map": {"zz": "shard.safetensors"}}"#).unwrap();
    assert_open_err!(&index, CheckpointError::KeyNotInShard { .. }, "");
    std::fs::write(&index, r#"{"weight_map": {"a": "gone.safetensors"}}"#).unwrap();
    assert_open_err!(&index, CheckpointError::MissingShard { .. }, "");
    // Larger than any index (sparse: no disk used).
    let file = std::fs::File::create(&index).unwrap();
    file.set_len((256 << 20) + 1).unwrap();
    assert_open_err!(&index, CheckpointError::IndexTooLarge { .. }, "");
}

#[test]
fn an_empty_pattern_is_an_error() {
    assert!(matches!(
        PatternSet::new([""]),
        Err(PatternError::EmptyPattern { position: 0 })
    ));
    assert!(matches!(
        PatternSet::new(["a", ""]),
        Err(PatternError::EmptyPattern { position: 1 })
    ));
    assert!(matches!(
        WeightRenaming::new("", "x"),
        Err(TransformError::Pattern(PatternError::EmptyPattern { .. }))
    ));
    let converter =
        WeightConverter::try_new(["a.*.w", ""], "b", vec![Arc::new(MergeModulelist::new(0))]);
    assert!(matches!(
        converter,
        Err(TransformError::Pattern(PatternError::EmptyPattern {
            position: 1
        }))
    ));
    // A renaming that deletes a prefix still reverses (its reverse source is `^`).
    let strip = WeightRenaming::new(r"^model\.", "").unwrap();
    let transform: WeightTransform = strip.into();
    assert!(transform.reverse().is_ok());
}

#[test]
fn a_reference_to_a_missing_group_is_an_error() {
    assert!(matches!(
        WeightRenaming::new(r"layers\.(\d+)\.a", r"layers.\2.b"),
        Err(TransformError::MissingSourceGroup { group: 2, available: 1, .. })
    ));
    assert!(matches!(
        WeightRenaming::new(r"(x)\.(\d+)\.a", r"\2.b"),
        Err(TransformError::UnsupportedBackreference { group: 2, .. })
    ));
    assert!(matches!(
        WeightRenaming::new(r"layers\.a", r"layers.\1.b"),
        Err(TransformError::MissingSourceGroup { group: 1, .. })
    ));
    // `\1` with a group is fine.
    let ok = WeightRenaming::new(r"layers\.(\d+)\.a", r"layers.\1.b").unwrap();
    assert_eq!(ok.rename_source_key("layers.3.a").unwrap().0, "layers.3.b");
}

fn meta(shape: &[usize]) -> TensorMeta {
    TensorMeta::new(DType::F32, shape)
}

/// `experts.*.w` merged into `experts.w` (`MergeModulelist` along 0), and a model of one layer
/// whose `experts.w` stacks four experts of two values.
fn four_merged_experts() -> (Vec<WeightTransform>, [(&'static str, Vec<usize>); 1]) {
    let merge = WeightConverter::try_new(
        "experts.*.w",
        "experts.w",
        vec![Arc::new(MergeModulelist::new(0))],
    )
    .unwrap();
    (vec![merge.into()], [("layers.0.experts.w", vec![4, 2])])
}

/// The checkpoint keys `layers.0.experts.{e}.w`, two values each, for each expert index `e`.
fn expert_keys(experts: &[impl std::fmt::Display]) -> Vec<(String, TensorMeta)> {
    experts
        .iter()
        .map(|e| (format!("layers.0.experts.{e}.w"), meta(&[2])))
        .collect()
}

#[test]
fn expert_indices_outside_the_model_are_unexpected() {
    let (transforms, expected) = four_merged_experts();
    // Experts 0..=3 and 7: 7 is not one of the model's 4 experts.
    let checkpoint = expert_keys(&[0, 1, 2, 3, 7]);
    let plan = ConversionPlan::new(&transforms, &checkpoint, &expected, &PlanOptions::default());
    let report = plan.report();
    assert_eq!(report.unexpected, ["layers.0.experts.7.w"]);
    assert_eq!(report.loaded, 1);
    assert!(report.mismatched.is_empty(), "{report}");
    // 0, 1, 2, 7: never stacked as four experts.
    let checkpoint = expert_keys(&[0, 1, 2, 7]);
    let plan = ConversionPlan::new(&transforms, &checkpoint, &expected, &PlanOptions::default());
    let report = plan.report();
    assert_eq!(report.unexpected, ["layers.0.experts.7.w"]);
    assert_eq!(report.loaded, 0);
    assert_eq!(report.mismatched.len(), 1, "{report}");
}

#[test]
fn an_expert_index_longer_than_u64_is_unexpected() {
    let (transforms, expected) = four_merged_experts();
    // An index longer than u64 (it used to be no index at all, and joined the stack).
    let index = "99999999999999999999999";
    let checkpoint = expert_keys(&["0", "1", "2", "3", index]);
    let plan = ConversionPlan::new(&transforms, &checkpoint, &expected, &PlanOptions::default());
    let report = plan.report();
    // Not part of the stack: the four real experts still load as one parameter.
    assert_eq!(report.unexpected, [format!("layers.0.experts.{index}.w")]);
    assert_eq!(report.loaded, 1, "{report}");
    assert!(report.mismatched.is_empty(), "{report}");
    assert!(report.missing.is_empty(), "{report}");
    let stacked: Vec<String> = plan.groups()[0]
        .sources
        .iter()
        .flat_map(|(_, keys)| keys.iter().cloned())
        .collect();
    let real: Vec<String> = (0..4).map(|e| format!("layers.0.experts.{e}.w")).collect();
    assert_eq!(stacked, real);
}

#[test]
fn failed_saves_leave_no_temporary_file() {
    let dir = TempDir::new();
    let tensor = || HostTensor::from_f32([2], &[1.0, 2.0]);
    // Inconsistent tensor: refused before anything is written.
    let bad = HostTensor {
        dtype: DType::F32,
        shape: vec![3],
        bytes: vec![0u8; 8].into(),
    };
    let err = save_safetensors(dir.path("a.safetensors"), [("x".to_string(), bad)], None);
    assert!(matches!(err, Err(CheckpointError::InvalidTensor { .. })));
    // The target is a folder: the rename fails, the temporary file goes.
    std::fs::create_dir(dir.path("b.safetensors")).unwrap();
    std::fs::write(dir.path("b.safetensors").join("keep"), b"x").unwrap();
    let err = save_safetensors(
        dir.path("b.safetensors"),
        [("x".to_string(), tensor())],
        None,
    );
    assert!(matches!(err, Err(CheckpointError::Write { .. })), "{err:?}");
    assert_eq!(dir.names(), ["b.safetensors"]);
    // The folder does not exist.
    let err = save_safetensors(
        dir.path("gone/c.safetensors"),
        [("x".to_string(), tensor())],
        None,
    );
    assert!(matches!(err, Err(CheckpointError::Write { .. })), "{err:?}");
    assert_eq!(dir.names(), ["b.safetensors"]);
}

#[test]
fn a_save_removes_temporary_files_of_dead_writers_only() {
    let dir = TempDir::new();
    // No process has this id (Linux' largest pid is 2^22).
    let dead = ".model.safetensors.tmp-999999999-0";
    let legacy = "model.safetensors.tmp-999999998-3";
    let live = format!(".model.safetensors.tmp-{}-77", std::process::id());
    let other = "notes.tmp-keep.txt";
    for name in [dead, legacy, live.as_str(), other] {
        std::fs::write(dir.path(name), b"partial").unwrap();
    }
    save_safetensors(
        dir.path("model.safetensors"),
        [("x".to_string(), HostTensor::from_f32([1], &[1.0]))],
        None,
    )
    .unwrap();
    let names = dir.names();
    assert!(names.contains(&"model.safetensors".to_string()));
    assert!(names.contains(&live), "{names:?}");
    assert!(names.contains(&other.to_string()), "{names:?}");
    if Path::new("/proc/self").exists() {
        assert!(!names.contains(&dead.to_string()), "{names:?}");
        assert!(!names.contains(&legacy.to_string()), "{names:?}");
    }
    // The checkpoint written reads back.
    assert_eq!(
        Checkpoint::open(dir.path("model.safetensors"))
            .unwrap()
            .len(),
        1
    );
    // Other files of the folder are written the same way, and clean up the same way.
    std::fs::write(dir.path(dead), b"partial").unwrap();
    write_atomic(dir.path("model.safetensors.index.json"), b"{}").unwrap();
    assert_eq!(
        std::fs::read(dir.path("model.safetensors.index.json")).unwrap(),
        b"{}"
    );
    if Path::new("/proc/self").exists() {
        assert!(!dir.names().contains(&dead.to_string()));
    }
    assert!(!dir.names().iter().any(|n| n.contains(".index.json.tmp-")));
}

#[test]
fn one_huge_key_keeps_the_report_short() {
    let huge = format!("model.{}.weight", "layer.7.".repeat(25_000));
    assert!(huge.len() > 200_000);
    let report = LoadReport {
        unexpected: vec![huge.clone()],
        missing: vec![format!("{huge}x"), "model.norm.weight".into()],
        ..LoadReport::default()
    };
    let text = report.to_string();
    assert!(text.len() < 4 * MAX_LINE_BYTES, "{} bytes", text.len());
    assert!(text.contains("bytes)"));
    assert_eq!(
        report.unexpected[0], huge,
        "the field keeps the key in full"
    );
    assert_eq!(report.suggestion_for(&huge), None);
}

#[test]
fn thousands_of_long_keys_are_summarised() {
    let unexpected: Vec<String> = (0..2000)
        .map(|i| format!("extra.{i}x.{}", "y".repeat(5000)))
        .collect();
    let missing: Vec<String> = (0..2000)
        .map(|i| format!("model.{i}z.{}", "q".repeat(50)))
        .collect();
    let report = LoadReport {
        unexpected: unexpected.clone(),
        missing,
        ..LoadReport::default()
    };
    let text = report.to_string();
    let bound = 2 * (MAX_SECTION_LINES + 2) * (MAX_LINE_BYTES + 8) + 1000;
    assert!(text.len() < bound, "{} bytes", text.len());
    assert!(text.contains(&format!("... and {} more", 2000 - MAX_SECTION_LINES)));
    assert_eq!(report.unexpected, unexpected);
}

#[test]
fn suggestions_name_unexpected_keys_only() {
    let report = LoadReport {
        unexpected: vec![
            "model.layers.0.mlp.gat.weight".into(),
            "model.layers.1.mlp.gat.weight".into(),
            "model.nrom.weight".into(),
        ],
        missing: vec!["model.norm.weight".into()],
        ..LoadReport::default()
    };
    let near = report.suggestion_for("model.norm.weight").unwrap();
    assert!(report.unexpected.contains(&near), "{near}");
    let near = report
        .suggestion_for("model.layers.0.mlp.gate.weight")
        .unwrap();
    assert!(report.unexpected.contains(&near), "{near}");
    assert!(report
        .to_string()
        .contains("model.norm.weight  (did you mean `model.nrom.weight` from the checkpoint?)"));
}

#[test]
fn a_folder_of_many_candidates_is_named_briefly() {
    let dir = TempDir::new();
    for i in 0..40 {
        std::fs::write(dir.path(&format!("part{i:02}.safetensors")), b"").unwrap();
    }
    match open_err(&dir.0) {
        CheckpointError::NoCheckpointInFolder { found, .. } => {
            assert!(found.ends_with("and 24 more"), "{found}");
        }
        other => panic!("{other}"),
    }
}
