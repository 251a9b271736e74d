//! The IAB TCF v2.2 decoder on arbitrary strings: it refuses with a code or decodes, and a
//! decoded string only names vendors within its own MaxVendorId-checked ranges.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match candor_domain::tcf::decode(text) {
        Ok(tc) => {
            assert_eq!(tc.version, 2);
            assert!(tc.policy_version >= 4 && tc.is_service_specific);
            assert!(!tc.vendor_consents.contains(&0));
            let _ = tc.allows(1, 1);
        }
        Err(e) => {
            let _ = e.code().as_str();
        }
    }
});
