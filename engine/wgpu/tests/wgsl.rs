//! Every WGSL module parses and validates with naga (wgpu's own front end), with no adapter:
//! a shader error shows up here on any machine, not only where a GPU driver is installed.

use gidd_kernels::wgsl::{source, Module};

#[test]
fn every_module_validates() {
    let mut failed = vec![];
    for m in Module::ALL {
        let src = source(m);
        let module = match naga::front::wgsl::parse_str(&src) {
            Ok(m) => m,
            Err(e) => {
                failed.push(format!("{m:?}: {}", e.emit_to_string(&src)));
                continue;
            }
        };
        let mut caps = naga::valid::Capabilities::default();
        if m.needs_f64() {
            caps |= naga::valid::Capabilities::FLOAT64;
        }
        let mut v = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps);
        if let Err(e) = v.validate(&module) {
            failed.push(format!("{m:?}: {}", e.emit_to_string(&src)));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}
