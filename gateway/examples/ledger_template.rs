//! Regenerates `config/ledger-template.xlsx` from `config/ledger-template.csv`
//! (the CSV is the source; a unit test checks that both say the same):
//!
//! ```text
//! cargo run -p gridwatch --example ledger_template
//! ```

use rust_xlsxwriter::{Format, Workbook};
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config");
    let text = std::fs::read_to_string(config.join("ledger-template.csv"))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    ws.set_name("台账")?;
    let bold = Format::new().set_bold().set_background_color("#DDEBF7");
    let comment = Format::new().set_italic().set_font_color("#808080");
    let mut widths: Vec<usize> = Vec::new();
    for (r, record) in reader.records().enumerate() {
        let record = record?;
        let is_comment = record.get(0).is_some_and(|c| c.starts_with('#'));
        for (c, cell) in record.iter().enumerate() {
            let (row, col) = (u32::try_from(r)?, u16::try_from(c)?);
            // Everything as text: phones must not turn into numbers in Excel.
            match (r, is_comment) {
                (0, _) => ws.write_string_with_format(row, col, cell, &bold)?,
                (_, true) => ws.write_string_with_format(row, col, cell, &comment)?,
                _ => ws.write_string(row, col, cell)?,
            };
            if !is_comment {
                let w = cell
                    .chars()
                    .map(|ch| if ch.is_ascii() { 1 } else { 2 })
                    .sum();
                if widths.len() <= c {
                    widths.resize(c + 1, 4);
                }
                widths[c] = widths[c].max(w);
            }
        }
    }
    for (c, w) in widths.iter().enumerate() {
        ws.set_column_width(u16::try_from(c)?, (*w as f64 + 2.0).min(40.0))?;
    }
    ws.set_freeze_panes(1, 0)?;
    let out = config.join("ledger-template.xlsx");
    wb.save(&out)?;
    println!("wrote {}", out.display());
    Ok(())
}
