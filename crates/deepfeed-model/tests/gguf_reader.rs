//! GGUF reader and dequantisation against llama.cpp's Python package: the fixture
//! tests/fixtures/gguf/dequant_reference.gguf is written by scripts/make_gguf_reference.py with
//! `gguf.GGUFWriter` and holds random blocks of every supported type plus the values
//! `gguf.quants.dequantize` gives for them. Malformed files are made by patching that fixture.
use std::path::{Path, PathBuf};

use deepfeed_model::gguf::{dequant, GgmlType, GgufArray, GgufFile, GgufValue};
use deepfeed_model::ModelError;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf/dequant_reference.gguf")
}

fn fixture_bytes() -> Vec<u8> {
    std::fs::read(fixture()).unwrap()
}

fn parse(bytes: Vec<u8>) -> Result<GgufFile, String> {
    GgufFile::from_bytes(bytes, "patched.gguf").map_err(|e| e.to_string())
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).unwrap_or_else(|| panic!("{needle:?} not in fixture"))
}

/// Offset of the tensor info of `name` (its length-prefixed name) in the fixture header.
fn tensor_info_at(bytes: &[u8], name: &str) -> usize {
    let mut needle = (name.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(name.as_bytes());
    needle.extend_from_slice(&2u32.to_le_bytes()); // every fixture tensor is 2-D
    find(bytes, &needle)
}

#[test]
fn reads_metadata_written_by_python_gguf() {
    let f = GgufFile::open(&fixture()).unwrap();
    assert_eq!(f.version, 3);
    assert_eq!(f.alignment, 64);
    assert_eq!(f.data_offset % 64, 0);
    assert_eq!(f.architecture(), Some("deepfeed-test"));
    assert_eq!(f.get("test.u8"), Some(&GgufValue::U8(200)));
    assert_eq!(f.get("test.i8"), Some(&GgufValue::I8(-100)));
    assert_eq!(f.get("test.u16"), Some(&GgufValue::U16(60000)));
    assert_eq!(f.get("test.i16"), Some(&GgufValue::I16(-30000)));
    assert_eq!(f.get_u32("test.u32"), Some(4_000_000_000));
    assert_eq!(f.get("test.i32"), Some(&GgufValue::I32(-2_000_000_000)));
    assert_eq!(f.get_u64("test.u64"), Some(1 << 40));
    assert_eq!(f.get_i64("test.i64"), Some(-(1 << 40)));
    assert_eq!(f.get("test.f32"), Some(&GgufValue::F32(0.1)));
    assert_eq!(f.get("test.f64"), Some(&GgufValue::F64(0.1)));
    assert_eq!(f.get_bool("test.bool"), Some(true));
    assert_eq!(f.get_str("test.string"), Some("héllo 世界"));
    assert_eq!(f.get_str_array("test.strings").unwrap(), ["a", "", "日本", "<|im_end|>"]);
    assert_eq!(f.get_i64_array("test.i32s"), Some(vec![1, -2, 3]));
    assert_eq!(f.get_array("test.f32s"), Some(&GgufArray::F32(vec![0.5, -1.25])));
    // a u32 that does not fit the asked type is None, not a wrapped value
    assert_eq!(f.get_u32("test.i32"), None);
    let e = f.require("test.string", "u32", |v| v.as_u32()).unwrap_err().to_string();
    assert!(e.contains("test.string") && e.contains("expected u32") && e.contains("héllo"), "{e}");
    let e = f.require("no.such.key", "u32", |v| v.as_u32()).unwrap_err().to_string();
    assert!(e.contains("no.such.key") && e.contains("missing"), "{e}");
    assert_eq!(f.tensors.len(), 30);
    let q4k = f.tensor_info("Q4_K").unwrap();
    assert_eq!(q4k.ggml_type, GgmlType::Q4_K);
    assert_eq!(q4k.dims, vec![1024, 2]);
    assert_eq!(q4k.shape(), vec![2, 1024]);
}

#[test]
fn dequantisation_matches_python_gguf_bit_for_bit() {
    let f = GgufFile::open(&fixture()).unwrap();
    let mut checked = Vec::new();
    for ty in dequant::SUPPORTED {
        let (shape, got) = f.tensor_f32(ty.name()).unwrap();
        let (eshape, expected) = f.tensor_f32(&format!("{}.expected", ty.name())).unwrap();
        assert_eq!(shape, eshape, "{ty}");
        assert_eq!(got.len(), expected.len());
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(g.to_bits(), e.to_bits(), "{ty} element {i}: got {g}, python gguf gives {e}");
        }
        // the sequential, row-range and parallel paths agree
        let info = f.tensor_info(ty.name()).unwrap();
        let bytes = f.tensor_bytes(info).unwrap();
        let mut seq = vec![0f32; got.len()];
        dequant::dequantize(ty, bytes, got.len(), &mut seq).unwrap();
        assert_eq!(seq, got);
        let (row_len, n_rows) = info.rows();
        let mut row = vec![0f32; row_len];
        f.tensor_rows_f32(info, n_rows - 1..n_rows, &mut row).unwrap();
        assert_eq!(row, got[(n_rows - 1) * row_len..]);
        checked.push(ty);
    }
    assert_eq!(checked.len(), 13);
}

#[test]
fn dequantize_rejects_bad_arguments() {
    let mut out = vec![0f32; 64];
    let e = dequant::dequantize(GgmlType::Q4_0, &[0u8; 17], 32, &mut out).unwrap_err().to_string();
    assert!(e.contains("take 18 bytes") && e.contains("17"), "{e}");
    let e = dequant::dequantize(GgmlType::Q4_0, &[0u8; 18], 31, &mut out).unwrap_err().to_string();
    assert!(e.contains("whole number"), "{e}");
    let e = dequant::dequantize(GgmlType::IQ2_XXS, &[0u8; 66], 256, &mut vec![0f32; 256]).unwrap_err().to_string();
    assert!(e.contains("IQ2_XXS") && e.contains("supported"), "{e}");
    let e = dequant::dequantize(GgmlType::Q8_0, &[0u8; 68], 64, &mut vec![0f32; 10]).unwrap_err().to_string();
    assert!(e.contains("output holds 10"), "{e}");
    let e = dequant::dequantize_rows(GgmlType::Q8_0, &[0u8; 68], 32, 1..3, &mut out).unwrap_err().to_string();
    assert!(e.contains("rows 1..3"), "{e}");
}

#[test]
fn version_2_is_read_like_version_3() {
    let mut b = fixture_bytes();
    b[4..8].copy_from_slice(&2u32.to_le_bytes());
    let f = parse(b).unwrap();
    assert_eq!(f.version, 2);
    assert_eq!(f.tensor_f32("Q6_K").unwrap(), GgufFile::open(&fixture()).unwrap().tensor_f32("Q6_K").unwrap());
}

#[test]
fn bad_magic_and_versions_are_clear_errors() {
    let mut b = fixture_bytes();
    b[0] = b'X';
    let e = parse(b).unwrap_err();
    assert!(e.contains("not a GGUF file") && e.contains("XGUF"), "{e}");
    let e = parse(b"GGU".to_vec()).unwrap_err();
    assert!(e.contains("not a GGUF file") && e.contains("3 bytes"), "{e}");
    let e = parse(Vec::new()).unwrap_err();
    assert!(e.contains("not a GGUF file"), "{e}");
    for (version, want) in [(1u32, "version 1"), (3u32.swap_bytes(), "big-endian"), (7, "unsupported GGUF version 7")] {
        let mut b = fixture_bytes();
        b[4..8].copy_from_slice(&version.to_le_bytes());
        let e = parse(b).unwrap_err();
        assert!(e.contains(want), "{e}");
    }
    // a directory / missing file is an I/O error naming the path
    match GgufFile::open(Path::new("/nonexistent/model.gguf")) {
        Err(ModelError::Io { path, .. }) => assert_eq!(path, Path::new("/nonexistent/model.gguf")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let b = fixture_bytes();
    let f = parse(b.clone()).unwrap();
    let header_end = f.data_offset as usize;
    // every cut inside the header, and a spread of cuts inside the tensor data
    let cuts = (0..header_end).chain((header_end..b.len()).step_by(97));
    for cut in cuts {
        let e = parse(b[..cut].to_vec()).expect_err(&format!("cut at {cut} parsed"));
        assert!(e.contains("truncated") || e.contains("not a GGUF") || e.contains("cannot fit") || e.contains("run past"), "cut {cut}: {e}");
    }
    let e = parse(b[..b.len() - 1].to_vec()).unwrap_err();
    assert!(e.contains("tensor `quant_input.BF16`") && e.contains("past the end"), "{e}");
}

#[test]
fn absurd_counts_and_lengths_are_refused_before_allocating() {
    let b = fixture_bytes();
    let patch = |at: usize, v: u64| {
        let mut b = b.clone();
        b[at..at + 8].copy_from_slice(&v.to_le_bytes());
        parse(b).unwrap_err()
    };
    let e = patch(8, u64::MAX);
    assert!(e.contains("tensor count") && e.contains("18446744073709551615"), "{e}");
    let e = patch(16, 1 << 60);
    assert!(e.contains("metadata count"), "{e}");
    let e = patch(24, u64::MAX - 3); // length of the first key
    assert!(e.contains("length of key of metadata entry 0") && e.contains("cannot fit"), "{e}");
    // the element count of a string array
    let key = b"test.strings";
    let at = find(&b, key) + key.len() + 4 + 4; // key, value type (array), element type
    let e = patch(at, 1 << 62);
    assert!(e.contains("array length of `test.strings`") && e.contains("cannot fit"), "{e}");
}

#[test]
fn bad_tensor_infos_are_refused() {
    let b = fixture_bytes();
    let at = tensor_info_at(&b, "Q4_K");
    let (dims_at, type_at, offset_at) = (at + 8 + 4 + 4, at + 8 + 4 + 4 + 16, at + 8 + 4 + 4 + 16 + 4);
    let with = |at: usize, bytes: &[u8]| {
        let mut b = b.clone();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        parse(b).unwrap_err()
    };
    let e = with(offset_at, &(1u64 << 40).to_le_bytes());
    assert!(e.contains("tensor `Q4_K`") && e.contains("past the end"), "{e}");
    let e = with(offset_at, &(u64::MAX - 63).to_le_bytes());
    assert!(e.contains("tensor `Q4_K`") && e.contains("past the end"), "{e}");
    let e = with(offset_at, &65u64.to_le_bytes());
    assert!(e.contains("not a multiple of the alignment 64"), "{e}");
    let e = with(dims_at + 8, &(u64::MAX / 2).to_le_bytes());
    assert!(e.contains("tensor `Q4_K`") && e.contains("overflow"), "{e}");
    let e = with(dims_at + 8, &(1u64 << 50).to_le_bytes());
    assert!(e.contains("tensor `Q4_K`") && e.contains("past the end"), "{e}");
    let e = with(dims_at, &1000u64.to_le_bytes());
    assert!(e.contains("row length 1000 is not a multiple of the Q4_K block size 256"), "{e}");
    let e = with(type_at, &99u32.to_le_bytes());
    assert!(e.contains("unknown ggml type id 99"), "{e}");
    let e = with(at + 8 + 4, &9u32.to_le_bytes());
    assert!(e.contains("tensor `Q4_K`") && e.contains("1 to 4 dimensions, found 9"), "{e}");
    // a duplicate tensor name: rename Q4_1 to Q4_0
    let at = tensor_info_at(&b, "Q4_1");
    let e = with(at + 8, b"Q4_0");
    assert!(e.contains("tensor name `Q4_0`") && e.contains("twice"), "{e}");
}

#[test]
fn bad_metadata_values_are_refused() {
    let b = fixture_bytes();
    let with = |at: usize, bytes: &[u8]| {
        let mut b = b.clone();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        parse(b).unwrap_err()
    };
    let bool_at = find(&b, b"test.bool") + 9 + 4;
    let e = with(bool_at, &[2]);
    assert!(e.contains("test.bool") && e.contains("expected a bool"), "{e}");
    let type_at = find(&b, b"test.u8") + 7;
    let e = with(type_at, &77u32.to_le_bytes());
    assert!(e.contains("unknown value type 77"), "{e}");
    let align_at = find(&b, b"general.alignment") + 17 + 4;
    let e = with(align_at, &48u32.to_le_bytes());
    assert!(e.contains("general.alignment") && e.contains("power of two"), "{e}");
    let e = with(find(&b, b"test.i8"), b"test.u8");
    assert!(e.contains("`test.u8`") && e.contains("twice"), "{e}");
    let mut bad_key = b.clone();
    let at = find(&b, b"test.u16");
    bad_key[at] = 0xFF;
    let e = parse(bad_key).unwrap_err();
    assert!(e.contains("not valid UTF-8"), "{e}");
}

/// A stable-Rust complement to the cargo-fuzz target (fuzz/): 3000 seeded random mutations of
/// the fixture (byte changes, mostly in the header, and truncations) must each parse or give an
/// error, and whatever parses must be readable end to end.
#[test]
fn random_mutations_never_panic() {
    let original = fixture_bytes();
    let header_len = parse(original.clone()).unwrap().data_offset as usize;
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let (mut parsed, mut refused) = (0, 0);
    for _ in 0..3000 {
        let mut b = original.clone();
        for _ in 0..1 + next() % 4 {
            let whole = next() % 4 == 0;
            let at = (next() as usize) % if whole { b.len() } else { header_len };
            b[at] = match next() % 3 {
                0 => next() as u8,
                1 => 0xFF,
                _ => b[at] ^ (1 << (next() % 8)),
            };
        }
        if next() % 8 == 0 {
            let cut = (next() as usize) % b.len();
            b.truncate(cut);
        }
        match GgufFile::from_bytes(b, "mutated.gguf") {
            Err(_) => refused += 1,
            Ok(f) => {
                parsed += 1;
                for (k, v) in &f.metadata {
                    let _ = (f.get_u32(k), f.get_str(k), f.get_str_array(k), v.describe());
                }
                for t in &f.tensors {
                    let bytes = f.tensor_bytes(t).unwrap();
                    if dequant::is_supported(t.ggml_type) && t.n_elements() <= 1 << 20 {
                        let mut out = vec![0f32; t.n_elements() as usize];
                        dequant::dequantize(t.ggml_type, bytes, out.len(), &mut out).unwrap();
                    }
                }
            }
        }
    }
    assert!(parsed > 100 && refused > 100, "parsed {parsed}, refused {refused}");
}
