//! Dequantisation speed on a real GGUF file, per tensor type (MB of quantised input per second,
//! one thread and the rayon pool), plus an optional dump of every tensor as raw f32 for
//! `scripts/check_gguf_dequant.py` to compare with the Python `gguf` package.
//!
//!   cargo run --release -p deepfeed-model --example gguf_dequant_bench -- FILE.gguf [--dump DIR]
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use deepfeed_model::gguf::{dequant, GgufFile};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = PathBuf::from(args.first().ok_or("usage: gguf_dequant_bench FILE.gguf [--dump DIR]")?);
    let dump = args.iter().position(|a| a == "--dump").and_then(|i| args.get(i + 1)).map(PathBuf::from);
    let t0 = Instant::now();
    let f = GgufFile::open(&path)?;
    println!(
        "{}: GGUF v{}, {} keys, {} tensors, arch {:?}; header parsed in {:.1} ms",
        path.display(),
        f.version,
        f.metadata.len(),
        f.tensors.len(),
        f.architecture(),
        t0.elapsed().as_secs_f64() * 1e3
    );
    // (bytes, elements, seconds single-threaded, seconds parallel) per type
    let mut stats: BTreeMap<String, (u64, u64, f64, f64)> = BTreeMap::new();
    if let Some(d) = &dump {
        std::fs::create_dir_all(d)?;
    }
    for t in &f.tensors {
        if !dequant::is_supported(t.ggml_type) {
            println!("  skip {} ({})", t.name, t.ggml_type);
            continue;
        }
        let bytes = f.tensor_bytes(t)?;
        let n = t.n_elements() as usize;
        let mut out = vec![0f32; n];
        // warm-up: pages the mmap'd data in, so both timings measure dequantisation only
        dequant::dequantize(t.ggml_type, bytes, n, &mut out)?;
        let s = Instant::now();
        dequant::dequantize(t.ggml_type, bytes, n, &mut out)?;
        let single = s.elapsed().as_secs_f64();
        let s = Instant::now();
        dequant::dequantize_par(t.ggml_type, bytes, n, &mut out)?;
        let par = s.elapsed().as_secs_f64();
        let e = stats.entry(t.ggml_type.name().to_string()).or_default();
        e.0 += bytes.len() as u64;
        e.1 += n as u64;
        e.2 += single;
        e.3 += par;
        if let Some(d) = &dump {
            let raw: Vec<u8> = out.iter().flat_map(|v| v.to_le_bytes()).collect();
            std::fs::write(d.join(format!("{}.f32", t.name)), raw)?;
        }
    }
    println!("{:<6} {:>10} {:>12} {:>14} {:>14} {:>12}", "type", "MB in", "M elements", "1 thread MB/s", "pool MB/s", "pool Melem/s");
    for (ty, (b, n, s1, sp)) in &stats {
        println!(
            "{:<6} {:>10.1} {:>12.1} {:>14.0} {:>14.0} {:>12.0}",
            ty,
            *b as f64 / 1e6,
            *n as f64 / 1e6,
            *b as f64 / 1e6 / s1,
            *b as f64 / 1e6 / sp,
            *n as f64 / 1e6 / sp
        );
    }
    Ok(())
}
