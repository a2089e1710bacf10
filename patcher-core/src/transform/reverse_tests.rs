//! A renaming and its reverse: forward then reverse gives back the original key, and a
//! renaming whose reverse could not be exact is refused, naming its pattern.

use super::*;

/// `(source, target, keys the forward renaming changes)`.
const REVERSIBLE: &[(&str, &str, &[&str])] = &[
    // The LoRA kit's renaming: a word boundary and an end anchor.
    (
        r"\b(q_proj|k_proj|lm_head)\.weight$",
        r"\1.base_layer.weight",
        &[
            "model.layers.0.self_attn.q_proj.weight",
            "model.layers.11.self_attn.k_proj.weight",
            "lm_head.weight",
        ],
    ),
    // A start anchor, escaped dots, a class inside the group.
    (
        r"^vit\.layers\.(\d+)\.ln1",
        r"vit.layers.\1.norm1",
        &["vit.layers.0.ln1.weight", "vit.layers.27.ln1.bias"],
    ),
    // A class with a repetition, inside the group.
    (
        r"layers\.([0-9]+)\.mlp\.",
        r"blocks.\1.ffn.",
        &["model.layers.3.mlp.down_proj.weight"],
    ),
    // An empty target (a prefix removed) comes back anchored.
    (r"^model\.", "", &["model.embed_tokens.weight"]),
    // Unescaped dots stand for the dots between names.
    (
        "LayerNorm.gamma",
        "LayerNorm.weight",
        &["bert.embeddings.LayerNorm.gamma"],
    ),
    (
        r"\.attention\.self\.",
        ".attention.self_.",
        &["encoder.layer.0.attention.self.query.weight"],
    ),
    // `\B` and `\b` are zero-width: nothing to write back.
    (
        r"\Bproj\.w\b",
        "projection.w",
        &["a.q_proj.w", "b.up_proj.w.x"],
    ),
    // A group in the target, anchored by the source.
    (
        r"^(encoder|decoder)\.old",
        r"(encoder|decoder).new",
        &["encoder.old.w", "decoder.old.layers.1.b"],
    ),
    // A non-capturing group around literals, and a `\1` in the source for the target's group.
    (r"(?:\.ffn)\.w1$", ".mlp.gate_proj", &["layers.0.ffn.w1"]),
    (
        r"layers\.\1\.old",
        r"layers.(\d+).new",
        &["x.layers.4.old.weight"],
    ),
    // `$` anchors, literal escapes other than `\.`.
    (r"\.bias$", ".b", &["a.bias"]),
    (r"a\-b\.c", "a_b.c", &["x.a-b.c"]),
];

#[test]
fn forward_then_reverse_gives_back_the_key() {
    for (source, target, keys) in REVERSIBLE {
        let forward = WeightRenaming::new(*source, *target).unwrap();
        let back = forward
            .reverse()
            .unwrap_or_else(|e| panic!("{source} -> {target}: {e}"));
        for key in *keys {
            let (renamed, _) = forward
                .rename_source_key(key)
                .unwrap_or_else(|| panic!("{source} does not match {key}"));
            assert_ne!(renamed, *key, "{source}");
            let (again, _) = back
                .rename_source_key(&renamed)
                .unwrap_or_else(|| panic!("the reverse of {source} does not match {renamed}"));
            assert_eq!(again, *key, "{source} -> {target} -> back");
        }
    }
}

#[test]
fn the_lora_reverse_writes_no_regex_syntax() {
    let forward = WeightRenaming::new(r"\b(q_proj|v_proj)\.weight$", r"\1.base_layer.weight");
    let back = forward.unwrap().reverse().unwrap();
    assert_eq!(back.target_patterns(), [r"\1.weight"]);
    assert_eq!(
        back.source_patterns(),
        [r"\b(q_proj|v_proj).base_layer.weight$"]
    );
    // The reverse matches only where the forward renaming could have written.
    assert!(back
        .rename_source_key("layers.0.xq_proj.base_layer.weight")
        .is_none());
    assert!(back
        .rename_source_key("layers.0.q_proj.base_layer.weight.x")
        .is_none());
}

/// `(source, the part named in the refusal)`.
const IRREVERSIBLE: &[(&str, &str)] = &[
    (r"layers\.\d+\.ln", r"a repetition (`\d+`)"),
    (r"layers\.\d\.ln", r"a character class (`\d`)"),
    ("experts.*.w1", "`.*`"),
    (r"(encoder|decoder)\.(q|k)\.w", "a second group (`(q|k)`)"),
    ("norm_a|norm_b", "an alternation"),
    ("(?i)norm", "flags"),
    (r"[ab]\.weight", "`[ab]`"),
    (r"weights?\.x", "`s?`"),
    (r"(?:ln|norm)\.w", "`ln|norm`"),
];

#[test]
fn an_inexact_reverse_is_refused_naming_the_pattern() {
    for (source, part) in IRREVERSIBLE {
        let forward = WeightRenaming::new(*source, "renamed").unwrap();
        let err = forward.reverse().unwrap_err();
        let TransformError::IrreversibleRenaming { renaming, pattern, .. } = &err else {
            panic!("{source}: {err:?}");
        };
        assert_eq!(pattern, source);
        assert_eq!(*renaming, forward.to_string());
        let text = err.to_string();
        assert!(text.contains(part), "{source}: {text}");
        assert!(
            text.contains(&format!("source pattern `{source}`")),
            "{text}"
        );
    }
}
