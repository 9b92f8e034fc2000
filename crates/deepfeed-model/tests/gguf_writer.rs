//! GGUF writer: rewriting the fixture written by llama.cpp's Python `GGUFWriter`
//! (scripts/make_gguf_reference.py) gives the same bytes, and files it writes read back.
use std::path::Path;

use deepfeed_model::gguf::{GgmlType, GgufArray, GgufFile, GgufValue, GgufWriter};

#[test]
fn rewriting_a_python_written_file_gives_identical_bytes() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf/dequant_reference.gguf");
    let original = std::fs::read(&path).unwrap();
    let f = GgufFile::open(&path).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in &f.metadata {
        w.set(k.clone(), v.clone());
    }
    for t in &f.tensors {
        w.add_tensor(t.name.clone(), &t.shape(), t.ggml_type, f.tensor_bytes(t).unwrap().to_vec()).unwrap();
    }
    let rewritten = w.to_bytes();
    assert_eq!(rewritten.len(), original.len());
    assert!(rewritten == original, "first difference at byte {:?}", rewritten.iter().zip(&original).position(|(a, b)| a != b));
}

#[test]
fn written_files_read_back_and_are_written_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.gguf");
    let mut w = GgufWriter::new();
    w.set_str("general.architecture", "llama");
    w.set_u32("llama.block_count", 2);
    w.set_f32("llama.rope.freq_base", 10000.0);
    w.set_array("tokenizer.ggml.tokens", GgufArray::String(vec!["<s>".into(), "a".into()]));
    w.set_u32("llama.block_count", 3); // replaces in place
    let values: Vec<f32> = (0..6).map(|x| x as f32 * 0.5).collect();
    w.add_f32("w", &[2, 3], &values).unwrap();
    w.add_tensor("h", &[64], GgmlType::F16, vec![0u8; 128]).unwrap();
    let e = w.add_tensor("q", &[2, 33], GgmlType::Q8_0, vec![0u8; 68]).unwrap_err().to_string();
    assert!(e.contains("`q`") && e.contains("multiple of 32"), "{e}");
    let e = w.add_f32("w", &[1], &[1.0]).unwrap_err().to_string();
    assert!(e.contains("twice"), "{e}");
    std::fs::write(&out, b"old contents").unwrap();
    w.write(&out).unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "temporary file left behind: {names:?}");

    let f = GgufFile::open(&out).unwrap();
    assert_eq!(f.version, 3);
    assert_eq!(f.alignment, 32);
    assert_eq!(f.metadata.len(), 4);
    assert_eq!(f.get_u32("llama.block_count"), Some(3));
    assert_eq!(f.get("llama.rope.freq_base"), Some(&GgufValue::F32(10000.0)));
    assert_eq!(f.tensor_f32("w").unwrap(), (vec![2, 3], values));
    assert_eq!(f.tensor_info("w").unwrap().dims, vec![3, 2]);
    assert_eq!(f.tensor_info("h").unwrap().offset, 32);
    assert_eq!(f.tensor_f32("h").unwrap().1, vec![0.0; 64]);

    // writing into a missing directory fails with the path and leaves nothing behind
    let e = w.write(&dir.path().join("missing/x.gguf")).unwrap_err().to_string();
    assert!(e.contains("missing/x.gguf"), "{e}");
}
