//! The value and tensor types of GGUF: metadata values (`GgufValue`, with typed vectors for the big
//! arrays such as a 262k-token vocabulary) and ggml tensor types (`GgmlType`) with their block sizes.
use std::fmt;

/// A ggml tensor element type as stored in a GGUF tensor info (ids from ggml's `enum ggml_type`).
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    TQ1_0,
    TQ2_0,
    MXFP4,
}

impl GgmlType {
    /// Every type this reader knows the size of (it can read files holding any of them;
    /// `dequant::is_supported` says which it can turn into f32).
    pub const ALL: [GgmlType; 32] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::Q8_K,
        GgmlType::IQ2_XXS,
        GgmlType::IQ2_XS,
        GgmlType::IQ3_XXS,
        GgmlType::IQ1_S,
        GgmlType::IQ4_NL,
        GgmlType::IQ3_S,
        GgmlType::IQ2_S,
        GgmlType::IQ4_XS,
        GgmlType::I8,
        GgmlType::I16,
        GgmlType::I32,
        GgmlType::I64,
        GgmlType::F64,
        GgmlType::IQ1_M,
        GgmlType::BF16,
        GgmlType::TQ1_0,
        GgmlType::TQ2_0,
        GgmlType::MXFP4,
    ];

    /// The numeric id stored in the file.
    pub fn id(self) -> u32 {
        use GgmlType::*;
        match self {
            F32 => 0,
            F16 => 1,
            Q4_0 => 2,
            Q4_1 => 3,
            Q5_0 => 6,
            Q5_1 => 7,
            Q8_0 => 8,
            Q8_1 => 9,
            Q2_K => 10,
            Q3_K => 11,
            Q4_K => 12,
            Q5_K => 13,
            Q6_K => 14,
            Q8_K => 15,
            IQ2_XXS => 16,
            IQ2_XS => 17,
            IQ3_XXS => 18,
            IQ1_S => 19,
            IQ4_NL => 20,
            IQ3_S => 21,
            IQ2_S => 22,
            IQ4_XS => 23,
            I8 => 24,
            I16 => 25,
            I32 => 26,
            I64 => 27,
            F64 => 28,
            IQ1_M => 29,
            BF16 => 30,
            TQ1_0 => 34,
            TQ2_0 => 35,
            MXFP4 => 39,
        }
    }

    pub fn from_id(id: u32) -> Option<GgmlType> {
        GgmlType::ALL.into_iter().find(|t| t.id() == id)
    }

    /// Elements per block and bytes per block (ggml's `blck_size` / `type_size`).
    pub fn block_layout(self) -> (usize, usize) {
        use GgmlType::*;
        const K: usize = super::QK_K;
        match self {
            F32 => (1, 4),
            F16 => (1, 2),
            Q4_0 => (32, 2 + 16),
            Q4_1 => (32, 2 + 2 + 16),
            Q5_0 => (32, 2 + 4 + 16),
            Q5_1 => (32, 2 + 2 + 4 + 16),
            Q8_0 => (32, 2 + 32),
            Q8_1 => (32, 4 + 4 + 32),
            Q2_K => (K, 2 + 2 + K / 16 + K / 4),
            Q3_K => (K, 2 + K / 4 + K / 8 + 12),
            Q4_K => (K, 2 + 2 + K / 2 + 12),
            Q5_K => (K, 2 + 2 + K / 2 + K / 8 + 12),
            Q6_K => (K, 2 + K / 2 + K / 4 + K / 16),
            Q8_K => (K, 4 + K + K / 8),
            IQ2_XXS => (K, 2 + K / 4),
            IQ2_XS => (K, 2 + K / 4 + K / 32),
            IQ3_XXS => (K, 2 + K / 4 + K / 8),
            IQ1_S => (K, 2 + K / 8 + K / 16),
            IQ4_NL => (32, 2 + 16),
            IQ3_S => (K, 2 + K / 4 + K / 8 + K / 32 + 4),
            IQ2_S => (K, 2 + K / 4 + K / 16),
            IQ4_XS => (K, 2 + 2 + K / 2 + K / 64),
            I8 => (1, 1),
            I16 => (1, 2),
            I32 => (1, 4),
            I64 => (1, 8),
            F64 => (1, 8),
            IQ1_M => (K, K / 8 + K / 16 + K / 32),
            BF16 => (1, 2),
            TQ1_0 => (K, 2 + 4 * 13),
            TQ2_0 => (K, 2 + 64),
            MXFP4 => (32, 1 + 16),
        }
    }

    pub fn block_size(self) -> usize {
        self.block_layout().0
    }

    pub fn type_size(self) -> usize {
        self.block_layout().1
    }

    /// Bytes taken by `n_elements` elements, or `None` when `n_elements` is not a whole number of
    /// blocks or the size overflows.
    pub fn bytes_for(self, n_elements: u64) -> Option<u64> {
        let (bs, ts) = self.block_layout();
        if n_elements % bs as u64 != 0 {
            return None;
        }
        (n_elements / bs as u64).checked_mul(ts as u64)
    }

    /// The name llama.cpp prints (`Q4_K`, `F16`, …).
    pub fn name(self) -> &'static str {
        use GgmlType::*;
        match self {
            F32 => "F32",
            F16 => "F16",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q8_1 => "Q8_1",
            Q2_K => "Q2_K",
            Q3_K => "Q3_K",
            Q4_K => "Q4_K",
            Q5_K => "Q5_K",
            Q6_K => "Q6_K",
            Q8_K => "Q8_K",
            IQ2_XXS => "IQ2_XXS",
            IQ2_XS => "IQ2_XS",
            IQ3_XXS => "IQ3_XXS",
            IQ1_S => "IQ1_S",
            IQ4_NL => "IQ4_NL",
            IQ3_S => "IQ3_S",
            IQ2_S => "IQ2_S",
            IQ4_XS => "IQ4_XS",
            I8 => "I8",
            I16 => "I16",
            I32 => "I32",
            I64 => "I64",
            F64 => "F64",
            IQ1_M => "IQ1_M",
            BF16 => "BF16",
            TQ1_0 => "TQ1_0",
            TQ2_0 => "TQ2_0",
            MXFP4 => "MXFP4",
        }
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The type tag of a metadata value (`gguf_type` in ggml).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl GgufValueType {
    pub fn from_id(id: u32) -> Option<GgufValueType> {
        use GgufValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// Smallest number of bytes one value of this type takes in the file (a string: its length).
    pub(crate) fn min_encoded_size(self) -> u64 {
        use GgufValueType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | String => 8,
            Array => 12, // element type + count
        }
    }
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(GgufArray),
}

/// A metadata array, held as one typed vector (a vocabulary is `String(Vec<String>)`, token scores
/// `F32(Vec<f32>)`), so big arrays cost no per-element enum.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufArray {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bool(Vec<bool>),
    String(Vec<String>),
    /// An array of arrays (allowed by the format, rare in practice).
    Array(Vec<GgufArray>),
}

impl GgufArray {
    pub fn len(&self) -> usize {
        use GgufArray::*;
        match self {
            U8(v) => v.len(),
            I8(v) => v.len(),
            U16(v) => v.len(),
            I16(v) => v.len(),
            U32(v) => v.len(),
            I32(v) => v.len(),
            U64(v) => v.len(),
            I64(v) => v.len(),
            F32(v) => v.len(),
            F64(v) => v.len(),
            Bool(v) => v.len(),
            String(v) => v.len(),
            Array(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn element_type(&self) -> GgufValueType {
        use GgufArray::*;
        match self {
            U8(_) => GgufValueType::U8,
            I8(_) => GgufValueType::I8,
            U16(_) => GgufValueType::U16,
            I16(_) => GgufValueType::I16,
            U32(_) => GgufValueType::U32,
            I32(_) => GgufValueType::I32,
            U64(_) => GgufValueType::U64,
            I64(_) => GgufValueType::I64,
            F32(_) => GgufValueType::F32,
            F64(_) => GgufValueType::F64,
            Bool(_) => GgufValueType::Bool,
            String(_) => GgufValueType::String,
            Array(_) => GgufValueType::Array,
        }
    }

    /// Integer elements as i64 (any integer element type; `None` for floats, strings, …).
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        use GgufArray::*;
        Some(match self {
            U8(v) => v.iter().map(|&x| x as i64).collect(),
            I8(v) => v.iter().map(|&x| x as i64).collect(),
            U16(v) => v.iter().map(|&x| x as i64).collect(),
            I16(v) => v.iter().map(|&x| x as i64).collect(),
            U32(v) => v.iter().map(|&x| x as i64).collect(),
            I32(v) => v.iter().map(|&x| x as i64).collect(),
            U64(v) => v.iter().map(|&x| i64::try_from(x).ok()).collect::<Option<_>>()?,
            I64(v) => v.clone(),
            Bool(v) => v.iter().map(|&x| x as i64).collect(),
            _ => return None,
        })
    }

    /// Numeric elements as f32 (floats and integers).
    pub fn to_f32_vec(&self) -> Option<Vec<f32>> {
        use GgufArray::*;
        Some(match self {
            F32(v) => v.clone(),
            F64(v) => v.iter().map(|&x| x as f32).collect(),
            other => other.to_i64_vec()?.into_iter().map(|x| x as f32).collect(),
        })
    }
}

impl GgufValue {
    pub fn value_type(&self) -> GgufValueType {
        use GgufValue::*;
        match self {
            U8(_) => GgufValueType::U8,
            I8(_) => GgufValueType::I8,
            U16(_) => GgufValueType::U16,
            I16(_) => GgufValueType::I16,
            U32(_) => GgufValueType::U32,
            I32(_) => GgufValueType::I32,
            U64(_) => GgufValueType::U64,
            I64(_) => GgufValueType::I64,
            F32(_) => GgufValueType::F32,
            F64(_) => GgufValueType::F64,
            Bool(_) => GgufValueType::Bool,
            String(_) => GgufValueType::String,
            Array(_) => GgufValueType::Array,
        }
    }

    /// Any integer (or bool) value as i128, so callers can range-check into their own type.
    pub fn as_int(&self) -> Option<i128> {
        use GgufValue::*;
        Some(match *self {
            U8(x) => x as i128,
            I8(x) => x as i128,
            U16(x) => x as i128,
            I16(x) => x as i128,
            U32(x) => x as i128,
            I32(x) => x as i128,
            U64(x) => x as i128,
            I64(x) => x as i128,
            Bool(x) => x as i128,
            _ => return None,
        })
    }

    pub fn as_u32(&self) -> Option<u32> {
        self.as_int().and_then(|x| u32::try_from(x).ok())
    }

    pub fn as_u64(&self) -> Option<u64> {
        self.as_int().and_then(|x| u64::try_from(x).ok())
    }

    pub fn as_i64(&self) -> Option<i64> {
        self.as_int().and_then(|x| i64::try_from(x).ok())
    }

    /// A float value (F32/F64), or an integer converted.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(x) => Some(x as f64),
            GgufValue::F64(x) => Some(x),
            _ => self.as_int().map(|x| x as f64),
        }
    }

    pub fn as_f32(&self) -> Option<f32> {
        self.as_f64().map(|x| x as f32)
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&GgufArray> {
        match self {
            GgufValue::Array(a) => Some(a),
            _ => None,
        }
    }

    /// A short human description for error messages: the type and, for scalars, the value.
    pub fn describe(&self) -> String {
        match self {
            GgufValue::String(s) if s.len() > 40 => format!("string of {} bytes", s.len()),
            GgufValue::String(s) => format!("string {s:?}"),
            GgufValue::Array(a) => format!("array of {} {:?}", a.len(), a.element_type()),
            other => format!("{other:?}"),
        }
    }
}
