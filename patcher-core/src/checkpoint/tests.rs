//! Checkpoint reader and writer tests on files written in a temporary folder.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use safetensors::tensor::TensorView;
use safetensors::Dtype;

use super::*;
use crate::ops::{ConversionOp, Groups, MergeModulelist, OpContext};

/// A fresh folder under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("patcher-ckpt-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A tensor as the safetensors crate writes it.
struct Raw {
    name: &'static str,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

fn raw(name: &'static str, dtype: Dtype, shape: &[usize]) -> Raw {
    let n: usize = shape.iter().product::<usize>() * dtype.bitsize() / 8;
    // Distinct, recognisable bytes (0/1 for BOOL, which must hold valid booleans).
    let bytes = (0..n)
        .map(|i| {
            if dtype == Dtype::BOOL {
                (i % 2) as u8
            } else {
                (i * 7 + 3) as u8
            }
        })
        .collect();
    Raw { name, dtype, shape: shape.to_vec(), bytes }
}

/// Writes tensors with safetensors' own writer.
fn write(path: &Path, tensors: &[Raw]) {
    let views: Vec<_> = tensors
        .iter()
        .map(|t| {
            (
                t.name,
                TensorView::new(t.dtype, t.shape.clone(), &t.bytes).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

fn write_index(path: &Path, map: &[(&str, &str)]) {
    let weight_map: serde_json::Map<_, _> = map
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
        .collect();
    let json = serde_json::json!({ "metadata": { "total_size": 0 }, "weight_map": weight_map });
    std::fs::write(path, json.to_string()).unwrap();
}

fn open_err(path: impl AsRef<Path>) -> CheckpointError {
    Checkpoint::open(path).unwrap_err()
}

const ALL: [(Dtype, DType); 8] = [
    (Dtype::F32, DType::F32),
    (Dtype::F16, DType::F16),
    (Dtype::BF16, DType::BF16),
    (Dtype::F64, DType::F64),
    (Dtype::I64, DType::I64),
    (Dtype::I32, DType::I32),
    (Dtype::U8, DType::U8),
    (Dtype::BOOL, DType::Bool),
];

#[test]
fn single_file_every_dtype() {
    let dir = TempDir::new();
    let names = [
        "t_f32", "t_f16", "t_bf16", "t_f64", "t_i64", "t_i32", "t_u8", "t_bool",
    ];
    let tensors: Vec<Raw> = ALL
        .iter()
        .zip(names)
        .map(|(&(dtype, _), name)| raw(name, dtype, &[2, 3]))
        .collect();
    let file = dir.path("model.safetensors");
    write(&file, &tensors);

    for path in [file.clone(), dir.0.clone()] {
        let ckpt = Checkpoint::open(&path).unwrap();
        assert_eq!(ckpt.path(), file);
        assert_eq!(ckpt.len(), 8);
        assert_eq!(ckpt.files().collect::<Vec<_>>(), vec![file.as_path()]);
        let mut sorted = names.to_vec();
        sorted.sort();
        assert_eq!(ckpt.keys().collect::<Vec<_>>(), sorted);
        for (t, &(_, dtype)) in tensors.iter().zip(&ALL) {
            let r = ckpt.get(t.name).unwrap();
            assert_eq!(
                (r.name(), r.dtype(), r.shape()),
                (t.name, dtype, &[2usize, 3][..])
            );
            assert_eq!(r.num_bytes(), t.bytes.len());
            assert_eq!(r.file(), file);
            let host = r.read().unwrap();
            assert_eq!(
                (host.dtype, host.shape.as_slice()),
                (dtype, &[2usize, 3][..])
            );
            assert_eq!(host.bytes.as_ref(), t.bytes.as_slice());
            let mut into = vec![0u8; t.bytes.len()];
            r.read_into(&mut into).unwrap();
            assert_eq!(into, t.bytes);
            assert_eq!(ckpt.meta(t.name), Some(TensorMeta::new(dtype, [2, 3])));
        }
        let metas = ckpt.metas();
        assert_eq!(metas.len(), 8);
        assert_eq!(
            metas[0],
            ("t_bf16".to_string(), TensorMeta::new(DType::BF16, [2, 3]))
        );
        assert_eq!(ckpt.iter().count(), 8);
    }
}

#[test]
fn sharded_group_spans_two_shards() {
    let dir = TempDir::new();
    let e0 = raw("experts.0.w", Dtype::F32, &[2]);
    let e1 = raw("experts.1.w", Dtype::F32, &[2]);
    write(
        &dir.path("model-00001-of-00002.safetensors"),
        &[e0, raw("norm", Dtype::BF16, &[4])],
    );
    write(&dir.path("model-00002-of-00002.safetensors"), &[e1]);
    let index = dir.path("model.safetensors.index.json");
    write_index(
        &index,
        &[
            ("experts.0.w", "model-00001-of-00002.safetensors"),
            ("norm", "model-00001-of-00002.safetensors"),
            ("experts.1.w", "model-00002-of-00002.safetensors"),
        ],
    );
    for path in [index.clone(), dir.0.clone()] {
        let ckpt = Checkpoint::open(&path).unwrap();
        assert_eq!(ckpt.path(), index);
        assert_eq!(ckpt.len(), 3);
        assert_eq!(ckpt.files().count(), 2);
        let a = ckpt.get("experts.0.w").unwrap();
        let b = ckpt.get("experts.1.w").unwrap();
        assert_ne!(a.file(), b.file());
        // One conversion group over both shards: stack the two experts.
        let sources = vec!["experts.*.w".to_string()];
        let targets = vec!["experts.w".to_string()];
        let ctx = OpContext {
            source_patterns: &sources,
            target_patterns: &targets,
            target_key: "experts.w",
        };
        let (a, b) = (a.read().unwrap(), b.read().unwrap());
        let mut expected = a.bytes.to_vec();
        expected.extend_from_slice(&b.bytes);
        let inputs = Groups::new().with("experts.*.w", vec![a, b]);
        let out = MergeModulelist::new(0).convert(inputs, &ctx).unwrap();
        let stacked = &out.get("experts.w").unwrap()[0];
        assert_eq!(stacked.shape, vec![2, 2]);
        assert_eq!(stacked.bytes.as_ref(), expected.as_slice());
    }
}

#[test]
fn writer_round_trips_and_can_replace_an_open_checkpoint() {
    let dir = TempDir::new();
    let file = dir.path("out.safetensors");
    let tensors: Vec<(String, HostTensor<'static>)> = ALL
        .iter()
        .enumerate()
        .map(|(i, &(st, dtype))| {
            let r = raw("x", st, &[3, 1]);
            (format!("p{i}"), HostTensor::new(dtype, [3, 1], r.bytes))
        })
        .collect();
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    save_safetensors(&file, tensors.clone(), Some(metadata.clone())).unwrap();

    let ckpt = Checkpoint::open(&file).unwrap();
    assert_eq!(ckpt.metadata(), Some(&metadata));
    for (name, t) in &tensors {
        let r = ckpt.get(name).unwrap();
        assert_eq!((r.dtype(), r.shape()), (t.dtype, t.shape.as_slice()));
        assert_eq!(r.read().unwrap().bytes, t.bytes);
    }
    // Saving over the open file goes through a rename: the open file keeps its old data.
    let before = ckpt.get("p0").unwrap().read().unwrap();
    let replacement = HostTensor::from_f32([1], &[42.0]);
    save_safetensors(&file, [("only".to_string(), replacement)], None).unwrap();
    assert_eq!(ckpt.get("p0").unwrap().read().unwrap(), before);
    let reopened = Checkpoint::open(&file).unwrap();
    assert_eq!(reopened.keys().collect::<Vec<_>>(), vec!["only"]);
    assert_eq!(reopened.metadata(), None);
    assert_eq!(
        std::fs::read_dir(&dir.0).unwrap().count(),
        1,
        "no temporary file left"
    );
}

#[test]
fn writer_rejects_bad_tensors() {
    let dir = TempDir::new();
    let file = dir.path("bad.safetensors");
    let t = HostTensor::from_f32([1], &[1.0]);
    let err = save_safetensors(
        &file,
        [("a".to_string(), t.clone()), ("a".to_string(), t.clone())],
        None,
    )
    .unwrap_err();
    assert!(matches!(&err, CheckpointError::InvalidTensor { key, .. } if key == "a"));
    assert!(err.to_string().contains("the name is given twice"));
    let mut short = t;
    short.shape = vec![2];
    let err = save_safetensors(&file, [("b".to_string(), short)], None).unwrap_err();
    assert!(err.to_string().contains("cannot save tensor `b`"));
    assert!(err
        .to_string()
        .contains("it has 4 bytes but a F32 tensor of shape [2] needs 8"));
    assert!(!file.exists());
}

/// Two shards and an index mapping `a` to shard 1 and `b` to shard 2, with `edit` applied to
/// the map before it is written.
fn sharded(dir: &TempDir, edit: impl FnOnce(&mut Vec<(&'static str, &'static str)>)) -> PathBuf {
    write(&dir.path("s1.safetensors"), &[raw("a", Dtype::F32, &[1])]);
    write(&dir.path("s2.safetensors"), &[raw("b", Dtype::F32, &[1])]);
    let mut map = vec![("a", "s1.safetensors"), ("b", "s2.safetensors")];
    edit(&mut map);
    let index = dir.path("model.safetensors.index.json");
    write_index(&index, &map);
    index
}

#[test]
fn shard_paths_must_stay_in_the_folder() {
    for escape in [
        "../s1.safetensors",
        "sub/../../s1.safetensors",
        "/tmp/s1.safetensors",
    ] {
        let dir = TempDir::new();
        let index = sharded(&dir, |m| m[0].1 = escape);
        let err = open_err(&index);
        assert!(
            matches!(&err, CheckpointError::ShardPathEscapes { key, shard, .. } if key == "a" && shard == escape),
            "{err}"
        );
        assert!(err.to_string().contains("leaves the checkpoint folder"));
        assert!(err.to_string().contains("model.safetensors.index.json"));
    }
}

#[test]
fn missing_shard() {
    let dir = TempDir::new();
    let index = sharded(&dir, |m| m[1].1 = "s3.safetensors");
    let err = open_err(&index);
    assert!(
        matches!(&err, CheckpointError::MissingShard { key, shard, .. } if key == "b" && shard.ends_with("s3.safetensors")),
        "{err}"
    );
    assert!(err
        .to_string()
        .contains("download the missing shard or fix the index"));
}

#[test]
fn key_missing_from_its_shard() {
    let dir = TempDir::new();
    // `c` is in no shard; `b` is said to be in s1 but lives in s2.
    let index = sharded(&dir, |m| m.push(("c", "s1.safetensors")));
    let err = open_err(&index);
    assert!(
        matches!(&err, CheckpointError::KeyNotInShard { key, shard, .. } if key == "c" && shard.ends_with("s1.safetensors")),
        "{err}"
    );
    let dir = TempDir::new();
    let index = sharded(&dir, |m| m[1].1 = "s1.safetensors");
    let err = open_err(&index);
    assert!(
        matches!(&err, CheckpointError::KeyNotInShard { key, .. } if key == "b"),
        "{err}"
    );
    assert!(err.to_string().contains("tensor `b` is mapped to"));
}

#[test]
fn key_in_two_shards() {
    let dir = TempDir::new();
    let index = sharded(&dir, |_| {});
    write(
        &dir.path("s2.safetensors"),
        &[raw("a", Dtype::F32, &[1]), raw("b", Dtype::F32, &[1])],
    );
    let err = open_err(&index);
    assert!(
        matches!(&err, CheckpointError::DuplicateKey { key, first, second } if key == "a"
            && first.ends_with("s1.safetensors") && second.ends_with("s2.safetensors")),
        "{err}"
    );
    assert!(err.to_string().contains("is stored twice"));
}

#[test]
fn bad_index_json() {
    let dir = TempDir::new();
    let index = dir.path("model.safetensors.index.json");
    for text in [
        "{ not json",
        r#"{"metadata": {}}"#,
        r#"{"weight_map": {"a": 3}}"#,
    ] {
        std::fs::write(&index, text).unwrap();
        let err = open_err(&index);
        assert!(
            matches!(&err, CheckpointError::IndexJson { index: i, .. } if *i == index),
            "{err}"
        );
        assert!(err.to_string().contains("is not a valid safetensors index"));
    }
}

#[test]
fn corrupt_or_truncated_header() {
    let dir = TempDir::new();
    let good = dir.path("good.safetensors");
    write(&good, &[raw("a", Dtype::F32, &[4])]);
    let bytes = std::fs::read(&good).unwrap();
    let file = dir.path("model.safetensors");
    let mut garbage_header = bytes.clone();
    garbage_header[8] = b'#';
    let cases: Vec<Vec<u8>> = vec![
        bytes[..bytes.len() - 3].to_vec(), // truncated data
        bytes[..20].to_vec(),              // truncated header
        vec![1, 2, 3],                     // shorter than the length prefix
        vec![],                            // empty file
        u64::MAX.to_le_bytes().to_vec(),   // absurd header length
        garbage_header,                    // header is not JSON
    ];
    for (i, case) in cases.into_iter().enumerate() {
        std::fs::write(&file, case).unwrap();
        let err = open_err(&file);
        assert!(
            matches!(&err, CheckpointError::Header { file: f, .. } if *f == file),
            "case {i}: {err}"
        );
        assert!(
            err.to_string().contains("truncated or corrupt header"),
            "case {i}: {err}"
        );
    }
}

#[test]
fn unsupported_dtypes() {
    for dtype in [Dtype::F8_E4M3, Dtype::I16, Dtype::U32] {
        let dir = TempDir::new();
        let file = dir.path("model.safetensors");
        write(
            &file,
            &[raw("ok", Dtype::F32, &[1]), raw("scale", dtype, &[2])],
        );
        let err = open_err(&file);
        assert!(
            matches!(&err, CheckpointError::UnsupportedDtype { key, dtype: d, file: f }
                if key == "scale" && *d == dtype.to_string() && *f == file),
            "{err}"
        );
        assert!(err
            .to_string()
            .contains("dequantize or convert the checkpoint first"));
    }
}

#[test]
fn lookups_and_folders() {
    let dir = TempDir::new();
    let err = open_err(&dir.0);
    assert!(matches!(&err, CheckpointError::NoCheckpointInFolder { found, .. } if found == "none"));
    write(&dir.path("a.safetensors"), &[raw("x", Dtype::F32, &[1])]);
    // A lone safetensors file of another name is found.
    assert_eq!(
        Checkpoint::open(&dir.0).unwrap().path(),
        dir.path("a.safetensors")
    );
    write(&dir.path("b.safetensors"), &[raw("y", Dtype::F32, &[1])]);
    let err = open_err(&dir.0);
    assert!(
        err.to_string()
            .contains("found: a.safetensors, b.safetensors"),
        "{err}"
    );

    let ckpt = Checkpoint::open(dir.path("a.safetensors")).unwrap();
    assert!(ckpt.contains("x") && !ckpt.contains("y"));
    let err = ckpt.get("y").unwrap_err();
    assert!(matches!(&err, CheckpointError::TensorNotFound { key, count: 1, .. } if key == "y"));
    assert!(err.to_string().contains("no tensor `y` in checkpoint"));

    let err = open_err(dir.path("missing.safetensors"));
    assert!(matches!(err, CheckpointError::Io { .. }));
}

#[test]
fn folder_prefers_the_single_file_and_handles_are_shareable() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Checkpoint>();
    send_sync::<TensorRef<'static>>();
    let dir = TempDir::new();
    let index = sharded(&dir, |_| {});
    assert_eq!(Checkpoint::open(&dir.0).unwrap().path(), index);
    write(
        &dir.path("model.safetensors"),
        &[raw("x", Dtype::F32, &[1])],
    );
    assert_eq!(
        Checkpoint::open(&dir.0).unwrap().path(),
        dir.path("model.safetensors")
    );
}

#[test]
fn debug_is_a_summary() {
    let dir = TempDir::new();
    let file = dir.path("model.safetensors");
    write(&file, &[raw("x", Dtype::F32, &[1])]);
    let ckpt = Checkpoint::open(&file).unwrap();
    let text = format!("{ckpt:?}");
    assert!(
        text.contains("files: 1") && text.contains("tensors: 1"),
        "{text}"
    );
}
