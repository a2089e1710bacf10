//! Host-side pieces against PyTorch/transformers directly: `torch.topk`'s CPU tie order on
//! tie-heavy rows (both of its algorithms), and RoPE inverse frequencies of every supported
//! `rope_type` against transformers' init functions.

use crate::common::{fixtures, read_file};
use patcher_models::common::{torch_topk, RopeParameters, RopeScaling};

#[test]
fn topk_tie_order_matches_torch_cpu() {
    let all = read_file(&fixtures().join("ops/reference.safetensors"));
    let mut cases = 0;
    for (key, values) in all
        .iter()
        .filter(|(k, _)| k.starts_with("topk.") && k.ends_with(".values"))
    {
        let base = key.strip_suffix(".values").unwrap();
        let indices = &all[&format!("{base}.indices")];
        let [rows, n] = [values.shape[0], values.shape[1]];
        let k = indices.shape[1];
        for r in 0..rows {
            let row = &values.data[r * n..(r + 1) * n];
            let ours: Vec<usize> = torch_topk(row, k).into_iter().map(|(_, i)| i).collect();
            let theirs: Vec<usize> = indices.data[r * k..(r + 1) * k]
                .iter()
                .map(|&i| i as usize)
                .collect();
            assert_eq!(ours, theirs, "{base} row {r}");
        }
        cases += 1;
    }
    assert_eq!(cases, 10);
}

#[test]
fn rope_inv_freq_matches_transformers() {
    let all = read_file(&fixtures().join("ops/reference.safetensors"));
    let cases = [
        ("default", 16, 1000.0, RopeScaling::Default),
        ("linear", 64, 10000.0, RopeScaling::Linear { factor: 4.0 }),
        (
            "llama3",
            128,
            500000.0,
            RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192.0,
            },
        ),
        (
            "yarn",
            64,
            10000.0,
            RopeScaling::Yarn {
                factor: 4.0,
                original_max_position_embeddings: 4096.0,
                beta_fast: 32.0,
                beta_slow: 1.0,
                // transformers derives it: 0.1 ln(4) + 1.
                attention_factor: 0.1 * 4f64.ln() + 1.0,
                truncate: true,
            },
        ),
    ];
    for (name, head_dim, rope_theta, scaling) in cases {
        let params = RopeParameters { rope_theta, scaling };
        let ours = params.inv_freq(head_dim);
        let theirs = &all[&format!("rope.{name}.inv_freq")];
        assert_eq!(ours.len(), theirs.data.len());
        let max_rel = ours
            .iter()
            .zip(&theirs.data)
            .map(|(a, b)| ((a - b) / b).abs())
            .fold(0.0f32, f32::max);
        println!("rope {name}: max relative difference {max_rel:.3e}");
        assert!(max_rel <= 1e-6, "{name}: {max_rel}");
        if let Some(factor) = all.get(&format!("rope.{name}.attention_factor")) {
            let (ours, theirs) = (params.attention_scaling(), f64::from(factor.data[0]));
            assert!((ours - theirs).abs() <= 1e-6, "{name}: {ours} vs {theirs}");
        }
    }
}
