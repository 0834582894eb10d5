//! Reading a ledger file into a [`Sheet`] of text cells: CSV (UTF-8, with or
//! without BOM, or GB18030/GBK as Excel on a Chinese Windows saves it) and
//! spreadsheets through calamine (XLSX, XLS, ODS).

use super::parse::{Row, Sheet};
use calamine::{Data, Reader};
use std::path::Path;

/// Why a ledger file could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a CSV file: {source}")]
    Csv {
        path: String,
        #[source]
        source: csv::Error,
    },
    #[error("{path}: not a readable spreadsheet: {source}")]
    Sheet {
        path: String,
        #[source]
        source: calamine::Error,
    },
    #[error("{path}: the workbook has no sheet")]
    NoSheet { path: String },
    #[error("{path}: unsupported file type (use .csv or .xlsx)")]
    Unsupported { path: String },
}

/// Reads `path` by its extension.
pub fn read(path: &Path) -> Result<Sheet, SourceError> {
    let shown = path.display().to_string();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "csv" | "txt" => {
            let bytes = std::fs::read(path).map_err(|source| SourceError::Io {
                path: shown.clone(),
                source,
            })?;
            csv_sheet(&decode(&bytes)).map_err(|source| SourceError::Csv {
                path: shown,
                source,
            })
        }
        "xlsx" | "xlsm" | "xls" | "ods" => workbook(path),
        _ => Err(SourceError::Unsupported { path: shown }),
    }
}

/// UTF-8 (BOM stripped) when valid, else GB18030, which covers GBK and GB2312.
pub fn decode(bytes: &[u8]) -> String {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => encoding_rs::GB18030.decode(bytes).0.into_owned(),
    }
}

/// Parses CSV text. A row's number is the line its record starts on: the
/// row a spreadsheet shows, blank lines included, unless a cell spans lines.
pub fn csv_sheet(text: &str) -> Result<Sheet, csv::Error> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let newlines: Vec<usize> = text
        .bytes()
        .enumerate()
        .filter(|(_, b)| *b == b'\n')
        .map(|(i, _)| i)
        .collect();
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record?;
        // The reader's position is where it started looking, before the blank
        // lines it skips: step over them to the record's first byte.
        let number = match record.position() {
            Some(p) => {
                let start = usize::try_from(p.byte()).unwrap_or(usize::MAX);
                let skipped = text.get(start..).map_or(0, |rest| {
                    rest.len() - rest.trim_start_matches(['\r', '\n']).len()
                });
                newlines.partition_point(|&n| n < start + skipped) + 1
            }
            None => i + 1,
        };
        rows.push(Row {
            number,
            cells: record.iter().map(str::to_string).collect(),
        });
    }
    Ok(Sheet { rows })
}

/// A spreadsheet file by its extension.
fn workbook(path: &Path) -> Result<Sheet, SourceError> {
    let shown = path.display().to_string();
    let wb = calamine::open_workbook_auto(path).map_err(|source| SourceError::Sheet {
        path: shown.clone(),
        source,
    })?;
    ledger_sheet(wb, &shown)
}

/// A spreadsheet held in memory (XLSX, XLS, XLSB or ODS, told apart by its
/// content), read as [`read`] reads a file: for bytes that never were a file
/// (an upload) and for the fuzz target. `shown` names it in errors.
pub fn workbook_bytes(bytes: &[u8], shown: &str) -> Result<Sheet, SourceError> {
    let wb =
        calamine::open_workbook_auto_from_rs(std::io::Cursor::new(bytes)).map_err(|source| {
            SourceError::Sheet {
                path: shown.to_string(),
                source,
            }
        })?;
    ledger_sheet(wb, shown)
}

/// The sheet named `台账` or `ledger` if there is one, else the first.
fn ledger_sheet<RS: std::io::Read + std::io::Seek>(
    mut wb: calamine::Sheets<RS>,
    shown: &str,
) -> Result<Sheet, SourceError> {
    let sheet_err = |source| SourceError::Sheet {
        path: shown.to_string(),
        source,
    };
    let names = wb.sheet_names();
    let name = names
        .iter()
        .find(|n| matches!(n.trim().to_lowercase().as_str(), "台账" | "ledger"))
        .or_else(|| names.first())
        .cloned()
        .ok_or_else(|| SourceError::NoSheet {
            path: shown.to_string(),
        })?;
    let range = wb.worksheet_range(&name).map_err(sheet_err)?;
    let (row0, col0) = range.start().unwrap_or((0, 0));
    let pad = col0 as usize;
    let rows = range
        .rows()
        .enumerate()
        .map(|(i, cells)| Row {
            number: row0 as usize + i + 1,
            cells: std::iter::repeat_n(String::new(), pad)
                .chain(cells.iter().map(cell_text))
                .collect(),
        })
        .collect();
    Ok(Sheet { rows })
}

/// A cell as the installer typed it: whole numbers without `.0` (phones and
/// ages are often stored as numbers), booleans as yes/no.
pub fn cell_text(d: &Data) -> String {
    match d {
        Data::Empty => String::new(),
        Data::String(s) => s.clone(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        Data::Float(f) => f.to_string(),
        Data::Bool(b) => if *b { "yes" } else { "no" }.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_utf8_bom_and_gbk() {
        assert_eq!(decode("\u{feff}类型,编号".as_bytes()), "类型,编号");
        // "住户" in GBK.
        assert_eq!(decode(&[0xD7, 0xA1, 0xBB, 0xA7]), "住户");
    }

    #[test]
    fn csv_rows_are_numbered_by_line_and_quotes_work() {
        let s = csv_sheet("type,id\nhome,\"h,1\"\n\ndevice,d1\n").unwrap();
        let numbers: Vec<usize> = s.rows.iter().map(|r| r.number).collect();
        // The blank line is skipped but still counts, as in a spreadsheet.
        assert_eq!(numbers, vec![1, 2, 4]);
        assert_eq!(s.rows[1].cells[1], "h,1");
    }

    #[test]
    fn workbook_bytes_reads_what_read_reads_and_refuses_garbage() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/ledger-template.xlsx");
        let from_file = read(&path).unwrap();
        let from_bytes = workbook_bytes(&std::fs::read(&path).unwrap(), "upload").unwrap();
        assert_eq!(from_bytes.rows, from_file.rows);
        assert!(!from_bytes.rows.is_empty());
        let err = workbook_bytes(b"PK\x03\x04 not a zip", "upload").unwrap_err();
        assert!(err.to_string().starts_with("upload: "), "{err}");
    }

    #[test]
    fn numbers_from_spreadsheets_lose_their_decimal_point() {
        assert_eq!(cell_text(&Data::Float(13800000001.0)), "13800000001");
        assert_eq!(cell_text(&Data::Float(82.0)), "82");
        assert_eq!(cell_text(&Data::Float(0.5)), "0.5");
    }
}
