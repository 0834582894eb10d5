//! The ledger CSV path of `gridwatch import` on arbitrary bytes: encoding
//! detection (UTF-8/BOM/GB18030), the CSV reader with its row numbering,
//! then the ledger checks. It must answer Ok or row errors, never panic.
#![no_main]

use gridwatch::ledger::source::{csv_sheet, decode};
use libfuzzer_sys::fuzz_target;

#[path = "ledger_common.rs"]
mod ledger_common;

fuzz_target!(|data: &[u8]| {
    if let Ok(sheet) = csv_sheet(&decode(data)) {
        ledger_common::check(&sheet);
    }
});
