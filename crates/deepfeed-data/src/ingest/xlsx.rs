//! Spreadsheets (.xlsx, .xlsm, .xls, .ods) with calamine: one record per row of each sheet; the
//! first non-empty row is the header, so a row reads as `column: value` lines (empty cells left
//! out). Provenance: `sheet` and `row` (1-based, as Excel numbers it). Zip-based files pass the
//! zip-bomb check first.
use std::path::Path;

use calamine::{Data, Reader};
use serde_json::json;

use super::{docx, loc, Sink};

fn cell_text(d: &Data) -> String {
    match d {
        Data::DateTime(dt) if dt.is_datetime() => {
            let (y, mo, day, h, mi, s, _) = dt.to_ymd_hms_milli();
            if (h, mi, s) == (0, 0, 0) {
                format!("{y:04}-{mo:02}-{day:02}")
            } else {
                format!("{y:04}-{mo:02}-{day:02} {h:02}:{mi:02}:{s:02}")
            }
        }
        other => other.to_string().trim().to_string(),
    }
}

pub fn read(path: &Path, sink: &mut Sink) -> Result<(), String> {
    let limits = sink.options().limits.clone();
    let ext = super::format_of(path);
    if ext != "xls" {
        docx::open_zip(path, &limits, "spreadsheet")?;
    }
    let mut wb = calamine::open_workbook_auto(path).map_err(|e| format!("not a readable spreadsheet: {e}"))?;
    for name in wb.sheet_names() {
        let range = match wb.worksheet_range(&name) {
            Ok(r) => r,
            Err(e) => {
                sink.note(format!("sheet {name:?} skipped: {e}"));
                continue;
            }
        };
        let first_row = range.start().map_or(0, |(r, _)| r as usize);
        let mut header: Option<Vec<String>> = None;
        for (i, row) in range.rows().enumerate() {
            let cells: Vec<String> = row.iter().map(cell_text).collect();
            if cells.iter().all(|c| c.is_empty()) {
                continue;
            }
            let Some(h) = &header else {
                header = Some(cells.iter().enumerate().map(|(k, c)| if c.is_empty() { format!("column {}", k + 1) } else { c.clone() }).collect());
                continue;
            };
            let lines: Vec<String> = h.iter().zip(&cells).filter(|(_, v)| !v.is_empty()).map(|(k, v)| format!("{k}: {v}")).collect();
            sink.record(&lines.join("\n"), loc([("sheet", json!(name)), ("row", json!(first_row + i + 1))]))?;
        }
    }
    Ok(())
}
