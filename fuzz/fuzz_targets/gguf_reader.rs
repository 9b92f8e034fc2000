//! Any byte string given to the GGUF reader must give a file or an error — never a panic, a hang
//! or a huge allocation (libFuzzer's -rss_limit_mb catches the latter). Whatever parses is then
//! walked like a loader would: every metadata getter, every tensor's bytes, dequantised.
#![no_main]
use deepfeed_fuzz::gguf::{dequant, GgufFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(f) = GgufFile::from_bytes(data.to_vec(), "fuzz.gguf") else { return };
    for (k, v) in &f.metadata {
        let _ = (f.get_u32(k), f.get_f32(k), f.get_str(k), f.get_str_array(k), f.get_i64_array(k), v.describe());
    }
    for t in &f.tensors {
        let bytes = f.tensor_bytes(t).expect("a parsed tensor's bytes are in the file");
        let n = t.n_elements() as usize;
        // cap the output like a loader with a memory budget would
        if dequant::is_supported(t.ggml_type) && n <= 1 << 20 {
            let mut out = vec![0f32; n];
            dequant::dequantize(t.ggml_type, bytes, n, &mut out).expect("a parsed tensor dequantises");
            let (row_len, n_rows) = t.rows();
            if n_rows > 0 && row_len > 0 {
                let mut row = vec![0f32; row_len];
                f.tensor_rows_f32(t, n_rows - 1..n_rows, &mut row).expect("last row");
            }
        }
    }
});
