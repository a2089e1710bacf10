//! `plan` and `convert` with `--conversions FILE` and no family: a model the kit does not have
//! (the GPT-2 fixture's checkpoint, taken as a user's own GPT-2) split into q/k/v and back from
//! the command line, and the file's mistakes as typed usage errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use patcher_core::plan::collapse_keys;
use patcher_core::{Checkpoint, HostTensor};
use tempfile::TempDir;

/// `c_attn` (Conv1D: weight `[in, 3 * out]`, bias `[3 * out]`) into q/k/v, `transformer.`
/// dropped.
const SPLIT: &str = r#"{"conversions": [
    {"rename": {"from": "^transformer\\.", "to": ""}},
    {"convert": {"sources": ["attn.c_attn.weight"],
                 "targets": ["attn.q.weight", "attn.k.weight", "attn.v.weight"],
                 "ops": [{"chunk": {"dim": 1}}]}},
    {"convert": {"sources": ["attn.c_attn.bias"],
                 "targets": ["attn.q.bias", "attn.k.bias", "attn.v.bias"],
                 "ops": [{"chunk": {"dim": 0}}]}}
]}"#;

/// The reverse of [`SPLIT`].
const MERGE: &str = r#"{"conversions": [
    {"rename": {"from": "^(h|wte|wpe|ln_f)\\.", "to": "transformer.\\1."}},
    {"convert": {"sources": ["attn.q.weight", "attn.k.weight", "attn.v.weight"],
                 "targets": ["attn.c_attn.weight"],
                 "ops": [{"concatenate": {"dim": 1}}]}},
    {"convert": {"sources": ["attn.q.bias", "attn.k.bias", "attn.v.bias"],
                 "targets": ["attn.c_attn.bias"],
                 "ops": [{"concatenate": {"dim": 0}}]}}
]}"#;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

/// Runs the binary with `args`; checks its exit status and returns stdout and stderr.
#[track_caller]
fn run(args: &[&Path], status: i32) -> (String, String) {
    let args: Vec<&str> = args
        .iter()
        .map(|a| a.to_str().expect("a UTF-8 path"))
        .collect();
    let output = Command::new(env!("CARGO_BIN_EXE_burn-patcher"))
        .args(&args)
        .output()
        .expect("the binary runs");
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    let err = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(status), "{args:?}\n{out}\n{err}");
    (out, err)
}

/// `text` as the file `name` in `dir`.
fn file(dir: &TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Every tensor of the checkpoint at `path`, by key.
fn tensors(path: &Path) -> BTreeMap<String, HostTensor<'static>> {
    let checkpoint = Checkpoint::open(path).unwrap();
    checkpoint
        .iter()
        .map(|t| (t.name().to_string(), t.read().unwrap()))
        .collect()
}

/// Columns `part` of three of a row-major `[rows, 3 * cols]` f32 tensor (a Conv1D's q, k or
/// v), or the third `part` of a vector.
fn third(tensor: &HostTensor<'_>, part: usize) -> Vec<u8> {
    let (rows, width) = match tensor.shape[..] {
        [rows, width] => (rows, width),
        [width] => (1, width),
        _ => panic!("a matrix or a vector"),
    };
    let cols = width / 3;
    (0..rows)
        .flat_map(|r| {
            let start = (r * width + part * cols) * 4;
            tensor.bytes[start..start + cols * 4].to_vec()
        })
        .collect()
}

#[test]
fn a_model_without_a_family_is_split_and_merged_by_conversions_files() {
    let dir = TempDir::new().unwrap();
    let (split, merge) = (
        file(&dir, "split.json", SPLIT),
        file(&dir, "merge.json", MERGE),
    );
    let gpt2 = fixture("gpt2");
    let original = tensors(&gpt2);
    let layers = original
        .keys()
        .filter(|k| k.ends_with("attn.c_attn.weight"))
        .count();
    assert!(layers >= 2);

    let plan = Path::new("plan");
    let (out, _) = run(&[plan, &gpt2, Path::new("--conversions"), &split], 0);
    let written = original.len() + 4 * layers;
    assert!(out.contains(&format!("{written} tensors written")), "{out}");
    // The layers collapsed as the plan prints them (`h.{0,1}`, `h.{0..5}`).
    let keys: Vec<(String, ())> = (0..layers).map(|l| (format!("h.{l}.x"), ())).collect();
    let range = collapse_keys(&keys)[0].0.trim_end_matches(".x").to_string();
    assert!(
        out.contains(&format!(
            "{range}.attn.q.weight [64, 64] <- WeightConverter"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("{range}.ln_1.weight [64] <- renamed")),
        "{out}"
    );
    assert!(
        out.contains("Result: the conversion would succeed"),
        "{out}"
    );

    let convert = Path::new("convert");
    let flag = Path::new("--conversions");
    let parts = dir.path().join("parts");
    let (out, _) = run(&[convert, &gpt2, &parts, flag, &split], 0);
    assert!(out.contains(&format!("{written} tensors")), "{out}");
    assert!(
        parts.join("config.json").is_file(),
        "the side files come along"
    );
    let converted = tensors(&parts);
    assert_eq!(converted.len(), written);
    for layer in 0..layers {
        for kind in ["weight", "bias"] {
            let fused = &original[&format!("transformer.h.{layer}.attn.c_attn.{kind}")];
            for (part, name) in ["q", "k", "v"].into_iter().enumerate() {
                let split = &converted[&format!("h.{layer}.attn.{name}.{kind}")];
                assert_eq!(
                    &split.bytes[..],
                    &third(fused, part)[..],
                    "{layer} {name} {kind}"
                );
            }
        }
        let norm = format!("h.{layer}.ln_1.weight");
        assert_eq!(converted[&norm], original[&format!("transformer.{norm}")]);
    }

    // And back: every tensor of the fixture, bit for bit.
    let back = dir.path().join("back");
    run(&[convert, &parts, &back, flag, &merge], 0);
    assert_eq!(tensors(&back), original);
}

#[test]
fn a_conversions_file_with_mistakes_is_a_usage_error_naming_it() {
    let dir = TempDir::new().unwrap();
    let gpt2 = fixture("gpt2");
    let (plan, flag) = (Path::new("plan"), Path::new("--conversions"));
    let cases = [
        ("not-json.json", "{", "not a conversions file"),
        (
            "unknown-op.json",
            r#"{"conversions": [{"convert": {"sources": ["a"], "targets": ["b"], "ops": [{"fuse": {}}]}}]}"#,
            "unknown variant `fuse`",
        ),
        (
            "bad-regex.json",
            r#"{"conversions": [{"rename": {"from": "(", "to": "x"}}]}"#,
            "conversion 1",
        ),
    ];
    for (name, text, expected) in cases {
        let path = file(&dir, name, text);
        let (_, err) = run(&[plan, &gpt2, flag, &path], 2);
        assert!(
            err.contains(name) && err.contains(expected),
            "{name}: {err}"
        );
    }
    // An op that does not fit its tensors: the plan says so and fails with status 1.
    let odd = r#"{"conversions": [{"convert": {"sources": ["attn.c_attn.weight"],
        "targets": ["attn.a.weight", "attn.b.weight"], "ops": [{"split": {"dim": 1, "sizes": [1, 2]}}]}}]}"#;
    let odd = file(&dir, "odd.json", odd);
    let (out, err) = run(&[plan, &gpt2, flag, &odd], 1);
    assert!(out.contains("Result: the conversion would FAIL"), "{out}");
    assert!(err.contains("cannot run on the checkpoint"), "{err}");
    // Nothing written by a convert that cannot run, and no family flags beside the file.
    let out_dir = dir.path().join("out");
    run(&[Path::new("convert"), &gpt2, &out_dir, flag, &odd], 1);
    assert!(!out_dir.exists());
    let split = file(&dir, "split.json", SPLIT);
    let model = Path::new("--model");
    run(&[plan, &gpt2, flag, &split, model, Path::new("gpt2")], 2);
    let to = Path::new("--to");
    let (_, err) = run(
        &[
            Path::new("convert"),
            &gpt2,
            &out_dir,
            flag,
            &split,
            to,
            Path::new("original"),
        ],
        2,
    );
    assert!(err.contains("--to original needs a family"), "{err}");
}
