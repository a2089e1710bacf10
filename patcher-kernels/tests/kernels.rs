//! Each kernel against the Burn ops it replaces, on Flex and NdArray, at odd shapes (head widths
//! that are not a multiple of 8, sequences shorter than one attention block, one KV head, widths
//! with a SIMD tail); and the fallbacks: f16/bf16 tensors and `Autodiff` get their inputs back.

use burn::backend::{Autodiff, Flex, NdArray};
use burn::prelude::*;
use burn::tensor::activation::silu;
use burn::tensor::module::attention as burn_attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{DType, Distribution};
use patcher_kernels::{
    attention, gather_tokens, scatter_weighted, silu_mul, silu_mul_halves, HostBackend, HostHeads,
    HostRope, RoutedTokens, TokenLayout,
};

fn random<B: Backend, const D: usize>(shape: [usize; D]) -> Tensor<B, D> {
    Tensor::random(shape, Distribution::Normal(0.0, 3.0), &Default::default())
}

fn max_diff<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b).abs().max().into_scalar().elem()
}

fn silu_matches_burn<B: Backend>() {
    assert!(HostBackend::of::<B>().is_some());
    for len in [1, 7, 8, 9, 37] {
        let (gate, up) = (random::<B, 2>([3, len]), random::<B, 2>([3, len]));
        let want = silu(gate.clone()) * up.clone();
        let got = silu_mul(gate, up).expect("f32 on a host backend");
        let tol = 4.0 * f32::EPSILON * want.clone().abs().max().into_scalar().elem::<f32>();
        assert!(max_diff(got, want) <= tol, "width {len}");
    }
    let x = random::<B, 2>([6, 5]);
    let want = silu(x.clone().narrow(0, 0, 3)) * x.clone().narrow(0, 3, 3);
    let got = silu_mul_halves(x).expect("even rows");
    assert!(max_diff(got, want) <= 1e-5);
    let odd = random::<B, 2>([5, 4]);
    assert_eq!(silu_mul_halves(odd).unwrap_err().dims(), [5, 4]);
}

#[test]
fn silu_matches_burn_on_flex_and_ndarray() {
    silu_matches_burn::<Flex>();
    silu_matches_burn::<NdArray>();
}

/// `rotate_half` as transformers writes it, with Burn's ops.
fn rotate_half<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let d = x.dims()[3];
    let (x1, x2) = (x.clone().narrow(3, 0, d / 2), x.narrow(3, d / 2, d - d / 2));
    Tensor::cat(vec![x2.neg(), x1], 3)
}

fn heads_match_burn<B: Backend>() {
    // Head widths 5 (odd: rotate_half's halves differ), 6 and 12; one KV head; one position.
    for (batch, seq, heads, kv_heads, d) in [(2, 7, 3, 1, 5), (1, 1, 4, 1, 6), (2, 3, 2, 2, 12)] {
        for rows in [1, batch] {
            let (cos, sin) = (
                random::<B, 3>([rows, seq, d]),
                random::<B, 3>([rows, seq, d]),
            );
            let rope = HostRope::new(&cos, &sin).expect("f32 tables");
            let host = HostHeads::<B>::new(&[DType::F32]).expect("f32 on a host backend");
            let x = random::<B, 3>([batch, seq, heads * d]);
            let viewed = x.clone().reshape([batch, seq, heads, d]).swap_dims(1, 2);
            let (cos4, sin4) = (cos.unsqueeze_dim::<4>(1), sin.unsqueeze_dim::<4>(1));
            let want = viewed.clone() * cos4 + rotate_half(viewed.clone()) * sin4;
            let got = host.split(x.clone(), heads, d, Some(&rope));
            got.to_data().assert_eq(&want.to_data(), true);
            let plain = host.split(x.clone(), heads, d, None);
            plain.to_data().assert_eq(&viewed.to_data(), true);
            host.merge(plain).to_data().assert_eq(&x.to_data(), true);

            let width = (heads + 2 * kv_heads) * d;
            let qkv = random::<B, 3>([batch, seq, width]);
            let fused = host.split_fused(qkv.clone(), [heads, kv_heads], d, Some(&rope));
            let part = |start, n| qkv.clone().narrow(2, start * d, n * d);
            let separate = [
                host.split(part(0, heads), heads, d, Some(&rope)),
                host.split(part(heads, kv_heads), kv_heads, d, Some(&rope)),
                host.split(part(heads + kv_heads, kv_heads), kv_heads, d, None),
            ];
            for (fused, separate) in fused.iter().zip(&separate) {
                fused.to_data().assert_eq(&separate.to_data(), true);
            }
        }
    }
}

#[test]
fn head_split_and_merge_are_burns_ops_bit_for_bit() {
    heads_match_burn::<Flex>();
    heads_match_burn::<NdArray>();
}

fn experts_match_reference<B: Backend>() {
    let (tokens, hidden, top_k) = (10, 13, 2);
    let x = random::<B, 2>([tokens, hidden]);
    let weights = random::<B, 2>([tokens, top_k]);
    // Three experts: one token, nine (more than one block of eight), and every token once.
    let groups: Vec<(Vec<usize>, Vec<usize>)> = vec![
        (vec![4], vec![1]),
        (
            vec![0, 1, 2, 3, 5, 6, 7, 8, 9],
            vec![0, 0, 1, 0, 1, 0, 0, 1, 0],
        ),
        (
            (0..tokens).collect(),
            (0..tokens).map(|t| (t + 1) % 2).collect(),
        ),
    ];
    let routed: Vec<RoutedTokens<'_>> = groups
        .iter()
        .map(|(tokens, pos)| RoutedTokens { tokens, top_k_pos: pos })
        .collect();
    let x_values: Vec<f32> = x.to_data().to_vec().unwrap();
    let w_values: Vec<f32> = weights.to_data().to_vec().unwrap();
    for layout in [TokenLayout::Rows, TokenLayout::Columns] {
        let inputs = gather_tokens(&x, &routed, layout).expect("f32 on a host backend");
        let mut want = vec![0.0f32; tokens * hidden];
        for ((input, (ids, pos)), scale) in inputs.iter().zip(&groups).zip([1.0, -0.5, 2.0]) {
            let index = Tensor::<B, 1, Int>::from_data(
                TensorData::new(ids.iter().map(|&t| t as i64).collect(), [ids.len()]),
                &Default::default(),
            );
            let rows = x.clone().select(0, index);
            let expected = match layout {
                TokenLayout::Rows => rows,
                TokenLayout::Columns => rows.transpose(),
            };
            input.to_data().assert_eq(&expected.to_data(), true);
            // An "expert": its tokens scaled; the reference adds them back in list order.
            for (j, (&t, &p)) in ids.iter().zip(pos).enumerate() {
                for h in 0..hidden {
                    let product = x_values[t * hidden + h] * scale * w_values[t * top_k + p];
                    want[t * hidden + h] += product;
                    let _ = j;
                }
            }
        }
        let outputs: Vec<Tensor<B, 2>> = inputs
            .into_iter()
            .zip([1.0, -0.5, 2.0])
            .map(|(x, s)| x * s)
            .collect();
        let got = scatter_weighted(outputs, &routed, layout, &weights, hidden)
            .unwrap_or_else(|_| panic!("f32 outputs"));
        let got: Vec<f32> = got.to_data().to_vec().unwrap();
        assert_eq!(got, want, "{layout:?}");
    }
}

#[test]
fn expert_gather_and_scatter_match_the_eager_loop() {
    experts_match_reference::<Flex>();
    experts_match_reference::<NdArray>();
}

/// Burn's attention op on the KV heads repeated, against the kernel on the stacked heads.
fn check_attention(batch: usize, kv_heads: usize, n_rep: usize, seq: usize, d: usize) {
    type B = Flex;
    let device = Default::default();
    let heads = kv_heads * n_rep;
    let (q, k, v) = (
        random::<B, 4>([batch, heads, seq, d]),
        random::<B, 4>([batch, kv_heads, seq, d]),
        random::<B, 4>([batch, kv_heads, seq, d]),
    );
    let causal = Tensor::<B, 2, Int>::ones([seq, seq], &device)
        .triu(1)
        .bool()
        .reshape([1, 1, seq, seq]);
    // A padded batch: the last rows' first keys masked, the second row's every key.
    let mut padding = vec![false; batch * seq];
    padding[..seq / 2].fill(true);
    padding[seq..].fill(true);
    let padding =
        Tensor::<B, 4, Bool>::from_data(TensorData::new(padding, [batch, 1, 1, seq]), &device);
    let repeat = |x: Tensor<B, 4>| {
        x.unsqueeze_dim::<5>(2)
            .expand([batch, kv_heads, n_rep, seq, d])
            .reshape([batch, heads, seq, d])
    };
    for mask in [None, Some(causal), Some(padding)] {
        let options = AttentionModuleOptions { scale: Some(0.3), softcap: None, is_causal: false };
        let expanded = mask.clone().map(|m| m.expand([batch, heads, seq, seq]));
        let want = burn_attention(
            q.clone(),
            repeat(k.clone()),
            repeat(v.clone()),
            expanded,
            None,
            options,
        );
        let stacked = q.clone().reshape([batch, kv_heads, n_rep * seq, d]);
        let got = attention(stacked, k.clone(), v.clone(), mask.as_ref(), n_rep, 0.3)
            .unwrap_or_else(|_| panic!("Flex f32"))
            .reshape([batch, heads, seq, d]);
        // A fully masked row: zeros here; Burn's op may give NaN or zeros, so compare the rest.
        let got = got.to_data().to_vec::<f32>().unwrap();
        let want = want.to_data().to_vec::<f32>().unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert!(
                w.is_nan() && *g == 0.0 || (g - w).abs() <= 1e-5,
                "{g} vs {w} ({batch}x{kv_heads}x{n_rep}x{seq}x{d})"
            );
        }
    }
}

#[test]
fn attention_matches_burns_op_at_odd_shapes() {
    // Head width 6; a sequence shorter than one block (64 positions) and one across two; one KV
    // head for four query heads; a single position.
    check_attention(2, 1, 4, 3, 6);
    check_attention(2, 2, 3, 70, 8);
    check_attention(1, 1, 1, 1, 5);
}

#[test]
fn attention_declines_a_mask_per_head() {
    let (q, k, v) = (
        random::<Flex, 4>([1, 2, 4, 8]),
        random::<Flex, 4>([1, 2, 4, 8]),
        random::<Flex, 4>([1, 2, 4, 8]),
    );
    let mask = Tensor::<Flex, 4, Bool>::empty([1, 2, 4, 4], &Default::default());
    let (q, _, _) = attention(q, k, v, Some(&mask), 1, 1.0).unwrap_err();
    assert_eq!(q.dims(), [1, 2, 4, 8]);
    // NdArray runs Burn's op: the kernel is Flex's.
    let (q, k, v) = (
        random::<NdArray, 4>([1, 1, 2, 8]),
        random::<NdArray, 4>([1, 1, 2, 8]),
        random::<NdArray, 4>([1, 1, 2, 8]),
    );
    assert!(attention(q, k, v, None, 1, 1.0).is_err());
}

/// Every kernel hands back f16 and bf16 tensors untouched (the callers keep Burn's ops).
#[test]
fn half_precision_falls_back() {
    type B = Flex;
    for dtype in [DType::F16, DType::BF16] {
        let x = random::<B, 2>([4, 8]).cast(dtype);
        let (gate, up) = silu_mul(x.clone(), x.clone()).unwrap_err();
        assert_eq!((gate.dtype(), up.dtype()), (dtype, dtype));
        assert_eq!(silu_mul_halves(x.clone()).unwrap_err().dtype(), dtype);
        let routed = [RoutedTokens { tokens: &[0, 2], top_k_pos: &[0, 0] }];
        assert!(gather_tokens(&x, &routed, TokenLayout::Rows).is_none());
        let outputs = vec![random::<B, 2>([2, 8]).cast(dtype)];
        let back = scatter_weighted(outputs, &routed, TokenLayout::Rows, &x, 8).unwrap_err();
        assert_eq!(back[0].dtype(), dtype);
        assert!(HostHeads::<B>::new(&[dtype]).is_none());
        let table = random::<B, 3>([1, 2, 4]).cast(dtype);
        assert!(HostRope::new(&table, &table).is_none());
        let q = random::<B, 4>([1, 1, 2, 4]).cast(dtype);
        let (q, _, _) = attention(q.clone(), q.clone(), q, None, 1, 1.0).unwrap_err();
        assert_eq!(q.dtype(), dtype);
    }
}

/// `Autodiff` is another type: its graph would be cut by a host round trip.
#[test]
fn autodiff_falls_back() {
    type A = Autodiff<Flex>;
    assert_eq!(HostBackend::of::<A>(), None);
    let x = random::<A, 2>([2, 8]);
    assert!(silu_mul(x.clone(), x.clone()).is_err());
    assert!(HostHeads::<A>::new(&[DType::F32]).is_none());
}

/// One row times a large weight, split over the threads, equals Flex's own product bit for bit,
/// for a row-major weight and a transposed view, with a column count no thread count divides.
#[test]
fn matmul_row_is_flexs_product() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    pool.install(|| {
        for (k, n) in [(2000, 2111), (2048, 2048)] {
            let x = random::<Flex, 2>([1, k]);
            for w in [
                random::<Flex, 2>([k, n]),
                random::<Flex, 2>([n, k]).transpose(),
            ] {
                let want = x.clone().matmul(w.clone());
                let got = patcher_kernels::matmul_row(x.clone(), &w).expect("a large f32 weight");
                got.to_data().assert_eq(&want.to_data(), true);
            }
        }
        // Declined: two rows, a small weight, NdArray, f16.
        let w = random::<Flex, 2>([1024, 1024]);
        assert!(patcher_kernels::matmul_row(random::<Flex, 2>([2, 1024]), &w).is_err());
        let small = random::<Flex, 2>([64, 64]);
        assert!(patcher_kernels::matmul_row(random::<Flex, 2>([1, 64]), &small).is_err());
        let w_nd = random::<NdArray, 2>([1024, 1024]);
        assert!(patcher_kernels::matmul_row(random::<NdArray, 2>([1, 1024]), &w_nd).is_err());
        let x16 = random::<Flex, 2>([1, 1024]).cast(DType::F16);
        assert!(patcher_kernels::matmul_row(x16, &w.cast(DType::F16)).is_err());
    });
}
