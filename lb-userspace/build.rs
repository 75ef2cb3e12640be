//! Points `XLB_EBPF_OBJECT` at the XDP object so `lib.rs` can embed it.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=XLB_EBPF_OBJECT");
    let path = match std::env::var_os("XLB_EBPF_OBJECT") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target/ebpf/bpfel-unknown-none/release/lb-ebpf"),
    };
    if !path.exists() {
        panic!(
            "the XDP object {} is missing: run `cargo xtask build-ebpf` first (or use `cargo xtask run`/`test`)",
            path.display()
        );
    }
    println!("cargo:rerun-if-changed={}", path.display());
    println!("cargo:rustc-env=XLB_EBPF_OBJECT={}", path.display());
}
