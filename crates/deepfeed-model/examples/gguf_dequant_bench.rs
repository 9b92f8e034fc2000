//! Dequantisation speed on a real GGUF file, per tensor type (MB of quantised input per second,
//! one thread and the rayon pool), plus an optional dump of every tensor as raw f32 for
//! `scripts/check_gguf_dequant.py` to compare with the Python `gguf` package.
//!
//!   cargo run --release -p deepfeed-model --example gguf_dequant_bench -- FILE.gguf [--dump DIR]
//!   cargo run --release -p deepfeed-model --example gguf_dequant_bench -- --synthetic
//!
//! `--synthetic` times every supported type on 8 M random elements, best of 7 runs (robust on a
//! machine shared with other jobs).
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use deepfeed_model::gguf::{dequant, GgufFile};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--synthetic") {
        return synthetic();
    }
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

fn synthetic() -> Result<(), Box<dyn std::error::Error>> {
    let n = 8 << 20;
    let mut seed = 0x2545F4914F6CDD1Du64;
    println!("{:<6} {:>16} {:>18} {:>16}", "type", "1 thread MB/s", "1 thread Melem/s", "pool Melem/s");
    for ty in dequant::SUPPORTED {
        let (bs, ts) = ty.block_layout();
        let mut bytes: Vec<u8> = (0..n / bs * ts)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        // keep f16/bf16/f32 values and scales finite: clear the top exponent bit of every 2nd byte
        for c in bytes.chunks_mut(2) {
            c[1] &= 0x3B;
        }
        let mut out = vec![0f32; n];
        let best = |f: &mut dyn FnMut()| (0..7).map(|_| { let s = Instant::now(); f(); s.elapsed().as_secs_f64() }).fold(f64::MAX, f64::min);
        let t1 = best(&mut || dequant::dequantize(ty, &bytes, n, &mut out).unwrap());
        let tp = best(&mut || dequant::dequantize_par(ty, &bytes, n, &mut out).unwrap());
        println!("{:<6} {:>16.0} {:>18.0} {:>16.0}", ty.name(), bytes.len() as f64 / 1e6 / t1, n as f64 / 1e6 / t1, n as f64 / 1e6 / tp);
    }
    Ok(())
}
