//! The `burn-patcher` binary on the committed fixtures (`tests/fixtures/`): inspect, plan (exit
//! statuses 0, 1 and 2), convert to the patched layout and back, and generate (text against
//! transformers' greedy `generate`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use burn::backend::ndarray::NdArrayDevice;
use burn::backend::NdArray;
use burn::prelude::*;
use patcher_burn::Patcher;
use patcher_core::{save_safetensors, Checkpoint, DType, HostTensor};
use patcher_models::llama::{LlamaConfig, LlamaForCausalLm};
use patcher_models::prelude::*;
use patcher_models::qwen2_moe::{Qwen2MoeConfig, Qwen2MoeForCausalLm};
use patcher_models::replacements::Patch;
use tempfile::TempDir;

type B = NdArray<f32>;

/// What converting the `qwen2_moe` fixture writes: its weights, and its config, generation
/// config and tokenizer files carried over.
const QWEN2_MOE_CONVERTED: [&str; 5] = [
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

/// `path` as an argument (the fixtures' and temporary folders' paths are UTF-8).
fn arg(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// Runs the binary with `args` and checks its exit status; returns stdout and stderr.
#[track_caller]
fn expect_status(args: &[&str], status: i32) -> (String, String) {
    let output: Output = Command::new(env!("CARGO_BIN_EXE_burn-patcher"))
        .args(args)
        .output()
        .expect("the binary runs");
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    let err = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(status),
        "status of {args:?}\nstdout:\n{out}\nstderr:\n{err}"
    );
    (out, err)
}

/// `plan CKPT --model FAMILY EXTRA...`, with the exit status `status`.
#[track_caller]
fn plan(checkpoint: &Path, family: &str, extra: &[&str], status: i32) -> (String, String) {
    let mut args = vec!["plan", arg(checkpoint), "--model", family];
    args.extend(extra);
    expect_status(&args, status)
}

/// `convert CKPT OUT --model FAMILY EXTRA...`, with the exit status `status`.
#[track_caller]
fn convert_status(
    checkpoint: &Path,
    out: &Path,
    family: &str,
    extra: &[&str],
    status: i32,
) -> (String, String) {
    let mut args = vec!["convert", arg(checkpoint), arg(out), "--model", family];
    args.extend(extra);
    expect_status(&args, status)
}

/// `convert CKPT OUT --model FAMILY EXTRA...`, which must succeed; its stdout.
#[track_caller]
fn convert(checkpoint: &Path, out: &Path, family: &str, extra: &[&str]) -> String {
    convert_status(checkpoint, out, family, extra, 0).0
}

fn ids(device: &NdArrayDevice) -> Tensor<B, 2, Int> {
    Tensor::from_data(
        TensorData::new(vec![1i64, 7, 3, 12, 5, 9, 2, 30], [2, 4]),
        device,
    )
}

/// A family's model with a patcher, loaded through the library.
enum Library {
    Llama(Patcher<B>),
    Qwen2Moe(Patcher<B>),
}

impl Library {
    /// Qwen2-MoE with the config of the checkpoint folder `dir`, patched by `patch`.
    fn qwen2_moe(dir: &Path, patch: Patch) -> Self {
        let config = Qwen2MoeConfig::from_file(dir.join("config.json")).unwrap();
        Self::Qwen2Moe(patch.patcher(&config).unwrap())
    }
}

/// `a` and `b` loaded through the library into `model` give the same logits, exactly.
#[track_caller]
fn assert_same_logits(a: &Path, b: &Path, model: &Library) {
    assert_eq!(library_logits(a, model), library_logits(b, model));
}

/// The logits on [`ids`] of the checkpoint at `path` loaded through the library.
fn library_logits(path: &Path, model: &Library) -> Vec<f32> {
    let device = Default::default();
    let logits = match model {
        Library::Llama(patcher) => Pretrained::from_path(path)
            .patcher(patcher)
            .load::<LlamaForCausalLm<_>>(&device)
            .map(|loaded| loaded.model.forward(ids(&device))),
        Library::Qwen2Moe(patcher) => Pretrained::from_path(path)
            .patcher(patcher)
            .load::<Qwen2MoeForCausalLm<_>>(&device)
            .map(|loaded| loaded.model.forward(ids(&device))),
    };
    logits.expect("loads").into_data().to_vec().unwrap()
}

/// Nothing but `expected` in `dir` (no staging folder left behind).
#[track_caller]
fn assert_entries(dir: &Path, expected: &[&str]) {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, expected);
}

#[test]
fn inspect_prints_shards_dtypes_bytes_and_collapsed_keys() {
    let (out, _) = expect_status(&["inspect", arg(&fixture("qwen2_moe_sharded"))], 0);
    assert!(out.contains("model.safetensors.index.json"), "{out}");
    for line in [
        "shards     5\n",
        "  model-00001-of-00005.safetensors  7 tensors, 98560 bytes (96.25 KiB)\n",
        "tensors    55 (109760 parameters)\n",
        "bytes      439040 bytes (428.75 KiB)\n",
        "  F32  55 tensors, 439040 bytes (428.75 KiB)\n",
        "keys       20 lines for 55 tensors",
        "  model.layers.{0,1}.mlp.experts.{0..3}.down_proj.weight  F32 [64, 32]\n",
        "  model.layers.{0,1}.self_attn.q_proj.bias                F32 [64]\n",
        "  model.norm.weight                                       F32 [64]\n",
    ] {
        assert!(out.contains(line), "{line:?} missing from\n{out}");
    }

    assert!(out.contains("metadata   format=pt\n"), "{out}");

    // The single-file twin: same keys section, one shard; a file path works as a folder does.
    let single = fixture("qwen2_moe").join("model.safetensors");
    let (one, _) = expect_status(&["inspect", arg(&single)], 0);
    assert!(one.contains("shards     1\n"), "{one}");
    let keys = |text: &str| text[text.find("keys ").unwrap()..].to_string();
    assert_eq!(keys(&one), keys(&out));
}

/// Integer buffers (BERT's position_ids) are counted apart from the parameters.
#[test]
fn inspect_counts_integer_buffers_apart_from_parameters() {
    let (out, _) = expect_status(&["inspect", arg(&fixture("bert_legacy"))], 0);
    let line = "tensors    41 (23620 parameters; 64 elements in 1 integer/bool buffer)\n";
    assert!(out.contains(line), "{line:?} missing from\n{out}");
    assert!(out.contains("  I64  1 tensors, 512 bytes\n"), "{out}");
    assert!(out.contains("  bert.embeddings.position_ids"), "{out}");
}

#[test]
fn inspect_of_a_missing_checkpoint_is_an_input_error() {
    let dir = TempDir::new().unwrap();
    let (_, err) = expect_status(&["inspect", arg(dir.path())], 2);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("CKPT must be"), "{err}");
}

#[test]
fn plan_of_a_matching_family_and_patches_exits_0() {
    let patches = ["--patch", "fused-qkv,sequential-experts"];
    let (out, _) = plan(&fixture("qwen2_moe"), "qwen2-moe", &patches, 0);
    assert!(
        out.contains("0 unexpected, 0 missing, 0 mismatched"),
        "{out}"
    );
    assert!(out.contains("Conversions used (2):"), "{out}");
    assert!(out.contains("-> \"qkv_proj.weight\""), "{out}");
    assert!(
        out.ends_with("Result: a strict load would succeed\n"),
        "{out}"
    );

    // transformers 5's fused experts into sequential experts: the default converter runs
    // backwards.
    let patches = ["--patch", "sequential-experts"];
    let (out, _) = plan(&fixture("qwen2_moe_fused"), "qwen2-moe", &patches, 0);
    assert!(out.contains("Conversions run in reverse"), "{out}");

    let (out, _) = plan(&fixture("llama"), "llama", &[], 0);
    assert!(out.contains("No conversion used"), "{out}");

    // Mixtral's hub layout: renamed and merged by its default conversions, patched or not.
    for patches in [&[][..], &["--patch", "fused-qkv,sequential-experts"][..]] {
        let (out, _) = plan(&fixture("mixtral"), "mixtral", patches, 0);
        assert!(out.contains("0 unexpected, 0 missing"), "{out}");
    }
}

#[test]
fn plan_of_another_family_exits_1_naming_the_right_one() {
    let (_, err) = plan(&fixture("qwen2_moe"), "llama", &[], 1);
    assert!(err.contains("model_type `qwen2_moe`"), "{err}");
    assert!(err.contains("use --model qwen2-moe"), "{err}");
}

#[test]
fn gpt2_legacy_checkpoints_plan_with_their_buffers_ignored() {
    let (out, _) = expect_status(&["plan", arg(&fixture("gpt2_legacy"))], 0);
    assert!(out.contains("into --model gpt2 with no --patch"), "{out}");
    assert!(out.contains("28 loaded, 0 unexpected, 0 missing"), "{out}");
    assert!(
        out.contains("2 checkpoint keys ignored") && out.contains("h.{0,1}.attn.bias"),
        "{out}"
    );
    let (_, err) = plan(&fixture("gpt2"), "gpt2", &["--patch", "fused-qkv"], 2);
    assert!(err.contains("does not apply to the gpt2 family"), "{err}");
}

#[test]
fn without_model_the_family_is_the_one_config_json_names() {
    let qwen = fixture("qwen2_moe");
    let patches = ["--patch", "seed"];
    let (out, _) = expect_status(&["plan", arg(&qwen), patches[0], patches[1]], 0);
    assert!(
        out.contains("into --model qwen2-moe with --patch fused-qkv --patch sequential-experts"),
        "{out}"
    );
    // A model_type with no family, and none at all: usage errors naming the families.
    let dir = TempDir::new().unwrap();
    for (name, config) in [
        ("falcon", r#"{"model_type": "falcon"}"#),
        ("untyped", r#"{"hidden_size": 8}"#),
    ] {
        let folder = dir.path().join(name);
        std::fs::create_dir(&folder).unwrap();
        std::fs::copy(
            qwen.join("model.safetensors"),
            folder.join("model.safetensors"),
        )
        .unwrap();
        std::fs::write(folder.join("config.json"), config).unwrap();
        let (_, err) = expect_status(&["plan", arg(&folder)], 2);
        assert!(
            err.contains("gpt2, llama, qwen2-moe, mixtral, bert"),
            "{name}: {err}"
        );
    }
}

#[test]
fn usage_errors_exit_2_listing_the_valid_names() {
    let qwen = fixture("qwen2_moe");
    let (_, err) = plan(&qwen, "falcon", &[], 2);
    assert!(err.contains("gpt2, llama, qwen2-moe"), "{err}");
    let (_, err) = plan(&qwen, "qwen2-moe", &["--patch", "fused-mlp"], 2);
    assert!(err.contains("fused-qkv, sequential-experts"), "{err}");
    // A patch of another family.
    let (_, err) = plan(
        &fixture("llama"),
        "llama",
        &["--patch", "sequential-experts"],
        2,
    );
    assert!(
        err.contains("does not apply to the llama family; its patches are: fused-qkv"),
        "{err}"
    );
    // A bad shard size.
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("x");
    let size = ["--max-shard-size", "5XB"];
    let (_, err) = convert_status(&qwen, &out, "qwen2-moe", &size, 2);
    assert!(err.contains("unknown unit"), "{err}");
}

#[test]
fn help_documents_the_exit_statuses() {
    for args in [&["--help"][..], &["plan", "--help"], &["convert", "--help"]] {
        let (out, _) = expect_status(args, 0);
        assert!(out.contains("Exit status:"), "{out}");
        assert!(out.contains("  1  the checkpoint does not fit"), "{out}");
    }
}

/// Qwen2-MoE with both patches: the patched layout loads with no conversion, gives the same
/// logits as the stock checkpoint, fails (1, with the report and a hint) without the patches,
/// and converts back to the fixture byte for byte.
#[test]
fn qwen2_moe_converts_to_the_patched_layout_and_back() {
    let dir = TempDir::new().unwrap();
    let stock = fixture("qwen2_moe");
    let patched = dir.path().join("patched");
    let both = ["--patch", "fused-qkv", "--patch", "sequential-experts"];
    let out = convert(&stock, &patched, "qwen2-moe", &both);
    assert!(
        out.contains(
            "converts no tensor): 47 tensors (47 parameters loaded), float tensors in F32"
        ),
        "{out}"
    );
    assert_entries(&patched, &QWEN2_MOE_CONVERTED);

    let (out, _) = plan(&patched, "qwen2-moe", &both, 0);
    assert!(out.contains("No conversion used"), "{out}");
    assert!(out.contains("47 loaded, 0 unexpected, 0 missing"), "{out}");

    assert_same_logits(&patched, &stock, &Library::qwen2_moe(&stock, Patch::seed()));

    // Without the patches: unexpected qkv_proj, missing q/k/v; the hint names the patch.
    let (report, err) = plan(&patched, "qwen2-moe", &[], 1);
    assert!(
        report.contains("Unexpected (in the checkpoint, not in the model):"),
        "{report}"
    );
    assert!(
        report.contains("model.layers.{0,1}.self_attn.qkv_proj.weight"),
        "{report}"
    );
    assert!(
        report.ends_with("Result: a strict load would FAIL\n"),
        "{report}"
    );
    assert!(
        err.contains("It would load with: --patch fused-qkv"),
        "{err}"
    );

    let original = dir.path().join("original");
    let back = [
        "--patch",
        "fused-qkv,sequential-experts",
        "--to",
        "original",
    ];
    let out = convert(&patched, &original, "qwen2-moe", &back);
    assert!(
        out.contains("in the stock qwen2-moe layout (2 conversions reversed)"),
        "{out}"
    );
    assert_same_file(&original, &stock);
}

/// BERT with fused QKV: `query`/`key`/`value` concatenated into `qkv`, the patched layout under
/// transformers' names (`attention.self.qkv`, never the Rust field `self_`) loading with no
/// tensor conversion, and back to the fixture byte for byte; the legacy layout (`bert.`,
/// `gamma`/`beta`) plans clean too, and its converted file says which buffer it leaves out.
#[test]
fn bert_converts_to_fused_qkv_and_back() {
    let dir = TempDir::new().unwrap();
    let stock = fixture("bert");
    let fused = ["--patch", "fused-qkv"];
    for checkpoint in [&stock, &fixture("bert_legacy")] {
        let (out, _) = plan(checkpoint, "bert", &fused, 0);
        assert!(out.contains("0 unexpected, 0 missing"), "{out}");
        assert!(out.contains("-> \"qkv.weight\""), "{out}");
    }
    let patched = dir.path().join("patched");
    convert(&stock, &patched, "bert", &fused);
    let keys: Vec<String> = Checkpoint::open(&patched)
        .unwrap()
        .metas()
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    assert!(
        keys.contains(&"encoder.layer.0.attention.self.qkv.weight".to_string()),
        "{keys:?}"
    );
    assert!(!keys.iter().any(|k| k.contains("self_")), "{keys:?}");
    let (out, _) = plan(&patched, "bert", &fused, 0);
    assert!(out.contains("Conversions used (1):"), "{out}");
    assert!(
        out.contains(r#"WeightRenaming("\\.attention\\.self\\." -> ".attention.self_.")"#),
        "{out}"
    );
    let legacy = convert(
        &fixture("bert_legacy"),
        &dir.path().join("legacy"),
        "bert",
        &fused,
    );
    assert!(
        legacy.contains("not written: bert.embeddings.position_ids"),
        "{legacy}"
    );
    let original = dir.path().join("original");
    let back = ["--patch", "fused-qkv", "--to", "original"];
    convert(&patched, &original, "bert", &back);
    assert_same_file(&original, &stock);
}

/// `OUT/model.safetensors` and `fixture/model.safetensors` hold the same bytes.
#[track_caller]
fn assert_same_file(out: &Path, fixture: &Path) {
    let name = "model.safetensors";
    assert!(
        std::fs::read(out.join(name)).unwrap() == std::fs::read(fixture.join(name)).unwrap(),
        "{} differs from {}",
        out.display(),
        fixture.display()
    );
}

/// Unpatched Qwen2-MoE: its own layout is transformers 5's fused experts, and back is the
/// per-expert hub layout; sharded output with an index loads the same.
#[test]
fn qwen2_moe_sharded_converts_to_fused_experts_in_shards_and_back() {
    let dir = TempDir::new().unwrap();
    let sharded = fixture("qwen2_moe_sharded");
    let patched = dir.path().join("nested/fused");
    let out = convert(
        &sharded,
        &patched,
        "qwen2-moe",
        &["--max-shard-size", "100KB"],
    );
    assert!(out.contains("model.safetensors.index.json"), "{out}");
    assert!(patched.join("model-00001-of-00005.safetensors").is_file());
    let (inspect, _) = expect_status(&["inspect", arg(&patched)], 0);
    assert!(
        inspect.lines().any(
            |l| l.starts_with("  model.layers.{0,1}.mlp.experts.gate_up_proj ")
                && l.ends_with(" F32 [4, 64, 64]")
        ),
        "{inspect}"
    );
    let (out, _) = plan(&patched, "qwen2-moe", &[], 0);
    assert!(out.contains("No conversion used"), "{out}");
    assert_same_logits(
        &patched,
        &sharded,
        &Library::qwen2_moe(&sharded, Patch::NONE),
    );

    // In one file, the fused layout is transformers 5's own: the fused fixture, byte for byte.
    let fused = dir.path().join("fused");
    convert(&fixture("qwen2_moe"), &fused, "qwen2-moe", &[]);
    assert_same_file(&fused, &fixture("qwen2_moe_fused"));

    // Back in one file: the same bytes as the single-file fixture holding the same weights.
    let original = dir.path().join("original");
    let out = convert(&patched, &original, "qwen2-moe", &["--to", "original"]);
    assert_same_file(&original, &fixture("qwen2_moe"));
    // The count is of what was written: per-expert tensors, more than the fused parameters.
    let written = Checkpoint::open(fixture("qwen2_moe")).unwrap().len();
    let loaded = Checkpoint::open(&patched).unwrap().len();
    assert!(written > loaded);
    let counts = format!("{written} tensors ({loaded} parameters loaded)");
    assert!(out.contains(&counts), "{out}");
}

#[test]
fn llama_converts_to_fused_qkv_and_back() {
    let dir = TempDir::new().unwrap();
    let stock = fixture("llama");
    let patched = dir.path().join("patched");
    convert(&stock, &patched, "llama", &["--patch", "fused-qkv"]);
    let (out, _) = plan(&patched, "llama", &["--patch", "fused-qkv"], 0);
    assert!(out.contains("No conversion used"), "{out}");
    let config = LlamaConfig::from_file(stock.join("config.json")).unwrap();
    let patcher = Patch::fused_qkv().patcher::<B, _>(&config).unwrap();
    assert_same_logits(&patched, &stock, &Library::Llama(patcher));

    let original = dir.path().join("original");
    let back = ["--patch", "fused-qkv", "--to", "original"];
    convert(&patched, &original, "llama", &back);
    assert_same_file(&original, &stock);
}

#[test]
fn convert_leaves_no_output_on_failure_and_never_overwrites() {
    let dir = TempDir::new().unwrap();
    let qwen = fixture("qwen2_moe");

    // The checkpoint does not fit: 1, and neither OUT nor a staging folder is left.
    let out = dir.path().join("out");
    convert_status(&qwen, &out, "llama", &[], 1);
    let patched = dir.path().join("patched");
    convert(&qwen, &patched, "qwen2-moe", &["--patch", "fused-qkv"]);
    let (report, _) = convert_status(&patched, &out, "qwen2-moe", &["--to", "original"], 1);
    assert!(report.contains("Unexpected"), "{report}");
    assert_entries(dir.path(), &["patched"]);

    // A non-empty OUT is refused (2) and left as it was.
    let (_, err) = convert_status(&qwen, &patched, "qwen2-moe", &[], 2);
    assert!(err.contains("is not empty"), "{err}");
    assert_entries(&patched, &QWEN2_MOE_CONVERTED);

    // An empty OUT is filled.
    std::fs::create_dir(&out).unwrap();
    convert(&qwen, &out, "qwen2-moe", &[]);
    assert_entries(dir.path(), &["out", "patched"]);
}

#[test]
fn convert_removes_the_staging_folders_of_killed_runs_only() {
    let dir = TempDir::new().unwrap();
    // A process that has ended, and one that runs: their staging folders as a killed and a
    // running convert leave them.
    let mut ended = Command::new("true").spawn().unwrap();
    ended.wait().unwrap();
    let mut running = Command::new("sleep").arg("60").spawn().unwrap();
    let killed = dir
        .path()
        .join(format!(".burn-patcher-{}-a1B2c3", ended.id()));
    let live = dir
        .path()
        .join(format!(".burn-patcher-{}-d4E5f6", running.id()));
    let unrelated = dir.path().join(".burn-patcher-notes");
    for folder in [&killed, &live, &unrelated] {
        std::fs::create_dir(folder).unwrap();
        std::fs::write(folder.join("model.safetensors"), b"partial").unwrap();
    }

    convert(&fixture("llama"), &dir.path().join("out"), "llama", &[]);
    let live_name = live.file_name().unwrap().to_str().unwrap();
    assert_entries(dir.path(), &[live_name, ".burn-patcher-notes", "out"]);
    running.kill().unwrap();
    running.wait().unwrap();
}

/// A BF16 checkpoint is written in BF16 (exactly: its values pass through f32), both ways;
/// `--dtype` picks another.
#[test]
fn bf16_stays_bf16_unless_asked() {
    let dir = TempDir::new().unwrap();
    let stock = fixture("qwen2_moe_bf16");
    let patched = dir.path().join("patched");
    let out = convert(&stock, &patched, "qwen2-moe", &["--patch", "fused-qkv"]);
    assert!(out.contains("float tensors in BF16"), "{out}");
    let original = dir.path().join("original");
    let back = ["--patch", "fused-qkv", "--to", "original"];
    convert(&patched, &original, "qwen2-moe", &back);
    assert_same_file(&original, &stock);

    let f32 = dir.path().join("f32");
    convert(&stock, &f32, "qwen2-moe", &["--dtype", "f32"]);
    let (inspect, _) = expect_status(&["inspect", arg(&f32)], 0);
    assert!(inspect.contains("dtypes\n  F32  "), "{inspect}");
}

/// The llama fixture with `model.norm.weight`'s first values replaced by `values`, in `dir`.
fn llama_with_norm_values(dir: &Path, values: &[f32]) -> PathBuf {
    let source = fixture("llama");
    let checkpoint = Checkpoint::open(&source).unwrap();
    let tensors: Vec<(String, HostTensor<'static>)> = checkpoint
        .keys()
        .map(|key| {
            let tensor = checkpoint.get(key).unwrap().read().unwrap();
            let tensor = if key == "model.norm.weight" {
                let mut data = tensor.to_f32_vec().unwrap();
                data[..values.len()].copy_from_slice(values);
                HostTensor::from_f32(tensor.shape.clone(), &data)
                    .cast(tensor.dtype)
                    .unwrap()
            } else {
                HostTensor::new(
                    tensor.dtype,
                    tensor.shape.clone(),
                    tensor.bytes.into_owned(),
                )
            };
            (key.to_string(), tensor)
        })
        .collect();
    let out = dir.join("hostile");
    std::fs::create_dir_all(&out).unwrap();
    save_safetensors(out.join("model.safetensors"), tensors, None).unwrap();
    std::fs::copy(source.join("config.json"), out.join("config.json")).unwrap();
    out
}

/// `--dtype f16` refuses values f16 cannot hold (the probe's 1e6, 3e38 and 1e-30: exit 3,
/// nothing written) unless `--allow-lossy`; bf16 holds their range, so they only round.
#[test]
fn lossy_dtype_narrowing_is_refused_unless_allowed() {
    let dir = TempDir::new().unwrap();
    for (value, shown) in [(1e6f32, "1e6"), (3e38, "3e38"), (1e-30, "1e-30")] {
        let hostile = llama_with_norm_values(&dir.path().join(shown), &[value]);
        let out = dir.path().join(shown).join("f16");
        let (_, err) = convert_status(&hostile, &out, "llama", &["--dtype", "f16"], 3);
        assert!(err.contains("model.norm.weight"), "{err}");
        assert!(err.contains(&format!("element 0 is {shown}")), "{err}");
        assert!(err.contains("--allow-lossy"), "{err}");
        assert!(!out.exists());

        convert(
            &hostile,
            &out,
            "llama",
            &["--dtype", "f16", "--allow-lossy"],
        );
        let written = Checkpoint::open(&out).unwrap();
        let norm = written.get("model.norm.weight").unwrap().read().unwrap();
        let expected = if value > 1.0 { 0x7c00u16 } else { 0 };
        assert_eq!(norm.to_values::<u16>().unwrap()[0], expected, "{shown}");

        let bf16 = dir.path().join(shown).join("bf16");
        convert(&hostile, &bf16, "llama", &["--dtype", "bf16"]);
        let written = Checkpoint::open(&bf16).unwrap();
        let norm = written.get("model.norm.weight").unwrap().read().unwrap();
        let rounded = HostTensor::from_f32([1], &[value])
            .cast(DType::BF16)
            .unwrap();
        assert_eq!(
            norm.to_values::<u16>().unwrap()[0],
            rounded.to_values::<u16>().unwrap()[0]
        );
    }
}

/// A config from elsewhere (`--config`), and a checkpoint without one (2).
#[test]
fn the_config_comes_from_the_folder_or_from_config() {
    let dir = TempDir::new().unwrap();
    let weights = dir.path().join("weights");
    std::fs::create_dir(&weights).unwrap();
    let stock = fixture("llama");
    std::fs::copy(
        stock.join("model.safetensors"),
        weights.join("model.safetensors"),
    )
    .unwrap();
    let (_, err) = plan(&weights, "llama", &[], 2);
    assert!(err.contains("config.json"), "{err}");
    assert!(err.contains("must hold the config.json"), "{err}");

    let config = stock.join("config.json");
    let with_config = ["--config", arg(&config)];
    plan(&weights, "llama", &with_config, 0);
    let out = dir.path().join("out");
    convert(&weights, &out, "llama", &with_config);
    assert_eq!(
        std::fs::read(out.join("config.json")).unwrap(),
        std::fs::read(&config).unwrap()
    );
    plan(&out, "llama", &[], 0);
}

/// A symbolic link OUT is resolved before any work: a link to a non-empty folder is refused
/// as that folder is (2, even before CKPT is opened), a link to nothing too, and a link to an
/// empty folder gets the checkpoint written into that folder (the link stays a link).
#[cfg(unix)]
#[test]
fn a_symbolic_link_out_is_checked_up_front() {
    use std::os::unix::fs::symlink;
    let dir = TempDir::new().unwrap();
    let full = dir.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("keep.txt"), "mine").unwrap();
    let link = dir.path().join("link");
    symlink(&full, &link).unwrap();
    // CKPT does not exist: the refusal comes first, before anything is read.
    let missing = dir.path().join("no-such-checkpoint");
    let (_, err) = convert_status(&missing, &link, "qwen2-moe", &[], 2);
    assert!(
        err.contains("is not empty (the symbolic link's target"),
        "{err}"
    );
    assert_entries(&full, &["keep.txt"]);

    let dangling = dir.path().join("dangling");
    symlink(dir.path().join("nowhere"), &dangling).unwrap();
    let (_, err) = convert_status(&missing, &dangling, "qwen2-moe", &[], 2);
    assert!(
        err.contains("symbolic link to a path that cannot be resolved"),
        "{err}"
    );

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let to_empty = dir.path().join("to-empty");
    symlink(&empty, &to_empty).unwrap();
    convert(&fixture("qwen2_moe"), &to_empty, "qwen2-moe", &[]);
    assert!(std::fs::symlink_metadata(&to_empty)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_entries(&empty, &QWEN2_MOE_CONVERTED);
    assert_entries(
        dir.path(),
        &["dangling", "empty", "full", "link", "to-empty"],
    );
}

/// Unmounts (and removes) a small tmpfs when dropped.
#[cfg(target_os = "linux")]
struct SmallTmpfs(TempDir);

#[cfg(target_os = "linux")]
impl SmallTmpfs {
    /// A 64 KiB tmpfs: smaller than the BERT fixture (96 KiB), so writing it fails with ENOSPC.
    fn mount() -> Self {
        let dir = TempDir::new().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs", arg(dir.path())])
            .status();
        assert!(
            status.as_ref().is_ok_and(|s| s.success()),
            "this test mounts a 64 KiB tmpfs to fill it (`mount -t tmpfs -o size=64k tmpfs DIR`), \
             which needs root (CI runs the tests as root): {status:?}"
        );
        Self(dir)
    }
}

#[cfg(target_os = "linux")]
impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

/// A full disk is an output error (3) that says where and how much space, never an input
/// error (2) with a hint about CKPT; nothing is left in OUT's folder.
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_is_an_output_error_with_the_space() {
    let tmpfs = SmallTmpfs::mount();
    let out = tmpfs.0.path().join("out");
    let (_, err) = convert_status(&fixture("bert"), &out, "bert", &[], 3);
    assert!(
        err.contains("cannot write the converted checkpoint to"),
        "{err}"
    );
    assert!(err.contains("No space left on device"), "{err}");
    // BERT's 24240 parameters... in F32, and the tmpfs's free space.
    assert!(
        err.contains("the converted checkpoint takes about 94080 bytes"),
        "{err}"
    );
    assert!(err.contains("has 65536 bytes (64.00 KiB) free"), "{err}");
    assert!(!err.contains("CKPT must be"), "{err}");
    assert_entries(tmpfs.0.path(), &[]);
}

#[test]
fn log_shows_the_phases_of_the_load_and_the_save_on_stderr() {
    let dir = TempDir::new().unwrap();
    let out_dir = dir.path().join("out");
    let stock = fixture("llama");
    let (out, err) = convert_status(&stock, &out_dir, "llama", &["--log", "debug"], 0);
    // The report stays on stdout; the events go to stderr, each with its figures.
    assert!(!out.contains("wave"), "{out}");
    let bytes: usize = safetensors_bytes(&stock.join("model.safetensors"));
    for needle in [
        "planned".to_string(),
        "wave".into(),
        format!("bytes={bytes}"),
        "loaded".into(),
        "verified".into(),
        "committed".into(),
        "saved".into(),
    ] {
        assert!(err.contains(&needle), "no {needle} in stderr:\n{err}");
    }
    // Off by default, and a bad level says so.
    let quiet = dir.path().join("quiet");
    let (_, err) = convert_status(&stock, &quiet, "llama", &[], 0);
    assert!(!err.contains("wave"), "{err}");
    let output = Command::new(env!("CARGO_BIN_EXE_burn-patcher"))
        .args(["inspect", arg(&stock)])
        .env("BURN_PATCHER_LOG", "loud")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && err.contains("BURN_PATCHER_LOG=\"loud\" is no level"),
        "{err}"
    );
}

/// The tensor bytes of a safetensors file (its size less the header).
fn safetensors_bytes(path: &Path) -> usize {
    let file = std::fs::read(path).unwrap();
    let header = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
    file.len() - 8 - header
}

/// The greedy `generate` transformers ran on `family`'s fixture (from
/// `scripts/make_tokenizers.py`): `kind` is `plain` or `chat`.
fn transformers_generation(family: &str, kind: &str) -> (String, usize) {
    let path = fixture("tokenizers").join("reference.json");
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let generate = &reference["families"][family]["generate"];
    let text = generate[kind]["text"].as_str().unwrap().to_string();
    let n = generate["max_new_tokens"].as_u64().unwrap() as usize;
    (text, n)
}

#[test]
fn generate_streams_transformers_greedy_text_and_its_speed() {
    // Every decoder family, plain prompts on both CPU backends, chat prompts through the
    // checkpoint's template, and patched and 8-bit loads (the tiny fixtures' greedy tokens do
    // not move under the seed's patch; the 8-bit load is only checked to run and stream).
    for (family, kind, extra) in [
        ("llama", "plain", vec!["--backend", "ndarray"]),
        ("llama", "chat", vec!["--chat", "--patch", "fused-qkv"]),
        ("qwen2_moe", "plain", vec!["--patch", "seed"]),
        ("qwen2_moe", "chat", vec!["--chat", "--backend", "ndarray"]),
        (
            "mixtral",
            "chat",
            vec!["--chat", "--patch", "sequential-experts"],
        ),
        ("gpt2", "plain", vec![]),
    ] {
        let (expected, n) = transformers_generation(family, kind);
        let dir = fixture(family);
        let n = n.to_string();
        let mut args = vec!["generate", arg(&dir), "--prompt", "The quick brown fox"];
        args.extend(["--max-new-tokens", n.as_str()]);
        args.extend(extra.iter().copied());
        let (out, err) = expect_status(&args, 0);
        assert_eq!(out, format!("{expected}\n"), "{family} {kind} {extra:?}");
        assert!(
            err.contains("prompt: ") && err.contains("tokens/s"),
            "{err}"
        );
    }
    let dir = fixture("qwen2_moe");
    let args = [
        "generate",
        arg(&dir),
        "--prompt",
        "hi",
        "--quantize",
        "int8",
        "--backend",
        "ndarray",
    ];
    let (out, err) = expect_status(&args, 0);
    assert!(
        !out.trim().is_empty() && err.contains("decode: "),
        "{out}\n{err}"
    );
}

#[test]
fn generate_samples_reproducibly_under_a_seed() {
    let dir = fixture("llama");
    let run = |seed: &str| {
        let args = [
            "generate",
            arg(&dir),
            "--prompt",
            "Hello",
            "--temperature",
            "1.5",
        ];
        let mut args = args.to_vec();
        args.extend(["--top-k", "50", "--seed", seed, "--max-new-tokens", "24"]);
        expect_status(&args, 0).0
    };
    assert_eq!(run("7"), run("7"));
    assert_ne!(run("7"), run("8"));
}

#[test]
fn generate_refuses_what_it_cannot_run_with_exit_2() {
    let cases: [(&str, &[&str], &str); 5] = [
        ("gpt2", &["--chat"], "no chat template"),
        ("bert", &[], "generate needs a causal LM"),
        (
            "llama",
            &["--patch", "sequential-experts"],
            "its patches are: fused-qkv",
        ),
        (
            "gpt2",
            &["--max-new-tokens", "80"],
            "more than the model's 64",
        ),
        ("llama", &["--temperature", "-1"], "temperature"),
    ];
    for (family, extra, message) in cases {
        let dir = fixture(family);
        let mut args = vec!["generate", arg(&dir), "--prompt", "hello there"];
        args.extend(extra);
        let (_, err) = expect_status(&args, 2);
        assert!(err.contains(message), "{family} {extra:?}: {err}");
    }
    let empty = TempDir::new().unwrap();
    std::fs::copy(
        fixture("llama").join("config.json"),
        empty.path().join("config.json"),
    )
    .unwrap();
    let (_, err) = expect_status(&["generate", arg(empty.path()), "--prompt", "x"], 2);
    assert!(err.contains("no tokenizer.json"), "{err}");
}
