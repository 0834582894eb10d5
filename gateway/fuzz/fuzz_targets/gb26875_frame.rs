//! GB/T 26875.3 frames from a centre on arbitrary bytes, fed in two pieces as
//! TCP may split them: the deframer and the ADU decoder must never panic,
//! every frame they accept must re-encode to bytes that decode to the same
//! frame, and the deframer must never hold more than one largest frame.
#![no_main]

use gridwatch::gb26875::adu::Adu;
use gridwatch::gb26875::frame::{Deframer, Frame, MAX_BUFFERED};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Frame::decode(data);
    let cut = data.first().map_or(0, |b| usize::from(*b) % (data.len() + 1));
    let mut d = Deframer::new();
    for piece in [&data[..cut], &data[cut..]] {
        d.push(piece);
        while let Some(res) = d.next_frame() {
            if let Ok(f) = res {
                let _ = Adu::decode(&f.adu);
                if let Ok(bytes) = f.encode() {
                    assert_eq!(Frame::decode(&bytes).ok(), Some(f));
                }
            }
        }
        assert!(d.buffered() <= MAX_BUFFERED + 1);
    }
});
