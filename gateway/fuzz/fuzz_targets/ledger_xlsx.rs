//! The ledger spreadsheet path of `gridwatch import` on arbitrary bytes:
//! calamine over an in-memory reader (XLSX/XLS/XLSB/ODS by content), the
//! sheet choice and cell texts, then the ledger checks. Seeded with the
//! shipped template so the mutations start from a real workbook.
#![no_main]

use gridwatch::ledger::source::workbook_bytes;
use libfuzzer_sys::fuzz_target;

#[path = "ledger_common.rs"]
mod ledger_common;

fuzz_target!(|data: &[u8]| {
    if let Ok(sheet) = workbook_bytes(data, "fuzz.xlsx") {
        ledger_common::check(&sheet);
    }
});
