//! Quantisation for GGUF export. Q8_0, F16 and BF16 are compared byte for byte with the Python
//! `gguf` package (`gguf.quants.quantize`, fixture from scripts/make_gguf_reference.py); Q4_K and
//! Q6_K (not in that package) are checked by the error of dequantising what we wrote with the
//! dequantiser that matches the Python one bit for bit.
use std::path::Path;

use deepfeed_model::gguf::{dequant, quantize, GgmlType, GgufFile};

fn fixture() -> GgufFile {
    GgufFile::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf/dequant_reference.gguf")).unwrap()
}

#[test]
fn q8_0_f16_bf16_match_python_gguf_byte_for_byte() {
    let f = fixture();
    let (shape, input) = f.tensor_f32("quant_input").unwrap();
    for ty in [GgmlType::Q8_0, GgmlType::F16, GgmlType::BF16] {
        let ours = quantize::quantize(ty, &input, shape[1]).unwrap();
        let theirs = f.tensor_bytes(f.tensor_info(&format!("quant_input.{ty}")).unwrap()).unwrap();
        assert_eq!(ours.len(), theirs.len(), "{ty}");
        if let Some(i) = ours.iter().zip(theirs).position(|(a, b)| a != b) {
            panic!("{ty}: byte {i} differs from python gguf: {} vs {}", ours[i], theirs[i]);
        }
    }
}

/// Root-mean-square error of dequant(quant(x)) relative to the RMS of x, per 256-value row.
fn relative_rmse(ty: GgmlType, x: &[f32]) -> f32 {
    let q = quantize::quantize(ty, x, 256).unwrap();
    let mut back = vec![0f32; x.len()];
    dequant::dequantize(ty, &q, x.len(), &mut back).unwrap();
    let err: f32 = x.iter().zip(&back).map(|(a, b)| (a - b) * (a - b)).sum::<f32>() / x.len() as f32;
    let rms: f32 = x.iter().map(|a| a * a).sum::<f32>() / x.len() as f32;
    (err / rms).sqrt()
}

fn gaussian(n: usize, seed: u64) -> Vec<f32> {
    // Box-Muller on a small xorshift, so the test needs no extra crates
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let (u, v) = (next().max(1e-12), next());
            ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
        })
        .collect()
}

#[test]
fn k_quant_round_trip_error_is_within_the_expected_bounds() {
    let x = gaussian(256 * 64, 1);
    // Uniform quantisation with step Δ has RMS error Δ/√12. For N(0,1) blocks: Q4_K spans the
    // ~4.5σ range of 32 values with 15 steps → 0.087 before its scale/min search; Q6_K uses ±32
    // levels over ~2·2.3σ of 16 values → 0.021; Q8_0 ±127 over 2·2.2σ of 32 values → 0.005.
    // Measured here: Q4_K 0.072, Q6_K 0.018, Q8_0 0.0054.
    let q4 = relative_rmse(GgmlType::Q4_K, &x);
    let q6 = relative_rmse(GgmlType::Q6_K, &x);
    let q8 = relative_rmse(GgmlType::Q8_0, &x);
    eprintln!("relative RMSE: Q4_K {q4:.4}, Q6_K {q6:.4}, Q8_0 {q8:.4}");
    assert!(q4 < 0.087 && q4 > 0.03, "Q4_K {q4}");
    assert!(q6 < 0.022 && q6 > 0.005, "Q6_K {q6}");
    assert!(q8 < 0.0065, "Q8_0 {q8}");
    assert!(q6 < q4 / 3.0 && q8 < q6);
    // scaled inputs scale the error (no absolute thresholds hiding inside)
    let big: Vec<f32> = x.iter().map(|v| v * 1000.0).collect();
    assert!((relative_rmse(GgmlType::Q4_K, &big) - q4).abs() < 0.01);
    // all-zero and constant blocks are exact
    for ty in [GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q8_0] {
        let q = quantize::quantize(ty, &[0.0; 256], 256).unwrap();
        let mut back = vec![1f32; 256];
        dequant::dequantize(ty, &q, 256, &mut back).unwrap();
        assert!(back.iter().all(|&v| v == 0.0), "{ty}");
    }
    let e = quantize::quantize(GgmlType::Q4_K, &[0.0; 300], 300).unwrap_err().to_string();
    assert!(e.contains("rows of 300") && e.contains("Q4_K"), "{e}");
    let e = quantize::quantize(GgmlType::Q2_K, &[0.0; 256], 256).unwrap_err().to_string();
    assert!(e.contains("not supported"), "{e}");
}
