//! The policy parser on arbitrary TOML: it builds a policy or names the line and field of the
//! error, and never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match candor_domain::Policy::from_toml(text) {
        Ok(policy) => {
            for purpose in policy.purposes.values() {
                assert!(purpose.retention_days >= 1);
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
