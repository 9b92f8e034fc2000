//! Small, valid sample documents written from scratch (PDF with lopdf, DOCX and XLSX as minimal
//! OOXML zips), for the tests and the README walkthrough. Not used by ingestion itself.
use std::collections::BTreeMap;
use std::io::{Cursor, Write};

use lopdf::content::{Content, Operation};
use lopdf::{dictionary, Document, Object, Stream, StringFormat};
use zip::write::SimpleFileOptions;

/// One PDF page.
pub enum PdfPage<'a> {
    /// Lines in Helvetica (ASCII text).
    Latin(&'a [&'a str]),
    /// Lines in a Type0 font with Identity-H encoding and a ToUnicode CMap (CJK text).
    Cjk(&'a [&'a str]),
    /// No text at all, like a scanned page without a text layer.
    Blank,
}

/// A PDF of the given pages.
pub fn pdf(pages: &[PdfPage]) -> Vec<u8> {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let helvetica = doc.add_object(dictionary! {"Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica"});
    // CID per distinct CJK character, in order of appearance
    let mut cids: BTreeMap<char, u16> = BTreeMap::new();
    for p in pages {
        if let PdfPage::Cjk(lines) = p {
            for c in lines.iter().flat_map(|l| l.chars()) {
                let n = cids.len() as u16 + 1;
                cids.entry(c).or_insert(n);
            }
        }
    }
    let mut bfchar = String::new();
    for (c, cid) in &cids {
        let mut units = [0u16; 2];
        let hex: String = c.encode_utf16(&mut units).iter().map(|u| format!("{u:04X}")).collect();
        bfchar.push_str(&format!("<{cid:04X}> <{hex}>\n"));
    }
    let cmap = format!(
        "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n{} beginbfchar\n{bfchar}endbfchar\nendcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n",
        cids.len()
    );
    let to_unicode = doc.add_object(Stream::new(dictionary! {}, cmap.into_bytes()));
    let cid_font = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "CIDFontType2", "BaseFont" => "SimSun",
        "CIDSystemInfo" => dictionary! {"Registry" => Object::string_literal("Adobe"), "Ordering" => Object::string_literal("Identity"), "Supplement" => 0},
        "DW" => 1000,
    });
    let type0 = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type0", "BaseFont" => "SimSun", "Encoding" => "Identity-H",
        "DescendantFonts" => vec![cid_font.into()], "ToUnicode" => to_unicode,
    });
    let resources = doc.add_object(dictionary! {"Font" => dictionary! {"F1" => helvetica, "F2" => type0}});
    let mut kids: Vec<Object> = Vec::new();
    for p in pages {
        let mut ops = Vec::new();
        let lines: &[&str] = match p {
            PdfPage::Latin(l) | PdfPage::Cjk(l) => l,
            PdfPage::Blank => &[],
        };
        if !lines.is_empty() {
            let cjk = matches!(p, PdfPage::Cjk(_));
            ops.push(Operation::new("BT", vec![]));
            ops.push(Operation::new("Tf", vec![(if cjk { "F2" } else { "F1" }).into(), 14.into()]));
            ops.push(Operation::new("TL", vec![20.into()]));
            ops.push(Operation::new("Td", vec![60.into(), 780.into()]));
            for line in lines {
                let s = if cjk {
                    Object::String(line.chars().flat_map(|c| cids[&c].to_be_bytes()).collect(), StringFormat::Hexadecimal)
                } else {
                    Object::string_literal(*line)
                };
                ops.push(Operation::new("Tj", vec![s]));
                ops.push(Operation::new("T*", vec![]));
            }
            ops.push(Operation::new("ET", vec![]));
        }
        let content = Content { operations: ops }.encode().expect("content encodes");
        let content_id = doc.add_object(Stream::new(dictionary! {}, content));
        kids.push(doc.add_object(dictionary! {"Type" => "Page", "Parent" => pages_id, "Contents" => content_id}).into());
    }
    let count = kids.len() as i64;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages", "Kids" => kids, "Count" => count, "Resources" => resources,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        }),
    );
    let catalog = doc.add_object(dictionary! {"Type" => "Catalog", "Pages" => pages_id});
    doc.trailer.set("Root", catalog);
    let mut out = Vec::new();
    doc.save_to(&mut out).expect("PDF writes to memory");
    out
}

/// A zip of (name, content) entries, deflated.
pub fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in entries {
        z.start_file(*name, SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated)).expect("zip entry");
        z.write_all(data).expect("zip write");
    }
    z.finish().expect("zip finish").into_inner()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A part of a Word document body.
pub enum DocxPart<'a> {
    Heading(usize, &'a str),
    Para(&'a str),
    Table(&'a [&'a [&'a str]]),
}

fn docx_para(style: Option<String>, text: &str) -> String {
    let ppr = style.map(|s| format!("<w:pPr><w:pStyle w:val=\"{s}\"/></w:pPr>")).unwrap_or_default();
    format!("<w:p>{ppr}<w:r><w:t xml:space=\"preserve\">{}</w:t></w:r></w:p>", xml_escape(text))
}

/// The `word/document.xml` of these parts.
pub fn docx_document_xml(parts: &[DocxPart]) -> String {
    let mut body = String::new();
    for p in parts {
        match p {
            DocxPart::Heading(n, t) => body.push_str(&docx_para(Some(format!("Heading{n}")), t)),
            DocxPart::Para(t) => body.push_str(&docx_para(None, t)),
            DocxPart::Table(rows) => {
                body.push_str("<w:tbl>");
                for r in *rows {
                    body.push_str("<w:tr>");
                    for c in *r {
                        body.push_str(&format!("<w:tc>{}</w:tc>", docx_para(None, c)));
                    }
                    body.push_str("</w:tr>");
                }
                body.push_str("</w:tbl>");
            }
        }
    }
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<w:document xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"><w:body>{body}</w:body></w:document>")
}

/// A minimal DOCX whose `word/document.xml` is `document_xml`.
pub fn docx_with(document_xml: &[u8]) -> Vec<u8> {
    let types = br#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>"#;
    let rels = br#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>"#;
    zip(&[("[Content_Types].xml", types), ("_rels/.rels", rels), ("word/document.xml", document_xml)])
}

/// A minimal DOCX with these parts.
pub fn docx(parts: &[DocxPart]) -> Vec<u8> {
    docx_with(docx_document_xml(parts).as_bytes())
}

/// A minimal XLSX with one sheet of inline strings (numbers are written as numbers).
pub fn xlsx(sheet: &str, rows: &[&[&str]]) -> Vec<u8> {
    let mut data = String::new();
    for (i, r) in rows.iter().enumerate() {
        data.push_str(&format!("<row r=\"{}\">", i + 1));
        for (j, c) in r.iter().enumerate() {
            let col = (b'A' + j as u8) as char;
            if c.is_empty() {
                continue;
            }
            if c.parse::<f64>().is_ok() {
                data.push_str(&format!("<c r=\"{col}{}\"><v>{c}</v></c>", i + 1));
            } else {
                data.push_str(&format!("<c r=\"{col}{}\" t=\"inlineStr\"><is><t>{}</t></is></c>", i + 1, xml_escape(c)));
            }
        }
        data.push_str("</row>");
    }
    let sheet_xml = format!(r#"<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>{data}</sheetData></worksheet>"#);
    let workbook = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="{}" sheetId="1" r:id="rId1"/></sheets></workbook>"#,
        xml_escape(sheet)
    );
    let types = br#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>"#;
    let rels = br#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#;
    let wb_rels = br#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#;
    zip(&[
        ("[Content_Types].xml", types),
        ("_rels/.rels", rels),
        ("xl/workbook.xml", workbook.as_bytes()),
        ("xl/_rels/workbook.xml.rels", wb_rels),
        ("xl/worksheets/sheet1.xml", sheet_xml.as_bytes()),
    ])
}
