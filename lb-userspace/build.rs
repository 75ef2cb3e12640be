//! Points `XLB_EBPF_OBJECT` and `XLB_DECAP_OBJECT` at the XDP objects so
//! `lib.rs` can embed them.
use std::path::PathBuf;

fn object(env: &str, file: &str) {
    println!("cargo:rerun-if-env-changed={env}");
    let path = match std::env::var_os(env) {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target/ebpf/bpfel-unknown-none/release")
            .join(file),
    };
    if !path.exists() {
        panic!(
            "the XDP object {} is missing: run `cargo xtask build-ebpf` first (or use `cargo xtask run`/`test`)",
            path.display()
        );
    }
    println!("cargo:rerun-if-changed={}", path.display());
    println!("cargo:rustc-env={env}={}", path.display());
}

fn main() {
    object("XLB_EBPF_OBJECT", "lb-ebpf");
    object("XLB_DECAP_OBJECT", "xlb-decap");
}
